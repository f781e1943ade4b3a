"""Loudness of rendered audio, measured as it streams: EBU R128 / ITU-R BS.1770-4 integrated loudness
(LUFS) and true peak (dBTP), and the gain that brings a render to a stated loudness under a
true-peak ceiling.

The K-weighting filters are pyloudnorm's (its ``Meter``'s filter coefficients), run chunk by chunk
with their state carried over, and the gated blocks are built from 100 ms sub-blocks. Each finished
400 ms block goes into a running histogram of loudness (``HISTOGRAM_STEP_LU`` bins above the
histogram floor, each keeping its blocks' count and summed power, as libebur128's histogram mode
does), so a render of any length is measured in constant memory and ``integrated_lufs`` costs the
same at ten minutes as at ten seconds; only the relative gate's own bin is judged whole (by its mean
loudness), so the result is within a few thousandths of a LU of re-reading every block. On a whole
signal it agrees with ``pyloudnorm.Meter.integrated_loudness`` (tests/bridge/test_loudness.py).
True peak is the sample peak of the signal oversampled 4× (BS.1770-4, annex 2).
"""
from __future__ import annotations

import math

import numpy as np

ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0
HISTOGRAM_STEP_LU = 0.01  # bins from here ...
HISTOGRAM_FLOOR_LUFS = -160.0  # below the absolute gate: a quiet render turned up passes it
HISTOGRAM_TOP_LUFS = 10.0  # ... to here (louder blocks share the top bin; their power stays exact)
OVERSAMPLE = 4
_CONTEXT = 32  # input samples on each side that the oversampling filter needs to be exact there


