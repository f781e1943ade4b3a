"""The vocoder: both generators build at tiny size and give the samples their mel frames came
from; one adversarial training step is finite; the exported TorchScript file carries its metadata
and matches eager; the training command runs, resumes and writes its config, checkpoints and
TensorBoard logs on a real (tiny) set of WAV files; evaluation beside Griffin-Lim reports numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import wavfile

from models.format import load_for_inference, load_scripted
from models.performer import render, training
from models.performer import train_vocoder as tv
from models.performer import vocoder_eval as ve
from models.performer.vocoder import MelSpectrogram, Vocoder, VocoderConfig
from models.performer.vocoder_gan import (
    Discriminators,
    discriminator_loss,
    feature_loss,
    generator_loss,
    stft_distance,
)

TINY = {
    "vocos": VocoderConfig(generator="vocos", dim=16, intermediate_dim=32, n_layers=2),
    "hifigan": VocoderConfig(generator="hifigan", upsample_initial_channel=16),
}


def tone(seconds: float, hz: float) -> np.ndarray:
    t = np.arange(int(seconds * render.SAMPLE_RATE_HZ)) / render.SAMPLE_RATE_HZ
    return (0.3 * np.sin(2 * np.pi * hz * t) * np.exp(-(t % 0.5) * 4)).astype(np.float32)


def test_the_mel_is_render_log_mel_in_torch():
    audio = tone(1.0, 440.0)
    np.testing.assert_allclose(
        MelSpectrogram()(torch.from_numpy(audio)[None])[0].numpy(), render.log_mel(audio), atol=1e-4
    )


@pytest.mark.parametrize("name", list(TINY))
def test_each_generator_gives_the_samples_of_its_frames_and_trains_a_finite_step(name):
    torch.manual_seed(0)
    model, discs = Vocoder(TINY[name]), Discriminators((4, 4, 8, 8, 8), 4)
    mel_fn = MelSpectrogram()
    audio = torch.from_numpy(np.stack([tone(0.4, 220.0), tone(0.4, 330.0)]))[:, :8192]
    mel = mel_fn(audio)
    assert mel.shape == (2, 80, 33)
    fake = model(mel)
    assert fake.shape == audio.shape
    real_out, fake_out = discs(audio), discs(fake)
    loss = (
        45 * (mel_fn(fake) - mel).abs().mean()
        + generator_loss(fake_out)
        + 2 * feature_loss(real_out, fake_out)
        + stft_distance(fake, audio)
        + discriminator_loss(discs(audio), discs(fake.detach()))
    )
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_bad_configs_name_the_field():
    with pytest.raises(ValueError, match="generator must be one of vocos, hifigan"):
        VocoderConfig(generator="wavenet")
    with pytest.raises(ValueError, match="must multiply to the hop"):
        VocoderConfig(generator="hifigan", upsample_rates=(8, 8, 2), upsample_kernel_sizes=(16, 16, 4))
    assert VocoderConfig.from_dict(json.loads(json.dumps(TINY["hifigan"].to_dict()))) == TINY["hifigan"]


@pytest.mark.parametrize("name", list(TINY))
def test_the_export_reloads_with_its_metadata_and_matches_eager(name, tmp_path):
    model = Vocoder(TINY[name])
    meta = ve.metadata_for(model)
    path = ve.export_vocoder(model, tmp_path / "v.pt", meta)
    loaded, got = load_scripted(path)
    assert got["task"] == "perform_vocoder" and got["sample_rate_hz"] == 22_050 and got["hop"] == 256
    assert got["model"]["generator"] == name
    mel = torch.randn(1, 80, 50) - 4
    frozen, _ = load_for_inference(path)  # as the engine loads models: frozen
    with torch.no_grad():
        np.testing.assert_allclose(frozen(mel).numpy(), model(mel).numpy(), atol=1e-4)
        assert loaded(mel).shape == (1, 49 * 256)
    with pytest.raises(ValueError, match="exports to TorchScript"):
        ve.export_vocoder(model, tmp_path / "v.onnx", meta)


@pytest.fixture(scope="module")
def wav_set(tmp_path_factory) -> Path:
    """A performance set's layout with real WAV files (tones): two train pieces, one valid, one test."""
    root = tmp_path_factory.mktemp("voc")
    (root / "audio").mkdir()
    rows = []
    for key, split, hz in (
        ("a", "train", 220.0),
        ("b", "train", 330.0),
        ("c", "valid", 262.0),
        ("d", "test", 392.0),
    ):
        wavfile.write(
            root / "audio" / f"{key}.wav", render.SAMPLE_RATE_HZ, (tone(2.0, hz) * 32767).astype(np.int16)
        )
        rows.append({"key": key, "name": key, "split": split, "performer": 0})
    (root / "index.json").write_text(json.dumps(rows))
    return root


