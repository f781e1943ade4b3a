"""The streaming loudness meter agrees with pyloudnorm on whole signals, whatever the chunking;
true peak sees between the samples; the gain honours the target and the ceiling."""
from __future__ import annotations

import math

import numpy as np
import pyloudnorm
import pytest

from bridge.loudness import LoudnessMeter, gain_to, level_gain_db


def signal(sample_rate_hz: int, seconds: float = 6.0) -> np.ndarray:
    """(2, n): a tone that stops, noise throughout, a quieter second channel: the gates have work."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sample_rate_hz)) / sample_rate_hz
    left = 0.2 * np.sin(2 * np.pi * 440 * t) * (t < seconds / 2) + 0.003 * rng.standard_normal(len(t))
    right = 0.05 * np.sin(2 * np.pi * 97 * t)
    return np.stack([left, right]).astype(np.float32)


@pytest.mark.parametrize("sample_rate_hz", [22_050, 44_100, 48_000])
@pytest.mark.parametrize("chunk", [1000, 4096, 10**7])
def test_integrated_loudness_is_pyloudnorms_however_the_audio_is_chunked(sample_rate_hz, chunk):
    audio = signal(sample_rate_hz)
    meter = LoudnessMeter(sample_rate_hz)
    for i in range(0, audio.shape[1], chunk):
        meter.add(audio[:, i:i + chunk])
    expected = pyloudnorm.Meter(sample_rate_hz).integrated_loudness(audio.T.astype(np.float64))
    assert meter.integrated_lufs() == pytest.approx(expected, abs=0.02)
    assert meter.samples == audio.shape[1]


def test_true_peak_finds_the_peak_between_samples():
    sr = 48_000
    n = np.arange(sr)
    audio = np.stack([np.sin(2 * np.pi * n / 4 + np.pi / 4)] * 2).astype(np.float32)  # samples at ±0.707
    meter = LoudnessMeter(sr)
    for i in range(0, sr, 777):
        meter.add(audio[:, i:i + 777])
    assert 20 * math.log10(np.abs(audio).max()) == pytest.approx(-3.01, abs=0.01)
    assert meter.true_peak_dbtp() == pytest.approx(0.0, abs=0.2)


def test_silence_and_short_audio_measure_minus_infinity_and_get_no_gain():
    meter = LoudnessMeter(48_000)
    meter.add(np.zeros((2, 48_000), np.float32))
    assert meter.integrated_lufs() == -math.inf and meter.true_peak_dbtp() == -math.inf
    assert level_gain_db(meter.integrated_lufs(), meter.true_peak_dbtp(), -18.0, -1.0) == 0.0
    short = LoudnessMeter(48_000)
    short.add(np.ones((2, 1000), np.float32))
    assert short.integrated_lufs() == -math.inf


def test_the_gain_reaches_the_target_unless_the_peak_would_pass_the_ceiling():
    assert level_gain_db(-30.0, -20.0, -18.0, -1.0) == pytest.approx(12.0)
    assert level_gain_db(-30.0, -5.0, -18.0, -1.0) == pytest.approx(4.0)  # held by the ceiling
    assert level_gain_db(-10.0, -2.0, -18.0, -1.0) == pytest.approx(-8.0)  # too loud: turned down


def test_a_quiet_render_turned_up_lands_on_the_target_though_the_gain_opens_the_absolute_gate():
    """A note at about -45 LUFS for 1 s, 16 dB softer for 2 s, then a floor 35 dB down for 6 s: as
    it is, the floor is below the absolute gate (-70 LUFS); turned up to -18 LUFS it passes, lowers
    the relative gate, and the soft part counts too. gain_to measures at the gain it gives."""
    sr = 22_050
    t = np.arange(9 * sr) / sr
    level = np.where(t < 1.0, 1.0, np.where(t < 3.0, 10 ** (-16 / 20), 10 ** (-35 / 20)))
    tone = 0.006 * np.sin(2 * np.pi * 440 * t) * level
    audio = np.stack([tone, tone]).astype(np.float32)
    meter = LoudnessMeter(sr)
    for i in range(0, audio.shape[1], 2048):
        meter.add(audio[:, i:i + 2048])
    reference = pyloudnorm.Meter(sr)
    raw = reference.integrated_loudness(audio.T.astype(np.float64))
    naive = level_gain_db(raw, meter.true_peak_dbtp(), -18.0, -1.0)
    gain, measured = gain_to(meter, -18.0, -1.0)
    assert measured == pytest.approx(raw, abs=0.02)
    heard = lambda g: reference.integrated_loudness((audio.T * 10 ** (g / 20)).astype(np.float64))
    assert abs(heard(naive) + 18.0) > 1.0  # the gain read off the raw loudness misses
    assert heard(gain) == pytest.approx(-18.0, abs=0.05)
    assert meter.integrated_lufs(gain) == pytest.approx(heard(gain), abs=0.02)
