from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch

from models.data import performance as pdata
from models.format import load_scripted, validate
from models.performer import expression as ex
from models.performer import train_align as ta
from models.performer.align_model import AlignConfig, Aligner
from models.performer.evaluate import TASK_KEYS, align_metadata, beats_baselines, evaluate, export_aligner
from models.performer.features import N_FLOATS, features, onsets_from, targets

TINY = AlignConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, dropout=0.0)


def piece(performer: int, seed: int, split: str = "train", n: int = 40) -> pdata.PerformancePiece:
    g = np.random.default_rng(seed)
    notes = np.zeros(n, ex.MARKED_DTYPE)
    notes["pitch"] = g.integers(55, 80, n)
    notes["onset_beats"] = np.arange(n, dtype=float)
    notes["duration_beats"] = 1.0
    notes["dynamic"], notes["velocity"] = ex.DEFAULT_DYNAMIC, 76
    notes["marks"][::7] = ex.FERMATA
    out, _ = ex.realise(notes, 90.0, ex.Style.of(performer), seed)
    return pdata.PerformancePiece(f"p{seed}__p{performer}", f"p{seed}", split, performer, 90.0, out)


def test_config_validates_itself():
    with pytest.raises(ValueError, match="divisible by n_heads"):
        AlignConfig(d_model=10, n_heads=3)
    with pytest.raises(ValueError, match="dropout"):
        AlignConfig(dropout=1.5)
    assert AlignConfig.from_dict(TINY.to_dict()) == TINY


def test_features_are_anchored_at_the_first_note():
    p = piece(0, 1)
    ints, floats = features(p.notes, p.qpm)
    assert ints.shape == (40, 3) and floats.shape == (40, N_FLOATS)
    t = targets(p.notes)
    assert t[0, 0] == 0.0
    crop = p.notes[10:]
    assert targets(crop)[0, 0] == 0.0 and features(crop, p.qpm)[1][0, 0] == 0.0
    # the predicted deviation plus the score timing gives the performed onsets back
    performed = p.notes["onset_s"] - p.notes["onset_s"][0]
    np.testing.assert_allclose(onsets_from(p.notes, p.qpm, t[:, 0]), performed, atol=1e-5)


def test_tiny_model_trains_a_step_exports_and_matches_eager(tmp_path):
    torch.manual_seed(0)
    model = Aligner(TINY)
    cfg = ta.TrainConfig(lr=3e-3, warmup_steps=1)
    state = ta.State(model, torch.optim.Adam(model.parameters(), lr=cfg.lr))
    batch = ta.batch_of([piece(0, 1), piece(1, 2, n=25)], crop=32, rng=random.Random(0), transpose=2)
    assert batch["padding"][1, 25:].all() and not batch["padding"][0].any()
    first = ta.train_step(state, batch, cfg)
    for _ in range(20):
        logs = ta.train_step(state, batch, cfg)
    assert math.isfinite(first["loss/total"]) and logs["loss/total"] < first["loss/total"]
    meta = align_metadata(TINY, "tiny")
    assert validate(meta) == "" and all(k in meta for k in TASK_KEYS["perform_align"])
    path = export_aligner(model, tmp_path / "tiny.pt", meta)
    loaded, read = load_scripted(path)
    assert read["task"] == "perform_align" and read["model"] == TINY.to_dict()
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch["ints"][:1], batch["floats"][:1], batch["performer"][:1]),
                                   model(batch["ints"][:1], batch["floats"][:1], batch["performer"][:1]))
    with pytest.raises(ValueError, match="TorchScript"):
        export_aligner(model, tmp_path / "tiny.pt2", meta)


def test_training_command_resumes_and_evaluation_reports_baselines(tmp_path, monkeypatch):
    pieces = [piece(i % 2, i, "valid" if i == 5 else "train") for i in range(6)]
    monkeypatch.setattr(pdata, "load", lambda name, split=None, with_mel=False:
                        [p for p in pieces if split is None or p.split == split])
    args = ["--data", "fake", "--out", str(tmp_path / "run"), "--steps", "4", "--eval-every", "2",
            "--batch-size", "2", "--d-model", "16", "--n-layers", "1", "--d-ff", "32"]
    cfg, resume = ta.parse_args(args)
    result = ta.train(cfg, progress=False)
    assert result["steps"] == 4 and (tmp_path / "run" / "best.pt").exists()
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"]["d_model"] == 16 and saved["train"]["steps"] == 4
    cfg, resume = ta.parse_args([*args[:-8], "--steps", "6", "--eval-every", "2", "--batch-size", "2",
                                 "--d-model", "16", "--n-layers", "1", "--d-ff", "32", "--resume"])
    assert ta.train(cfg, resume=resume, progress=False)["steps"] == 6
    model, mcfg, ckpt = ta.load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["step"] == 6 and mcfg.d_model == 16
    result = evaluate(model, pieces[5:], pieces[:5])
    assert set(result) >= {"model", "score timing at the piece's tempo", "score timing + mean offset"}
    assert result["score timing at the piece's tempo"]["onset_error_ms/mean"] > 0
    assert isinstance(beats_baselines(result), bool)
