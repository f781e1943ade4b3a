"""The phase-gradient vocoder: the phase it computes advances at a tone's frequency, a tone comes
back at its pitch and its mel closer than Griffin-Lim brings it, the same audio every call, an
export the neural performer plays through, and a stream whose windows continue each other's phase."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.format import load_scripted
from models.performer import render
from models.performer.expression import MARKED_DTYPE
from models.performer.griffin_lim import GriffinLim
from models.performer.phase_gradient import CarriedGradient, PhaseGradient, main, phase_gradient
from tests.models.performer.test_griffin_lim import assert_deterministic_and_batched, window_disagreement

SR, HOP = render.SAMPLE_RATE_HZ, render.HOP


def tone(seconds: float, hz: float, partials: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    waves = (0.3 / k * np.sin(2 * np.pi * k * hz * t + k) for k in range(1, partials + 1))
    return sum(waves).astype(np.float32)


def mel_of(audio: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(render.log_mel(audio, SR))[None]


def stft(audio: np.ndarray) -> torch.Tensor:
    return torch.stft(torch.from_numpy(audio), render.N_FFT, HOP, render.WIN, torch.hann_window(render.WIN),
                      center=True, return_complex=True)


@pytest.mark.parametrize("parabolic", [False, True])
def test_the_phase_advances_from_frame_to_frame_as_the_tones_own_does(parabolic):
    """On a tone's exact magnitude, the computed phase of the loudest bin advances per hop by what
    the tone's STFT phase does (2 pi f hop / sr, modulo 2 pi), off-centre frequency included, by the
    window's slope formula and by the parabola alike."""
    hz = 447.3  # between bins (21.5 Hz apart)
    spec = stft(tone(1.0, hz))
    phase = phase_gradient(spec.abs(), HOP, render.N_FFT, 0.25645 * render.WIN ** 2, parabolic=parabolic)
    peak = int(spec.abs()[:, 20].argmax())
    frames = slice(10, 70)
    got = torch.diff(phase[peak, frames])
    truth = torch.diff(torch.angle(spec[peak, frames]))
    wrapped = torch.remainder(got - truth + math.pi, 2 * math.pi) - math.pi
    assert float(wrapped.abs().max()) < 0.05, wrapped
    expected = 2 * math.pi * hz * HOP / SR
    assert abs(math.remainder(float(got.mean()) - expected, 2 * math.pi)) < 0.05


def test_a_tone_comes_back_at_its_pitch_and_its_mel_closer_than_griffin_lim_brings_it():
    mel = mel_of(tone(1.0, 440.0, partials=4))
    with torch.no_grad():
        out = PhaseGradient()(mel)[0].numpy()
        gl = GriffinLim(16)(mel)[0].numpy()
    assert out.shape == ((mel.shape[-1] - 1) * HOP,)
    spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out))))
    peak_hz = np.argmax(spectrum) * SR / len(out)
    assert abs(1200 * np.log2(peak_hz / 440.0)) < 50

    def distance(audio: np.ndarray) -> float:
        got = mel_of(audio)
        n = min(got.shape[-1], mel.shape[-1])
        return float((got[..., :n] - mel[..., :n]).abs().mean())

    assert distance(out) < distance(gl), (distance(out), distance(gl))


def test_the_same_mel_gives_the_same_audio_and_a_batch_gives_each_item_alone():
    assert_deterministic_and_batched(PhaseGradient(2), torch.stack([mel_of(tone(0.5, 220.0))[0],
                                                                    mel_of(tone(0.5, 330.0, partials=3))[0]]))
    with torch.no_grad():  # silence and a two-frame mel play (as silence and two hops)
        quiet = PhaseGradient()(torch.full((1, render.N_MELS, 2), math.log(render.LOG_FLOOR)))
    assert quiet.shape == (1, HOP) and float(quiet.abs().max()) < 1e-3


def test_iterations_out_of_range_are_refused():
    with pytest.raises(ValueError, match="iters must be 0..1000"):
        PhaseGradient(-1)