@pytest.mark.timeout(300)
def test_training_runs_resumes_and_evaluates(wav_set, tmp_path):
    out = tmp_path / "run"
    args = [
        "--data",
        str(wav_set),
        "--out",
        str(out),
        "--dim",
        "16",
        "--intermediate-dim",
        "32",
        "--n-layers",
        "2",
        "--batch-size",
        "2",
        "--segment-samples",
        "4096",
        "--gan-start-step",
        "2",
        "--period-channels",
        "4,4,8,8,8",
        "--resolution-channels",
        "4",
        "--eval-every",
        "2",
        "--valid-clips",
        "1",
        "--valid-seconds",
        "1",
    ]
    cfg, resume = tv.parse_args([*args, "--steps", "3"])
    first = tv.train(cfg, resume, progress=False)
    assert first["steps"] == 3 and np.isfinite(first["best_valid_mel_l1"])
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["segment_samples"] == 4096 and config["model"]["dim"] == 16
    assert list((out / "tb").iterdir())
    cfg, resume = tv.parse_args([*args, "--steps", "5", "--resume"])
    second = tv.train(cfg, resume, progress=False)
    assert second["steps"] == 5 and [h["step"] for h in json.loads((out / "history.json").read_text())] == [
        2,
        3,
        4,
        5,
    ]
    model, _, ckpt = tv.load_checkpoint(out / "last.pt")
    assert ckpt["step"] == 5
    report = ve.evaluate(model, str(wav_set), clips=1, seconds=1.0, gl_iters=4)
    assert report["clips"] == 1 and set(report["vocoder"]) == {"mel_l1", "log_mel_mse", "stft_distance"}
    assert all(np.isfinite(v) for v in report["griffin_lim_4"].values())


def test_no_audio_is_a_sentence(tmp_path):
    (tmp_path / "index.json").write_text("[]")
    cfg, _ = tv.parse_args(["--data", str(tmp_path), "--out", str(tmp_path / "run")])
    with pytest.raises(ValueError, match="needs train and valid audio; found 0 and 0 files"):
        tv.train(cfg, progress=False)


@pytest.mark.timeout(300)
def test_init_warm_starts_from_a_checkpoint_or_an_export_and_refuses_a_misfit(wav_set, tmp_path):
    small = ["--data", str(wav_set), "--dim", "16", "--intermediate-dim", "32", "--n-layers", "2",
             "--batch-size", "2", "--segment-samples", "4096", "--gan-start-step", "99", "--eval-every", "1",
             "--valid-clips", "1", "--valid-seconds", "1", "--steps", "1"]
    cfg, _ = tv.parse_args([*small, "--out", str(tmp_path / "a")])
    tv.train(cfg, progress=False)
    trained, _, _ = tv.load_checkpoint(tmp_path / "a" / "last.pt")
    exported = ve.export_vocoder(trained, tmp_path / "v.pt", ve.metadata_for(trained))
    for source in (tmp_path / "a" / "last.pt", exported):
        fresh = Vocoder(tv.model_config(cfg))
        weights = training.init_weights(source, fresh, "perform_vocoder")
        assert all(torch.equal(weights[k], v) for k, v in trained.state_dict().items())
    cfg, _ = tv.parse_args([*small, "--out", str(tmp_path / "b"), "--init", str(exported)])
    assert tv.train(cfg, progress=False)["steps"] == 1  # trains on from the exported weights
    with pytest.raises(ValueError, match="does not fit this model"):
        training.init_weights(exported, Vocoder(tv.model_config(tv.TrainConfig(dim=32))), "perform_vocoder")
    with pytest.raises(ValueError, match="is a perform_vocoder model, not a perform_synth model"):
        training.init_weights(exported, Vocoder(tv.model_config(cfg)), "perform_synth")
