"""Griffin-Lim as a vocoder file: it gives a tone back at its pitch and its mel back closer than its
starting phase does, the same audio every call, and exports as a ``perform_vocoder`` file that the
neural performer plays through."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.format import load_scripted
from models.performer import render
from models.performer.expression import MARKED_DTYPE
from models.performer.griffin_lim import GriffinLim, export, main


def tone(seconds: float, hz: float) -> np.ndarray:
    t = np.arange(int(seconds * render.SAMPLE_RATE_HZ)) / render.SAMPLE_RATE_HZ
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def mel_of(audio: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(render.log_mel(audio, render.SAMPLE_RATE_HZ))[None]


def test_a_tone_comes_back_at_its_pitch_and_the_iterations_bring_its_mel_closer():
    mel = mel_of(tone(1.0, 440.0))
    with torch.no_grad():
        out = GriffinLim(32)(mel)[0].numpy()
        start = GriffinLim(1)(mel)[0].numpy()
    assert out.shape == ((mel.shape[-1] - 1) * render.HOP,)
    spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out))))
    peak_hz = np.argmax(spectrum) * render.SAMPLE_RATE_HZ / len(out)
    assert abs(1200 * np.log2(peak_hz / 440.0)) < 50  # mir_eval's note tolerance: a quarter tone
    rms = float(np.sqrt(np.mean(out[2048:-2048] ** 2)))
    assert 0.5 * 0.3 / np.sqrt(2) < rms < 2.0 * 0.3 / np.sqrt(2)

    def distance(audio: np.ndarray) -> float:
        got = mel_of(audio)
        n = min(got.shape[-1], mel.shape[-1])
        return float((got[..., :n] - mel[..., :n]).abs().mean())

    assert distance(out) < distance(start)


def assert_deterministic_and_batched(model, mels: torch.Tensor) -> None:
    """The same mels give the same audio, and the second item of a batch plays as it does alone."""
    with torch.no_grad():
        a, b = model(mels), model(mels)
        alone = model(mels[1:])
    assert torch.equal(a, b)
    assert torch.allclose(a[1:], alone, atol=1e-5)


def test_the_same_mel_gives_the_same_audio_and_a_batch_gives_each_item_alone():
    assert_deterministic_and_batched(GriffinLim(8), torch.stack([mel_of(tone(0.5, 220.0))[0],
                                                                 mel_of(tone(0.5, 330.0))[0]]))


def test_iterations_out_of_range_are_refused():
    with pytest.raises(ValueError, match="iters must be 1..1000"):
        GriffinLim(0)


def test_the_export_carries_vocoder_metadata_matches_eager_and_plays_in_the_neural_performer(
        tmp_path, capsys):
    from models.performer.neural import DEFAULT_SYNTH, NeuralRenderer

    path = tmp_path / "gl.pt"
    main(["--iters", "4", "--export", str(path)])
    assert str(path) in capsys.readouterr().out
    loaded, meta = load_scripted(path)
    assert meta["task"] == "perform_vocoder"
    assert (meta["sample_rate_hz"], meta["hop"], meta["n_mels"]) == (render.SAMPLE_RATE_HZ, render.HOP,
                                                                     render.N_MELS)
    assert meta["model"] == {"generator": "griffin-lim", "iters": 4, "momentum": 0.99}
    mel = mel_of(tone(0.3, 523.25))
    with torch.no_grad():
        assert torch.allclose(loaded(mel), GriffinLim(4)(mel), atol=1e-4)

    renderer = NeuralRenderer.load(DEFAULT_SYNTH, path)
    notes = np.array([(0, 60, 0, 1.0, 80, 4, 0, 0), (0, 64, 1, 1.0, 80, 4, 0, 0)], MARKED_DTYPE)
    audio = renderer.render(notes, 120.0, performer="piano")
    assert audio.dtype == np.float32 and len(audio) > render.SAMPLE_RATE_HZ
    assert np.isfinite(audio).all() and np.abs(audio).max() > 1e-3


def test_an_export_that_would_not_validate_is_refused_before_writing(tmp_path, monkeypatch):
    from models.performer import griffin_lim

    monkeypatch.setattr(griffin_lim, "metadata_for", lambda model: {"task": "perform_vocoder"})
    with pytest.raises(ValueError, match="vocoder metadata is not valid"):
        export(GriffinLim(2), tmp_path / "gl.pt")
    assert not (tmp_path / "gl.pt").exists()


def window_disagreement(render_window, mel: torch.Tensor, window: int = 60, step: int = 4) -> float:
    """Windows of ``window`` frames sliding by ``step`` along one frame grid, as a live session's:
    the median RMS difference between the samples two consecutive windows both render, away from
    either edge."""
    previous, errors = None, []
    for first in range(0, 160, step):
        audio = render_window(mel[:, first:first + window], first).numpy()
        if previous is not None:
            shared = audio[2 * render.HOP:(window - step - 2) * render.HOP]
            before = previous[(step + 2) * render.HOP:window * render.HOP][:len(shared)]
            errors.append(np.sqrt(np.mean((shared - before) ** 2)))
        previous = audio
    return float(np.median(errors))


def test_carried_phase_keeps_a_tone_coherent_from_window_to_window_and_survives_gaps():
    """With the phase carried, two windows render the samples they share nearly alike (the joins a
    crossfade must hide stay small); each window with a fresh phase renders them differently. A
    window after a gap starts afresh."""
    from models.performer.griffin_lim import CarriedPhase

    mel = mel_of(tone(4.0, 440.0))[0]
    model, window = GriffinLim(4), 60
    carried = CarriedPhase(model)
    with torch.no_grad():
        kept = window_disagreement(carried, mel, window)
        fresh = window_disagreement(lambda m, first: model(m[None])[0], mel, window)
    assert kept < 0.5 * fresh, (kept, fresh)
    with torch.no_grad():  # a jump past every frame seen: no shared frames, no error
        assert carried(mel[:, 250:250 + window], 250).shape == ((window - 1) * render.HOP,)