class LoudnessMeter:
    """Feed (channels, n) chunks with ``add``; read ``integrated_lufs`` and ``true_peak_dbtp``."""

    def __init__(self, sample_rate_hz: int, channels: int = 2) -> None:
        import pyloudnorm

        meter = pyloudnorm.Meter(sample_rate_hz)  # K-weighting: a high shelf, then a high pass
        self._stages = [(np.asarray(f.b, np.float64), np.asarray(f.a, np.float64))
                        for f in meter._filters.values()]
        self._state = [np.zeros((channels, max(len(b), len(a)) - 1)) for b, a in self._stages]
        self.sample_rate_hz, self.channels = sample_rate_hz, channels
        self._sub = round(0.1 * sample_rate_hz)  # samples per 100 ms sub-block (a quarter of a gating block)
        self._partial = np.zeros(channels)  # energy of the unfinished sub-block
        self._filled = 0  # samples in it
        self._recent: list[float] = []  # the last three finished sub-blocks' energy, summed over channels
        bins = round((HISTOGRAM_TOP_LUFS - HISTOGRAM_FLOOR_LUFS) / HISTOGRAM_STEP_LU)
        self._count = np.zeros(bins, np.int64)  # gated 400 ms blocks per loudness bin
        self._power = np.zeros(bins)  # and their summed mean-square power
        self._tail = np.zeros((channels, 0))  # the last 2 * _CONTEXT samples
        self._unmeasured = 0  # the last samples of the tail, whose peak waits for what follows
        self._peak = 0.0
        self.samples = 0

    def add(self, audio: np.ndarray) -> None:
        from scipy.signal import lfilter, resample_poly

        audio = np.asarray(audio, np.float64).reshape(self.channels, -1)
        self.samples += audio.shape[1]
        x = audio
        for k, (b, a) in enumerate(self._stages):
            x, self._state[k] = lfilter(b, a, x, axis=1, zi=self._state[k])
        energy = x ** 2
        pos = 0
        while pos < energy.shape[1]:
            take = min(self._sub - self._filled, energy.shape[1] - pos)
            self._partial += energy[:, pos:pos + take].sum(axis=1)
            self._filled += take
            pos += take
            if self._filled == self._sub:
                self._finish_sub(float(self._partial.sum()))  # channel weights are 1 (L, R, C)
                self._partial, self._filled = np.zeros(self.channels), 0
        joined = np.concatenate([self._tail, audio], axis=1)
        start, end = self._tail.shape[1] - self._unmeasured, joined.shape[1] - _CONTEXT
        if end > start:  # samples with context on both sides now: their oversampled peak is final
            up = resample_poly(joined, OVERSAMPLE, 1, axis=1)
            self._peak = max(self._peak, float(np.abs(up[:, OVERSAMPLE * start:OVERSAMPLE * end]).max()))
        self._unmeasured = joined.shape[1] - max(start, end)
        self._tail = joined[:, -2 * _CONTEXT:]

    def _finish_sub(self, energy: float) -> None:
        """A 100 ms sub-block is complete: the 400 ms block ending with it (75 % overlap) goes
        into the histogram (the gates are applied when it is read)."""
        if len(self._recent) == 3:
            power = (sum(self._recent) + energy) / (4 * self._sub)
            loudness = -0.691 + 10 * math.log10(power) if power > 0 else -math.inf
            if loudness >= HISTOGRAM_FLOOR_LUFS:
                k = min(int((loudness - HISTOGRAM_FLOOR_LUFS) / HISTOGRAM_STEP_LU), len(self._count) - 1)
                self._count[k] += 1
                self._power[k] += power
            self._recent.pop(0)
        self._recent.append(energy)

    def integrated_lufs(self, gain_db: float = 0.0) -> float:
        """Gated integrated loudness of the audio so far turned up by ``gain_db``; -inf for audio
        shorter than a block or silent. The absolute gate is not scale-free: a render at -47 LUFS
        turned up by 29 dB lets in blocks that were below -70 LUFS, so measure at the gain meant."""
        gate = ABSOLUTE_GATE_LUFS - gain_db  # the absolute gate, in the loudness as measured
        floor = max(int(math.ceil((gate - HISTOGRAM_FLOOR_LUFS) / HISTOGRAM_STEP_LU - 1e-9)), 0)
        counts, powers = self._count[floor:], self._power[floor:]
        total = int(counts.sum())
        if total == 0:
            return -math.inf
        relative = -0.691 + 10 * math.log10(powers.sum() / total) + RELATIVE_GATE_LU
        k = int((relative - HISTOGRAM_FLOOR_LUFS) / HISTOGRAM_STEP_LU) - floor
        keep = slice(max(k + 1, 0), None)  # the bins wholly above the relative gate ...
        count, power = int(counts[keep].sum()), float(powers[keep].sum())
        if 0 <= k < len(counts) and counts[k]:  # ... and its own bin, by its mean loudness
            if -0.691 + 10 * math.log10(powers[k] / counts[k]) > relative:
                count, power = count + int(counts[k]), power + float(powers[k])
        return -0.691 + 10 * math.log10(power / count) + gain_db if count else -math.inf

    def true_peak_dbtp(self) -> float:
        from scipy.signal import resample_poly

        peak = self._peak
        if self._unmeasured:  # the end of the audio so far, as if it ended here
            up = resample_poly(self._tail, OVERSAMPLE, 1, axis=1)
            peak = max(peak, float(np.abs(up[:, -OVERSAMPLE * self._unmeasured:]).max()))
        return 20 * math.log10(peak) if peak > 0 else -math.inf


def gain_to(meter: LoudnessMeter, target_lufs: float, ceiling_dbtp: float) -> tuple[float, float]:
    """(gain dB, the loudness measured without it) that brings what ``meter`` measured to
    ``target_lufs`` under ``ceiling_dbtp`` (``level_gain_db``), with the gates applied at that gain:
    a few fixed-point steps, since the gain changes which blocks the absolute gate lets in."""
    lufs, peak = meter.integrated_lufs(), meter.true_peak_dbtp()
    gain = level_gain_db(lufs, peak, target_lufs, ceiling_dbtp)
    for _ in range(8):
        heard = meter.integrated_lufs(gain)
        if not math.isfinite(heard) or abs(heard - target_lufs) < 0.005:
            break
        gain = level_gain_db(heard - gain, peak, target_lufs, ceiling_dbtp)
    return gain, lufs


def level_gain_db(loudness_lufs: float, true_peak_dbtp: float, target_lufs: float,
                  ceiling_dbtp: float) -> float:
    """The gain to `target_lufs`, lowered where it would put the true peak above `ceiling_dbtp`
    (no limiter: a render with a high crest factor comes out quieter than the target). Silence
    (-inf LUFS) gets 0 dB."""
    if not math.isfinite(loudness_lufs):
        return 0.0
    gain = target_lufs - loudness_lufs
    if math.isfinite(true_peak_dbtp):
        gain = min(gain, ceiling_dbtp - true_peak_dbtp)
    return gain
