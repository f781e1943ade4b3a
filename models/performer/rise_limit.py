"""A synthesis model's log-mel may rise quickly only where a note starts.

The synthesis model hears every note through one polyphonic mixer, and when a voice starts a note
it raises the bands of the notes already sounding too: a transcriber hears those held notes
re-attacked (on four piano Kyries, 90 % of the neural render's re-attacks inside held notes fell
within 60 ms of another note's onset or offset; FluidSynth's own mel through the same vocoder did
not do it, the model's mel did through every vocoder: benchmarks/RESULTS.md, "Rises only where a
note starts"). The score says where energy may arrive: the bands a starting note's harmonics reach,
from ``PRE_FRAMES`` before its onset to ``POST_FRAMES`` after. Elsewhere a band may rise by at most
``rate`` nats per frame (``RISE_NATS_PER_FRAME``: 0.01, 7.5 dB a second: a hairpin on a held note
still swells); falls are free.

    free = onset_bands(performed["onset_s"], performed["pitch"], first_frame, frames)
    mel = rise_limited(mel, free, RISE_NATS_PER_FRAME)
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from models.performer import render

RISE_NATS_PER_FRAME = 0.01  # the most a band's log-mel rises per frame away from a starting note
PRE_FRAMES = 2  # a starting note's bands are free from this many frames before its onset frame
POST_FRAMES = 8  # ... to this many after (93 ms: its attack)
HARMONIC_WIDTH = 1  # FFT bins each side of a harmonic's nearest that count as its own
LEGATO_NATS_PER_FRAME = 0.3  # a slurred note's own bands rise at most this fast (3 nats in 116 ms)
LEGATO_POST_FRAMES = 24  # a slurred note's bands rise at the legato rate for this many frames (279 ms)
LOOKBACK_FRAMES = 64  # frames before a requested span that the limit runs over first (its state)


@functools.lru_cache(maxsize=4)
def band_reach(sample_rate_hz: int, n_fft: int, n_mels: int, fmax_hz: float) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) float32: 1 where a mel band's filter hears an FFT bin."""
    fb = np.asarray(render.mel_filterbank(sample_rate_hz, n_fft, n_mels))
    return torch.from_numpy((fb > 0).astype(np.float32))


