"""Hairpins heard through the neural performer: the swell the SoundFont path gives them, as a gain
on the synthesis model's log-mel.

The synthesis model follows a note's dynamic level (f over p 10.9 dB) but not the hairpin it is
under: four notes through a crescendo rose 4.2 dB through FluidSynth and not at all through the model
(benchmarks/RESULTS.md, "Hairpins through the neural path"). ``expression.realise`` plays a hairpin
two ways: each note's velocity half a dynamic level further along the hairpin's run (``progress``),
and CC11 ramping by ±``CC11_PER_LEVEL`` around ``CC11_BASE`` between the run's onsets. FluidSynth's
default modulators (SoundFont 2.01, section 8.4: velocity and CC11 to initial attenuation, concave,
960 cB) turn a controller x into 40·log10(x / 127) dB, so the hairpin's share of a note's level is

    40·log10(velocity(level + 0.5·h·progress) / velocity(level)) + 40·log10(cc11(t) / CC11_BASE)  dB

with h = ±1. Nothing here is fitted: the law and the ramps are the builder's. The gain goes to the
mel bands a note's harmonics reach while it sounds (and ``RELEASE_S`` after); where notes share a
band their gains are averaged, and bands no note reaches take the mean of the notes sounding.

    offsets = hairpin_offsets(performed, first_frame, frames)     # (n_mels, frames) nats, or None
    mel = mel + offsets
"""
from __future__ import annotations

import math

import numpy as np
import torch

from models.performer import expression as ex
from models.performer import render
from models.performer.rise_limit import harmonic_bands

RELEASE_S = 0.25  # a note's gain also covers this much of its release
NATS_PER_DB = math.log(10.0) / 20.0  # log-mel is the natural log of magnitude


def controller_db(value: np.ndarray | float, reference: np.ndarray | float) -> np.ndarray:
    """dB that FluidSynth's default (concave) velocity and CC11 modulators give ``value`` over
    ``reference`` (both 1..127)."""
    return 40.0 * np.log10(np.clip(value, 1.0, 127.0) / np.clip(reference, 1.0, 127.0))


def note_gain_db(notes: np.ndarray, times_s: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """(len(rows), len(times_s)) dB: the hairpin gain of notes[rows] (default all) at each time (0 for
    a note under no hairpin), as ``expression.realise`` plays the hairpin (velocity and CC11, above);
    the hairpin runs are read from all the notes."""
    rows = np.arange(len(notes)) if rows is None else np.asarray(rows)
    gains = np.zeros((len(rows), len(times_s)))
    if not len(rows) or not (notes["hairpin"][rows] != 0).any():
        return gains
    progress = ex.hairpin_progress(notes)  # the builder's own ramp
    level = notes["dynamic"].astype(np.float64)
    base_v = np.interp(level, np.arange(len(ex.LEVEL_VELOCITY)), ex.LEVEL_VELOCITY)
    ramped_v = np.interp(level + notes["hairpin"] * progress * 0.5, np.arange(len(ex.LEVEL_VELOCITY)),
                         ex.LEVEL_VELOCITY)
    velocity_db = controller_db(ramped_v, base_v)
    for part in np.unique(notes["part"][rows]):
        mine = np.flatnonzero((notes["part"] == part) & (notes["hairpin"] != 0))
        asked = np.flatnonzero(np.isin(rows, mine))
        if not len(asked):
            continue
        order = mine[np.argsort(notes["onset_s"][mine], kind="stable")]
        ramp = np.interp(times_s, notes["onset_s"][order], (notes["hairpin"] * progress)[order])
        cc11 = controller_db(ex.CC11_BASE + ex.CC11_PER_LEVEL * ramp, ex.CC11_BASE)
        gains[asked] = velocity_db[rows[asked], None] + cc11[None, :]
    return gains


def hairpin_offsets(performed: np.ndarray, first_frame: int, frames: int,
                    sample_rate_hz: int = render.SAMPLE_RATE_HZ, hop: int = render.HOP,
                    n_fft: int = render.N_FFT, n_mels: int = render.N_MELS,
                    fmax_hz: float = render.FMAX_HZ) -> torch.Tensor | None:
    """(n_mels, frames) float32 nats to add to frames first_frame.. of the model's log-mel, or None
    when no note is under a hairpin (the mel is left as it is)."""
    if not len(performed) or not (performed["hairpin"] != 0).any():
        return None
    per_frame = sample_rate_hz / hop
    on = np.floor(performed["onset_s"] * per_frame).astype(np.int64) - first_frame
    off = np.ceil((performed["onset_s"] + performed["duration_s"] + RELEASE_S) * per_frame).astype(np.int64)
    off -= first_frame
    sounding = np.flatnonzero((off > 0) & (on < frames))  # only the notes these frames hear
    times = (first_frame + np.arange(frames)) / per_frame
    gains = note_gain_db(performed, times, sounding) * NATS_PER_DB  # (sounding notes, frames)
    total = torch.zeros((n_mels, frames))
    count = torch.zeros((n_mels, frames))
    sounding_sum = np.zeros(frames)
    sounding_n = np.zeros(frames)
    for row, i in enumerate(sounding):
        lo, hi = max(int(on[i]), 0), min(int(off[i]), frames)
        bands = harmonic_bands(float(performed["pitch"][i]), sample_rate_hz, n_fft, n_mels, fmax_hz)
        bands = bands.float()[:, None]  # (n_mels, 1)
        g = torch.from_numpy(gains[row, lo:hi]).float()[None, :]
        total[:, lo:hi] += bands * g
        count[:, lo:hi] += bands
        sounding_sum[lo:hi] += gains[row, lo:hi]
        sounding_n[lo:hi] += 1
    mean = torch.from_numpy(sounding_sum / np.maximum(sounding_n, 1)).float()[None, :]
    return torch.where(count > 0, total / count.clamp(min=1), mean.expand(n_mels, frames))