def test_the_export_carries_vocoder_metadata_matches_eager_and_plays_in_the_neural_performer(
        tmp_path, capsys):
    from models.performer.neural import DEFAULT_SYNTH, NeuralRenderer

    path = tmp_path / "pghi.pt"
    main(["--export", str(path)])
    assert str(path) in capsys.readouterr().out
    loaded, meta = load_scripted(path)
    assert meta["task"] == "perform_vocoder" and meta["name"] == "performer-vocoder-pghi"
    assert meta["model"]["generator"] == "phase-gradient" and meta["model"]["iters"] == 0
    assert meta["model"]["parabolic"] is True and meta["model"]["split_known"] is True
    mel = mel_of(tone(0.3, 523.25, partials=3))
    with torch.no_grad():
        assert torch.allclose(loaded(mel), PhaseGradient()(mel), atol=1e-4)

    renderer = NeuralRenderer.load(DEFAULT_SYNTH, path)
    streamed = renderer.stream_vocoder()
    assert isinstance(streamed, CarriedGradient) and streamed.model.parabolic and streamed.model.split_known
    notes = np.array([(0, 60, 0, 1.0, 80, 4, 0, 0), (0, 64, 1, 1.0, 80, 4, 0, 0)], MARKED_DTYPE)
    audio = renderer.render(notes, 120.0, performer="piano")
    assert audio.dtype == np.float32 and len(audio) > SR
    assert np.isfinite(audio).all() and np.abs(audio).max() > 1e-3


def test_carried_windows_continue_each_others_phase_and_survive_gaps():
    """Windows sliding along one frame grid, as a live session's: with the phase carried, two windows
    render the samples they share nearly alike; each window computed afresh renders them
    differently (its integration starts at zero phase). A window after a gap starts afresh."""
    mel = mel_of(tone(4.0, 440.0, partials=3))[0]
    model, window = PhaseGradient(), 60
    carried = CarriedGradient(model)
    with torch.no_grad():
        kept = window_disagreement(carried, mel, window)
        fresh = window_disagreement(lambda m, first: model(m[None])[0], mel, window)
        assert kept < 0.25 * fresh, (kept, fresh)
        assert carried(mel[:, 250:250 + window], 250).shape == ((window - 1) * HOP,)
        assert carried.first == 250


def test_harmonic_hz_marks_each_notes_partials_for_its_sounding_and_release_frames():
    from models.performer.phase_gradient import RELEASE_S, harmonic_hz

    per_frame = SR / HOP
    hz = harmonic_hz(np.array([0.5]), np.array([1.5]), np.array([69]), 0, 200, width=1)
    centre = int(round(440.0 * render.N_FFT / SR))
    sounding = slice(int(0.5 * per_frame) + 1, int((1.5 + RELEASE_S) * per_frame) - 1)
    for b in (centre - 1, centre, centre + 1):
        assert torch.allclose(hz[b, sounding], torch.tensor(440.0))
    assert torch.allclose(hz[int(round(880.0 * render.N_FFT / SR)), sounding], torch.tensor(880.0))
    assert torch.isnan(hz[centre, :int(0.5 * per_frame) - 1]).all()
    assert torch.isnan(hz[centre, int((1.5 + RELEASE_S) * per_frame) + 2:]).all()
    assert torch.isnan(hz[centre + 3, sounding]).all()  # between partials: nothing known
    assert not torch.isfinite(hz[:, sounding]).all(dim=0).any()
    # frames counted from first_frame: the same note seen from frame 40 on
    assert torch.equal(torch.isnan(harmonic_hz(np.array([0.5]), np.array([1.5]), np.array([69]), 40, 160,
                                               width=1)), torch.isnan(hz[:, 40:]))
    # width: the bins each side of the nearest that a harmonic claims
    wide = harmonic_hz(np.array([0.5]), np.array([1.5]), np.array([69]), 0, 200, width=2)
    for b in range(centre - 2, centre + 3):
        assert torch.allclose(wide[b, sounding], torch.tensor(440.0))
    assert torch.isnan(wide[centre + 3, sounding]).all() and torch.isnan(hz[centre + 2, sounding]).all()