@functools.lru_cache(maxsize=1024)
def harmonic_bands(pitch: float, sample_rate_hz: int = render.SAMPLE_RATE_HZ, n_fft: int = render.N_FFT,
                   n_mels: int = render.N_MELS, fmax_hz: float = render.FMAX_HZ) -> torch.Tensor:
    """(n_mels,) bool: the mel bands a note of ``pitch`` reaches with a harmonic (equal temperament,
    up to ``fmax_hz``; each harmonic's nearest FFT bin and ``HARMONIC_WIDTH`` each side)."""
    n_bins = n_fft // 2 + 1
    f0 = 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)
    centre = np.round(np.arange(1, max(1, int(fmax_hz // f0)) + 1) * f0 * n_fft / sample_rate_hz)
    near = np.concatenate([centre + d for d in range(-HARMONIC_WIDTH, HARMONIC_WIDTH + 1)])
    bins = torch.zeros(n_bins)
    bins[np.unique(np.clip(near, 0, n_bins - 1).astype(np.int64))] = 1.0
    return band_reach(sample_rate_hz, n_fft, n_mels, fmax_hz) @ bins > 0


def onset_bands(onset_s: np.ndarray, pitch: np.ndarray, first_frame: int, frames: int,
                sample_rate_hz: int = render.SAMPLE_RATE_HZ, hop: int = render.HOP,
                n_fft: int = render.N_FFT, n_mels: int = render.N_MELS, fmax_hz: float = render.FMAX_HZ,
                pre: int = PRE_FRAMES, post: int = POST_FRAMES) -> torch.Tensor:
    """(n_mels, frames) bool: for frames first_frame.., True in the mel bands that a note starting
    near that frame reaches with a harmonic (``harmonic_bands``), from ``pre`` frames before its
    onset's frame to ``post`` after."""
    free = torch.zeros((n_mels, frames), dtype=torch.bool)
    on = np.floor(np.asarray(onset_s, np.float64) * sample_rate_hz / hop).astype(np.int64) - first_frame
    for a, p in zip(on, np.asarray(pitch, np.float64)):
        lo, hi = max(int(a) - pre, 0), min(int(a) + post + 1, frames)
        if hi > lo:
            free[:, lo:hi] |= harmonic_bands(float(p), sample_rate_hz, n_fft, n_mels, fmax_hz)[:, None]
    return free


def rise_limited(mel: torch.Tensor, free: torch.Tensor,
                 rate: float | torch.Tensor = RISE_NATS_PER_FRAME) -> torch.Tensor:
    """(n_mels, T) log-mel with each band's rise limited to ``rate`` per frame (a number, or an
    (n_mels, T) map) except where ``free`` (n_mels, T) is True: out[t] = mel[t] where free, else
    min(mel[t], out[t - 1] + rate[t]). Falls pass. Vectorised: with R the running sum of the rates,
    out[t] = min over s in the band's segment since its last free frame of mel[s] + R[t] - R[s], a
    cumulative minimum restarted at each free frame."""
    x = mel.double()
    r = torch.as_tensor(rate, dtype=torch.float64, device=x.device).expand_as(x)
    if float(r.min()) < 0:
        raise ValueError(f"rate must be >= 0 nats per frame, got {float(r.min())}")
    total = torch.cumsum(torch.where(free, torch.zeros_like(x), r), dim=-1)
    segment = torch.cumsum(free.long(), dim=-1).double()
    big = 4.0 * (float(x.abs().max()) + float(total.max()) + 1.0)  # later segments sort below earlier
    low = torch.cummin(x - total - segment * big, dim=-1).values + total + segment * big
    return torch.where(free, x, torch.minimum(low, x)).to(mel.dtype)


def legato_notes(notes: np.ndarray) -> np.ndarray:
    """bool per note: it continues a slur, i.e. the note before it in its part (by onset) is slurred
    and does not end the slur (``expression.SLUR`` without ``SLUR_END``)."""
    from models.performer.expression import SLUR, SLUR_END

    legato = np.zeros(len(notes), bool)
    for part in np.unique(notes["part"]):
        idx = np.flatnonzero(notes["part"] == part)
        idx = idx[np.argsort(notes["onset_s"][idx], kind="stable")]
        marks = notes["marks"][idx].astype(np.int64)
        legato[idx[1:]] = ((marks[:-1] & SLUR) > 0) & ((marks[:-1] & SLUR_END) == 0)
    return legato


def rise_rates(performed: np.ndarray, first_frame: int, frames: int, rate: float,
               legato_rate: float | None = None, sample_rate_hz: int = render.SAMPLE_RATE_HZ,
               hop: int = render.HOP,
               n_mels: int = render.N_MELS) -> tuple[torch.Tensor, torch.Tensor | float]:
    """``free`` and the rate (map) for ``rise_limited`` over frames first_frame..: every starting
    note frees its bands; with ``legato_rate``, a note that continues a slur (``legato_notes``)
    does not, its bands rising at most ``legato_rate`` a frame for ``LEGATO_POST_FRAMES`` instead."""
    legato = legato_notes(performed) if legato_rate is not None else np.zeros(len(performed), bool)
    free = onset_bands(performed["onset_s"][~legato], performed["pitch"][~legato], first_frame, frames,
                       sample_rate_hz, hop, n_mels=n_mels)
    if not legato.any():
        return free, rate
    slurred = onset_bands(performed["onset_s"][legato], performed["pitch"][legato], first_frame, frames,
                          sample_rate_hz, hop, n_mels=n_mels, post=LEGATO_POST_FRAMES) & ~free
    return free, torch.where(slurred, torch.full(free.shape, float(legato_rate)),
                             torch.full(free.shape, float(rate)))
