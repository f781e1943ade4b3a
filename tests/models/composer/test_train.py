"""Training: a tiny run writes its config beside the checkpoints, resumes, and runs under torchrun."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.composer.train import TrainConfig, get_lr, load_checkpoint, parse_args, train

ROOT = Path(__file__).resolve().parents[3]
TINY = dict(data="bach", d_model=32, n_layers=1, n_heads=2, block_size=64, batch_size=2,
            limit_train=3, limit_valid=2, warmup_steps=2, eval_every=2, threads=1)


@pytest.fixture(autouse=True)
def _needs_bach(chorales):
    return chorales


@pytest.mark.parametrize("rep", ["ours", "remi", "mmt"])
def test_a_tiny_run_trains_saves_and_resumes(tmp_path, rep):
    cfg = TrainConfig(**TINY, rep=rep, out=str(tmp_path), max_steps=2)
    result = train(cfg, progress=False)
    assert result["steps"] == 2 and 0 < result["best_nll_per_note"] < 100
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["train"]["rep"] == rep and saved["tokenizer"]["rep"] == rep
    model, mcfg, tcfg, ckpt = load_checkpoint(tmp_path / "best.pt")
    assert tcfg.rep == rep and ckpt["metrics"]["notes"] > 0
    resumed = train(TrainConfig(**TINY, rep=rep, out=str(tmp_path), max_steps=4), resume=True, progress=False)
    assert resumed["steps"] == 4


def test_lr_warms_up_then_decays():
    cfg = TrainConfig(lr=1e-3, min_lr=1e-4, warmup_steps=10, max_steps=110)
    assert get_lr(0, cfg) == pytest.approx(1e-4) and get_lr(10, cfg) == pytest.approx(1e-3)
    assert get_lr(110, cfg) == pytest.approx(1e-4)


def test_flags_override_the_config_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"rep": "remi", "d_model": 64}))
    cfg, resume = parse_args(["--config", str(path), "--d-model", "96", "--resume"])
    assert (cfg.rep, cfg.d_model, resume) == ("remi", 96, True)


def test_two_processes_under_torchrun(tmp_path):
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "models.composer.train", *flags, "--max-steps", "2", "--out", str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    # its own session, so a hang kills the workers too, not only torchrun
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    # the workers' own error comes first in stderr, torchrun's summary last: keep both
    assert proc.returncode == 0, err if len(err) < 6000 else f"{err[:3000]}\n...\n{err[-3000:]}"
    assert json.loads(out.strip().splitlines()[-1])["steps"] == 2
    assert (tmp_path / "best.pt").exists()


def test_chord_variants_drop_or_thin_the_chords(chorales):
    import random

    from models.composer.data import Sequences
    from models.composer.representations import make_tokenizer
    from models.composer.tokens import TokenizerConfig, bar_grid, chords_per_bar

    piece = chorales[0]
    thin = chords_per_bar(piece)
    starts, _ = bar_grid(piece.meters, 1 << 16)
    times = thin.chords["time"]
    assert set(times.tolist()) <= set(starts.tolist()) and (np.diff(times) > 0).all()
    assert len(thin.chords) < len(piece.chords)
    np.testing.assert_array_equal(thin.notes, piece.notes)
    tok = make_tokenizer(TokenizerConfig.for_instruments("ours", list(piece.instruments), True, True))
    seqs = Sequences(chorales[:3], tok, chord_dropout=0.5, chord_thinning=0.5)
    seqs.batch(8, 64, random.Random(0))
    assert {k[2] for k in seqs.cache} <= {"none", "bar"}
    names = [tok.vocab.names[i] for i in seqs.get(0, 0, "none")]
    assert not any(n.startswith("CHORD_") for n in names)
    assert tok.count_notes(seqs.get(0, 0, "bar")) == tok.count_notes(seqs.get(0))


def test_separate_decoders_route_each_track_to_its_own_and_train(tmp_path, chorales):
    """The study's other end: a decoder per instrument, each scoring only its own track's tokens."""
    import torch

    from models.composer.model import ComposerConfig
    from models.composer.representations import make_tokenizer
    from models.composer.separate import SeparateDecoders
    from models.composer.tokens import TokenizerConfig

    names = ["soprano", "alto", "tenor", "bass"]
    tok = make_tokenizer(TokenizerConfig.for_instruments("ours", names))
    cfg = TrainConfig(**TINY, rep="ours", out=str(tmp_path), max_steps=3, separate_decoders=True,
                      instruments=",".join(names))
    result = train(cfg, progress=False)
    assert result["steps"] == 3 and 0 < result["best_nll_per_note"] < 100
    ckpt = torch.load(tmp_path / "best.pt", map_location="cpu", weights_only=False)
    model = SeparateDecoders(ComposerConfig.from_dict(ckpt["config"]), None, ckpt["model"]["track_of"])
    model.load_state_dict(ckpt["model"])
    assert len(model.decoders) == 4 and model.decoders[0].cfg.d_model == TINY["d_model"] // 2
    # every pitch token of a real chorale is predicted by the decoder of its own instrument
    ids = torch.from_numpy(tok.encode(chorales[0]).astype(np.int64))[None]
    track = model.current_track(ids[:, :-1])[0]
    pitches = [(t, nxt) for t, nxt in enumerate(ids[0, 1:].tolist())
               if tok.kind_names[tok.kind_of[nxt]] in ("PITCH", "NPITCH")]
    assert len(pitches) > 100
    assert [int(track[t]) for t, _ in pitches] == [tok.pitch_of(nxt)[0] for _, nxt in pitches]
    with pytest.raises(ValueError, match="separate decoders per instrument"):
        load_checkpoint(tmp_path / "best.pt")