def test_harmonic_hz_gives_a_bin_to_the_sounding_note_then_the_lower_harmonic():
    from models.performer.phase_gradient import harmonic_hz

    per_frame = SR / HOP
    # A4 ends at 1 s (its release runs on); A#4 starts there: in the bins both claim, A#4 plays
    hz = harmonic_hz(np.array([0.0, 1.0]), np.array([1.0, 2.0]), np.array([69, 70]), 0, 200)
    shared = int(round(440.0 * render.N_FFT / SR)) + 1  # A4's upper neighbour, A#4's nearest bin
    assert abs(float(hz[shared, int(1.1 * per_frame)]) - 466.16) < 0.01
    assert abs(float(hz[shared, int(0.5 * per_frame)]) - 440.0) < 0.01
    # C3's 5th partial (654 Hz) and E5 (659 Hz) at once: E5's fundamental takes the bins they share
    hz = harmonic_hz(np.array([0.0, 0.0]), np.array([1.0, 1.0]), np.array([76, 48]), 0, 100)
    e5 = 440.0 * 2 ** (7 / 12)
    for b in (int(round(e5 * render.N_FFT / SR)) - 1, int(round(e5 * render.N_FFT / SR))):
        assert abs(float(hz[b, 40]) - e5) < 0.01


def test_known_frequencies_steer_the_partials_the_mel_shows():
    """A 445 Hz tone's mel played with the score's word that the note is A4 comes out at 440 Hz;
    without it, at the mel's own estimate."""
    from models.performer.phase_gradient import harmonic_hz

    mel = mel_of(tone(2.0, 445.0))
    known = harmonic_hz(np.array([0.0]), np.array([2.0]), np.array([69]), 0, mel.shape[-1])
    with torch.no_grad():
        told = PhaseGradient()(mel, known[None])[0].numpy()
        alone = PhaseGradient()(mel)[0].numpy()

    def peak_hz(audio: np.ndarray) -> float:
        middle = audio[SR // 4:-SR // 4]
        spectrum = np.abs(np.fft.rfft(middle * np.hanning(len(middle)), 8 * len(middle)))
        return float(np.argmax(spectrum) * SR / (8 * len(middle)))

    assert abs(peak_hz(told) - 440.0) < 1.5, peak_hz(told)
    assert abs(peak_hz(alone) - 445.0) < abs(peak_hz(alone) - 440.0), peak_hz(alone)


def test_carried_windows_take_the_notes_frequencies_too():
    """Live windows told the note (A4) play a 445 Hz tone's mel at 440 Hz from window to window."""
    from models.performer.phase_gradient import harmonic_hz

    mel = mel_of(tone(3.0, 445.0))[0]
    known = harmonic_hz(np.array([0.0]), np.array([3.0]), np.array([69]), 0, mel.shape[-1])
    carried, window, step = CarriedGradient(PhaseGradient()), 60, 4
    out = []
    with torch.no_grad():
        for first in range(0, mel.shape[-1] - window, step):
            audio = carried(mel[:, first:first + window], first, known[:, first:first + window])
            out.append(audio[-step * HOP:].numpy() if first else audio.numpy())
    joined = np.concatenate(out)[SR // 4:]
    spectrum = np.abs(np.fft.rfft(joined * np.hanning(len(joined)), 8 * len(joined)))
    assert abs(np.argmax(spectrum) * SR / (8 * len(joined)) - 440.0) < 1.5


@pytest.mark.parametrize("split_known", [False, True])
def test_bins_of_one_notes_harmonic_keep_its_frequency_when_lobes_split_where_the_score_changes(split_known):
    """One spectral lobe (bins 17-25, loudest at 21) that the score says holds two notes' harmonics:
    A4 (440 Hz) in bins 17-20, A#4 (466 Hz) in 21-25. Lobes split only at magnitude minima make
    every bin follow the loudest, so the A4's bins advance at the A#4's frequency; split also where
    the known frequency changes, the A4's bins follow their own loudest (bin 20) at 440 Hz."""
    bins, frames = 40, 30
    m = torch.arange(bins, dtype=torch.float32)[:, None].expand(bins, frames)
    mag = torch.exp(-0.5 * ((m - 21.0) / 2.0) ** 2) + 1e-6
    known = torch.full((bins, frames), float("nan"))
    known[17:21], known[21:26] = 440.0, 466.16
    phase = phase_gradient(mag, HOP, render.N_FFT, 0.25645 * render.WIN ** 2, parabolic=True,
                           known_hz=known, sample_rate_hz=float(SR), split_known=split_known)

    def advance(hz: float) -> float:
        return math.remainder(2 * math.pi * hz * HOP / SR, 2 * math.pi)

    got = [math.remainder(float(d), 2 * math.pi) for d in torch.diff(phase[19, 5:25])]
    expected = advance(440.0) if split_known else advance(466.16)
    assert abs(advance(440.0) - advance(466.16)) > 0.5  # the two are told apart
    assert max(abs(math.remainder(g - expected, 2 * math.pi)) for g in got) < 1e-3, (got, expected)
    upper = [math.remainder(float(d), 2 * math.pi) for d in torch.diff(phase[23, 5:25])]
    assert max(abs(math.remainder(g - advance(466.16), 2 * math.pi)) for g in upper) < 1e-3


def test_lobe_shaping_gives_each_harmonics_bins_the_windows_lobe_with_their_energy():
    """``lobe_shaped``: a flat run of bins claimed by a 447.3 Hz harmonic (bins 18-23 here) keeps its
    energy, peaks at the bin nearest 447.3 Hz (20.8 -> 21) and past two bins off keeps only side-lobe
    levels (31 dB down); a second
    harmonic's run beside it is shaped on its own; bins no harmonic claims keep their magnitude."""
    from models.performer.phase_gradient import hann_lobe, lobe_shaped

    bins, frames = 40, 3
    mag = torch.full((bins, frames), 0.5)
    known = torch.full((bins, frames), float("nan"))
    known[18:24], known[24:30] = 447.3, 560.0
    out = lobe_shaped(mag, known, render.N_FFT, float(SR))
    for lo, hi, hz in ((18, 24, 447.3), (24, 30, 560.0)):
        run = out[lo:hi]
        assert torch.allclose((run ** 2).sum(0), (mag[lo:hi] ** 2).sum(0), rtol=1e-5)
        centre = hz * render.N_FFT / SR
        assert int(run[:, 0].argmax()) + lo == round(centre)
        far = (torch.arange(lo, hi) - centre).abs() >= 2
        assert float(run[far].abs().max()) < 0.03 * float(run.max())
    assert torch.equal(out[:18], mag[:18]) and torch.equal(out[30:], mag[30:])
    assert float(hann_lobe(torch.tensor(0.0))) == pytest.approx(1.0)
    assert float(hann_lobe(torch.tensor(2.0))) == pytest.approx(0.0, abs=1e-6)


def test_a_lobe_shaping_export_plays_the_score_as_eager_does(tmp_path):
    """The default export shapes the lobes (``--no-shape-known`` does not): its metadata says so and
    its output, told the notes' harmonics, matches eager; the live stream built from it shapes too."""
    from models.performer.neural import DEFAULT_SYNTH, NeuralRenderer
    from models.performer.phase_gradient import harmonic_hz

    path = tmp_path / "shaped.pt"
    main(["--export", str(path)])
    loaded, meta = load_scripted(path)
    assert meta["model"]["shape_known"] is True
    mel = mel_of(tone(1.0, 261.63, partials=4))
    known = harmonic_hz(np.array([0.0]), np.array([1.0]), np.array([60]), 0, mel.shape[-1])
    with torch.no_grad():
        eager = PhaseGradient(shape_known=True)(mel, known[None])
        assert torch.allclose(loaded(mel, known[None]), eager, atol=1e-4)
        assert not torch.allclose(eager, PhaseGradient(shape_known=False)(mel, known[None]), atol=1e-3)
    main(["--no-shape-known", "--export", str(tmp_path / "flat.pt")])
    assert load_scripted(tmp_path / "flat.pt")[1]["model"]["shape_known"] is False
    assert NeuralRenderer.load(DEFAULT_SYNTH, path).stream_vocoder().model.shape_known
