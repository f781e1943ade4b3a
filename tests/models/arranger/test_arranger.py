"""Every arranger config builds at tiny size, trains with a finite loss, exports, reloads and
matches eager mode (RAVE-style config tests), on a real tiny Bach dataset."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from models.arranger.export import arranger_metadata, export_arranger
from models.arranger.features import FeatureConfig
from models.arranger.model import Arranger, ArrangerConfig
from models.arranger.train import TrainConfig, evaluate, load_checkpoint, parse_args, train
from models.data import corpus as ds
from models.format import load_scripted

CONFIGS = {
    "lstm-online": dict(arch="lstm", online=True),
    "lstm-offline": dict(arch="lstm", online=False),
    "transformer-online": dict(arch="transformer", online=True),
    "transformer-offline": dict(arch="transformer", online=False),
    "lstm-online-voice": dict(arch="lstm", online=True, voice_state=True),
    "lstm-offline-hints": dict(arch="lstm", online=False, entry_hints=True, pitch_hints=True),
    "lstm-online-chord-voice": dict(arch="lstm", online=True, chord_context=True, voice_state=True),
    "transformer-offline-chord": dict(arch="transformer", online=False, chord_context=True),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_trains_exports_and_matches_eager(name, tiny_bach, tmp_path):
    cfg = TrainConfig(data=str(tiny_bach), out=str(tmp_path / "run"), steps=3, eval_every=3,
                      batch_size=4, crop=64, d_model=16, n_layers=2, limit_valid=2, **CONFIGS[name])
    result = train(cfg, progress=False)
    assert result["steps"] == 3
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert math.isfinite(history[-1]["loss"]) and 0 <= history[-1]["valid_accuracy"] <= 1
    model, mcfg, ckpt = load_checkpoint(tmp_path / "run" / "best.pt")
    assert ckpt["train_config"]["arch"] == CONFIGS[name]["arch"]
    meta = arranger_metadata(mcfg, name, "satb", {"accuracy": 0.5})
    path = export_arranger(model, mcfg, tmp_path / f"{name}.pt", meta)  # verifies against eager
    module, got = load_scripted(path)
    assert got["mode"] == ("online" if CONFIGS[name]["online"] else "offline")
    assert [p["name"] for p in got["parts"]] == ["Soprano", "Alto", "Tenor", "Bass"]
    # the exported file scores exactly like the eager model
    valid = ds.load(tiny_bach, "valid")[:2]
    assert evaluate(module, valid, mcfg) == evaluate(model, valid, mcfg)


def test_export_refuses_a_file_that_differs_from_eager(tmp_path, monkeypatch):
    import models.arranger.export as export

    mcfg = ArrangerConfig(n_parts=4, d_model=16, n_layers=1)
    meta = arranger_metadata(mcfg, "x", "satb")
    torch.manual_seed(0)
    model = Arranger(mcfg)
    torch.manual_seed(1)
    other = torch.jit.script(Arranger(mcfg).eval())  # what a corrupted save would read back
    monkeypatch.setattr(export, "load_scripted", lambda path: (other, meta))
    with pytest.raises(RuntimeError, match="differs from eager"):
        export_arranger(model, mcfg, tmp_path / "x.pt", meta)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="arch"):
        ArrangerConfig(n_parts=4, arch="gru")
    with pytest.raises(ValueError, match="n_parts"):
        ArrangerConfig(n_parts=1)
    with pytest.raises(ValueError, match="use_voice_state"):
        ArrangerConfig(n_parts=4, causal=False, features=FeatureConfig(use_voice_state=True))
    with pytest.raises(ValueError, match="has 4 parts but the model predicts 2"):
        arranger_metadata(ArrangerConfig(n_parts=2), "x", "satb")


def test_metadata_carries_the_wire_protocol_version_as_information():
    from bridge.protocol import PROTOCOL_VERSION

    meta = arranger_metadata(ArrangerConfig(n_parts=4), "x", "satb")
    assert meta["protocol_version"] == PROTOCOL_VERSION


def test_cli_flags_override_config_file(tmp_path):
    conf = tmp_path / "c.json"
    conf.write_text(json.dumps({"steps": 7, "arch": "transformer"}))
    cfg, resume = parse_args(["--config", str(conf), "--steps", "9", "--no-online", "--resume"])
    assert (cfg.steps, cfg.arch, cfg.online, resume) == (9, "transformer", False, True)


def test_resume_continues_from_last_checkpoint(tiny_bach, tmp_path):
    base = dict(data=str(tiny_bach), out=str(tmp_path / "run"), eval_every=2, batch_size=2, crop=32,
                d_model=16, n_layers=1, limit_valid=1)
    train(TrainConfig(steps=2, **base), progress=False)
    result = train(TrainConfig(steps=4, **base), resume=True, progress=False)
    assert result["steps"] == 4
    assert json.loads((tmp_path / "run" / "history.json").read_text())[-1]["step"] == 4


@pytest.mark.slow
def test_a_small_lstm_learns_to_separate_voices(tiny_bach, tmp_path):
    torch.manual_seed(0)
    cfg = TrainConfig(data=str(tiny_bach), out=str(tmp_path / "run"), steps=240, eval_every=60,
                      batch_size=8, crop=128, d_model=64, n_layers=1, lr=3e-3, warmup_steps=20,
                      limit_valid=3)
    result = train(cfg, progress=False)
    labels = np.concatenate([p.labels for p in ds.load(tiny_bach, "valid")[:3]])
    most_common = np.bincount(labels).max() / len(labels)
    # the most-common-label baseline scores about 0.27 on chorales; 240 steps get well past it
    assert result["best_valid_accuracy"] > max(0.7, most_common + 0.2)  # about 0.89 over seeds 0-2
