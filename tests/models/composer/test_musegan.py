"""The MuseGAN hybrid baseline: shapes, piano rolls <-> notes on real chorales, a tiny training run
(seconds) that resumes, and bad options refused before anything is written."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from models.composer.musegan import (
    MuseGAN,
    MuseGANConfig,
    binarise,
    gradient_penalty,
    load,
    notes_to_roll,
    roll_to_notes,
)

TINY = {"batch_size": 4, "n_critic": 1, "z_dim": 4, "g_channels": 8, "d_channels": 8, "limit_train": 6,
        "transpose_low": -1, "transpose_high": 1, "hop_bars": 2, "save_every": 2}


@pytest.fixture(scope="module")
def train_chorales():
    from models.composer.data import load_pieces
    from models.composer.train_musegan import chorales

    try:
        return chorales(load_pieces("bach", "train", 12))
    except FileNotFoundError:
        pytest.skip("the bach set is not built (deep-musician data build bach --multitrack)")


def check_notes(notes: np.ndarray, track: np.ndarray, cfg: MuseGANConfig, bars: int) -> None:
    assert len(notes) == len(track) > 0
    assert ((notes["pitch"] >= cfg.low_pitch) & (notes["pitch"] < cfg.low_pitch + cfg.n_pitches)).all()
    assert (notes["duration"] > 0).all() and (notes["duration"] % cfg.step_ticks == 0).all()
    assert (notes["time"] % cfg.step_ticks == 0).all()
    assert (notes["time"] + notes["duration"] <= bars * 4 * 24).all()
    assert set(np.unique(track).tolist()) <= {0, 1, 2, 3}
    assert (np.diff(notes["time"]) >= 0).all()


@pytest.mark.parametrize("steps", [12, 16])
def test_shapes(steps):
    torch.manual_seed(0)
    cfg = MuseGANConfig(steps_per_bar=steps, z_dim=4, g_channels=8, d_channels=8)
    model = MuseGAN(cfg)
    x = model.generator(**model.generator.sample_latents(3))
    assert x.shape == (3, 4, 4, steps, 48)
    assert ((x >= 0) & (x <= 1)).all()
    assert model.discriminator(x).shape == (3,)
    assert gradient_penalty(model.discriminator, x.detach(), x.detach()).dim() == 0
    rolls = model.generate(2, seed=1, phrases=3)
    assert rolls.shape == (2, 4, 3 * 4 * steps, 48)
    assert torch.equal(rolls, model.generate(2, seed=1, phrases=3))  # a seed gives the same music


def test_config_names_the_bad_field():
    with pytest.raises(ValueError, match="steps_per_bar must be 12 or 16, got 10"):
        MuseGANConfig(steps_per_bar=10)
    with pytest.raises(ValueError, match="n_pitches"):
        MuseGANConfig(n_pitches=50)


def test_real_phrase_round_trips(train_chorales):
    cfg = MuseGANConfig()
    piece = train_chorales[0]
    start = int(piece.bar_starts[1])  # past a pickup
    roll = notes_to_roll(piece.notes, piece.track, cfg, start=start)
    assert roll is not None and roll.shape == (4, 64, 48)
    assert roll.any(axis=(1, 2)).all()  # every voice sings
    notes, track = roll_to_notes(roll, cfg)
    check_notes(notes, track, cfg, bars=4)
    assert np.array_equal(notes_to_roll(notes, track, cfg), roll)
    assert notes_to_roll(piece.notes, piece.track, MuseGANConfig(low_pitch=60, n_pitches=12)) is None


def test_voice_binarisation_is_one_line_per_track():
    probs = np.random.default_rng(0).random((4, 64, 48))
    voice = binarise(probs, "voice")
    assert (voice.sum(-1) <= 1).all() and voice.any()
    assert (binarise(probs, "threshold").sum(-1) > 1).any()
    sampled = binarise(probs, "bernoulli", rng=np.random.default_rng(1))
    assert abs(sampled.mean() - probs.mean()) < 0.01  # each cell on with its probability
    with pytest.raises(ValueError, match="binarise mode"):
        binarise(probs, "sample")


def test_tiny_training_resumes_and_generates_notes(train_chorales, tmp_path):
    from models.composer.train_musegan import MuseGANTrainConfig, phrases, train

    cfg = MuseGANConfig()
    data = phrases(train_chorales[:2], cfg, range(-1, 2))
    assert data.ndim == 5 and data.shape[1:] == (4, 4, 16, 6)  # 48 pitches packed in 6 bytes
    out = tmp_path / "run"
    first = train(MuseGANTrainConfig(**TINY, out=str(out), max_steps=3), progress=False)
    assert first["steps"] == 3 and first["phrases"] > 0
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["z_dim"] == 4 and config["train"]["max_steps"] == 3
    again = train(MuseGANTrainConfig(**TINY, out=str(out), max_steps=5), resume=True, progress=False)
    assert again["steps"] == 5
    model, ckpt = load(out / "last.pt")
    assert ckpt["step"] == 5 and model.cfg.z_dim == 4
    probs = model.generate(2, seed=0, phrases=2).numpy()
    for mode in ("voice", "threshold"):
        # an untrained generator hovers near 0.5: binarise at its median so both modes have notes
        notes, track = roll_to_notes(binarise(probs[0], mode, float(np.median(probs[0]))), model.cfg)
        check_notes(notes, track, model.cfg, bars=8)


def test_benchmark_writes_a_piece_as_long_as_each_chorale(train_chorales, tmp_path):
    from benchmarks.compose_musegan import generate

    torch.manual_seed(0)
    model = MuseGAN(MuseGANConfig(z_dim=4, g_channels=8, d_channels=8))
    real = train_chorales[:2]
    written, seconds = generate(model, real, seed=0, mode="threshold")
    assert len(written) == 2 and seconds > 0
    for w, r in zip(written, real):
        bars = -(-int((r.notes["time"] + r.notes["duration"]).max()) // 96)
        assert len(w.bar_starts) == bars and w.instruments == list(r.instruments)
        assert len(w.notes) and (w.notes["time"] + w.notes["duration"] <= bars * 96).all()
        assert len(w.chords) and w.chords["time"][0] == 0  # analysed from its own notes


@pytest.mark.parametrize("args, message", [
    (["--steps-per-bar", "10"], "steps_per_bar must be 12 or 16"),
    (["--data", "no-such-set"], "is not built"),
    (["--batch-size", "1"], "--batch-size must be at least 2"),
])
def test_bad_options_exit_2_and_write_nothing(args, message, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "models.composer.train_musegan", "--out", str(out),
                           "--max-steps", "1", *args], capture_output=True, text=True)
    assert proc.returncode == 2
    assert message in proc.stderr and proc.stderr.count("\n") == 1
    assert not out.exists()
