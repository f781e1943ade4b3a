"""Phase from the magnitude's own gradients (PGHI) as a vocoder file: log-mel frames in, audio out,
with the GAN vocoder's interface and metadata (task ``perform_vocoder``, generator
``phase-gradient``).

Griffin-Lim guesses a phase and iterates; here the phase is *computed* from the magnitude, after
Průša, Balazs and Søndergaard, "A noniterative method for reconstruction of phase from STFT
magnitude" (IEEE/ACM TASLP 25(5), 2017) and its real-time form (Průša and Holighaus, "Phase vocoder
done right", EUSIPCO 2017). For a Gaussian-like window the phase's derivatives follow from the
log-magnitude ``s``: along time (a bin's frequency) ``a·M/γ · ∂s/∂m + 2π·a·m/M``, along frequency
(the group delay) ``−γ/(a·M) · ∂s/∂n``, with hop ``a``, FFT size ``M`` and ``γ = 0.25645 · win²``
for a Hann window; the shipped file takes each bin's frequency from a parabola through its
log-magnitude and its neighbours' instead of the first formula, which under-corrects on the mel's
smeared lobes. The heap integration of the paper (phase spread from the loudest bin outwards) is
replaced by a form that vectorises: each bin's phase is integrated along time; then, in every
frame, each spectral lobe (split at local minima along frequency) takes its loudest bin's phase and
spreads it over the lobe by the frequency derivative, which keeps the bins of one partial locked
together. Told the score's harmonics (``known_hz``), a lobe also ends where the harmonic a bin plays
changes (``split_known``, ``SPLIT_KNOWN``): two notes' partials that the mel smears into one lobe keep
each its own frequency instead of both following the louder. Bins more than ``TOL_DB`` below the
window's loudest keep a fixed pseudo-random phase.

Measured (benchmarks/RESULTS.md, "Perform: a phase computed, not guessed"): on the synthesis
model's mels of held-out chorales basic-pitch hears far more notes than through Griffin-Lim, at a
fraction of its cost; Griffin-Lim iterations after it (``--iters``) lower the spectral error but
not the notes heard, so the shipped file runs none.

    python -m models.performer.phase_gradient --export models/pretrained/performer-vocoder-pghi.pt
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from models.performer import render
from models.performer.griffin_lim import GriffinLim
from models.performer.vocoder import export_vocoder, vocoder_metadata

NAME = "performer-vocoder-pghi"
DEFAULT_ITERS = 0  # Griffin-Lim steps after the computed phase: they did not add notes heard
PARABOLIC = True  # bin frequencies from parabolas through the log-magnitudes (see phase_gradient)
TOL_DB = 60.0  # bins this far below the window's loudest keep the fixed pseudo-random phase
RELEASE_S = 0.25  # a note's harmonics keep their frequency this long after it ends (its release)
# the bins each side of a harmonic's nearest that it claims (``harmonic_hz``): 2 since the fifth rule
# (RESULTS.md, "harmonics on ±2 bins"; 1 before)
HARMONIC_BINS = 2
# lobes also end where the score's harmonic frequency changes, so one note's harmonic bins never take
# another note's partial's phase (RESULTS.md, "lobes split where the score changes": the piano 0.76 ->
# 0.83 of FluidSynth's transcription F1 on the held-out Kyries)
SPLIT_KNOWN = True
# each run of bins a harmonic claims gets the Hann window's main-lobe shape at the harmonic's exact
# frequency, with the run's energy (``lobe_shaped``): the model's low-contrast mel gives flat runs
# (RESULTS.md, "lobes shaped for the score's harmonics": on 13 held-out Kyries the piano 0.846 -> 0.881)
SHAPE_KNOWN = True
GAMMA_HANN = 0.25645  # gamma / win**2 of a Hann window (Průša et al.)


def phase_gradient(mag: torch.Tensor, hop: int, n_fft: int, gamma: float,
                   start: Optional[torch.Tensor] = None, parabolic: bool = False,
                   known_hz: Optional[torch.Tensor] = None, sample_rate_hz: float = 22050.0,
                   split_known: bool = False) -> torch.Tensor:
    """(F, T) linear magnitudes -> (F, T) phase in radians, in the frequency-invariant convention
    (each frame's phase referred to its window's centre). ``start`` (F,), when given, is the phase
    of the frame before the first one, which the first frame continues from (a stream's windows).
    ``parabolic``: each bin's frequency from the parabola through its log-magnitude and its two
    neighbours' (the peak's offset, at most half a bin) instead of the Gaussian window's slope
    formula, which under-corrects on lobes wider than the window's own (a mel's pseudo-inverse).
    ``known_hz`` (F, T): where finite, the frequency the bin plays (a score's harmonic,
    ``harmonic_hz``), used instead of any estimate; with ``split_known`` a lobe also ends where that
    frequency changes from one bin to the next (so a harmonic's bins follow their own loudest)."""
    n_bins, frames = mag.shape
    s = torch.log(torch.clamp(mag, min=1e-9))
    ds_dm = torch.zeros_like(s)
    ds_dn = torch.zeros_like(s)
    if n_bins > 2:
        ds_dm[1:-1] = 0.5 * (s[2:] - s[:-2])
    if frames > 2:
        ds_dn[:, 1:-1] = 0.5 * (s[:, 2:] - s[:, :-2])
    m = torch.arange(n_bins, dtype=s.dtype, device=s.device)[:, None]
    if parabolic:
        bend = torch.zeros_like(s)
        if n_bins > 2:
            bend[1:-1] = s[:-2] - 2.0 * s[1:-1] + s[2:]
        offset = torch.where(bend < -1e-6, -ds_dm / torch.clamp(bend, max=-1e-6), torch.zeros_like(s))
        along_time = 2.0 * math.pi * hop * (m + torch.clamp(offset, -0.5, 0.5)) / n_fft  # radians per hop
    else:
        along_time = (hop * n_fft / gamma) * ds_dm + 2.0 * math.pi * hop * m / n_fft
    if known_hz is not None:
        along_time = torch.where(torch.isfinite(known_hz), (2.0 * math.pi * hop / sample_rate_hz)
                                 * torch.nan_to_num(known_hz), along_time)
    along_freq = -(gamma / (hop * n_fft)) * ds_dn  # radians per bin
    steps = torch.zeros_like(s)
    if frames > 1:
        steps[:, 1:] = 0.5 * (along_time[:, 1:] + along_time[:, :-1])
    if start is not None:
        steps[:, 0] = start + along_time[:, 0]
    by_time = torch.cumsum(steps, dim=1)
    by_freq = torch.zeros_like(s)
    if n_bins > 1:
        by_freq[1:] = torch.cumsum(0.5 * (along_freq[1:] + along_freq[:-1]), dim=0)
    # each lobe (local minimum to local minimum along frequency) follows its loudest bin
    inf = torch.full((1, frames), float("inf"), dtype=s.dtype, device=s.device)
    below, above = torch.cat([inf, s[:-1]]), torch.cat([s[1:], inf])
    starts = (s <= below) & (s < above)
    if known_hz is not None and split_known:  # a bin whose known frequency differs from the one below it
        differs = torch.zeros_like(starts)
        if n_bins > 1:
            k = torch.nan_to_num(known_hz, nan=-1.0)
            differs[1:] = k[1:] != k[:-1]
        starts = starts | differs
    lobe = torch.cumsum(starts.long(), dim=0)
    n_lobes = int(lobe.max()) + 1
    flat = (lobe + torch.arange(frames, device=s.device)[None, :] * n_lobes).flatten()
    loudest = torch.full((frames * n_lobes,), -float("inf"), dtype=s.dtype, device=s.device)
    loudest = loudest.scatter_reduce(0, flat, s.flatten(), "amax")
    is_peak = s.flatten() == loudest[flat]
    bins = torch.arange(n_bins, device=s.device)[:, None].expand(n_bins, frames).flatten()
    peak_of = torch.zeros(frames * n_lobes, dtype=torch.long, device=s.device)
    peak_of = peak_of.scatter_reduce(0, flat[is_peak], bins[is_peak], "amax", include_self=False)
    peak = peak_of[flat].reshape(n_bins, frames)
    return torch.gather(by_time, 0, peak) + by_freq - torch.gather(by_freq, 0, peak)


def hann_lobe(offset_bins: torch.Tensor) -> torch.Tensor:
    """|DFT of a Hann window| ``offset_bins`` bins from its centre: 1 at the centre, 0 two bins off
    (the main lobe's edge), side lobes beyond at most 31 dB down."""
    return (torch.sinc(offset_bins) + 0.5 * torch.sinc(offset_bins - 1.0)
            + 0.5 * torch.sinc(offset_bins + 1.0)).abs()


def lobe_shaped(mag: torch.Tensor, known_hz: torch.Tensor, n_fft: int, sample_rate_hz: float) -> torch.Tensor:
    """(F, T) magnitudes with each run of bins that claim one harmonic (contiguous bins of one frame
    with the same finite ``known_hz``) given the Hann main lobe centred at that harmonic's exact
    frequency, scaled to keep the run's energy; other bins as they are. A mel's pseudo-inverse
    spreads a partial flat over its bins; played with one phase they overlap-add into pulses."""
    known = torch.isfinite(known_hz)
    n_bins, frames = mag.shape
    hz = torch.nan_to_num(known_hz, nan=-1.0)
    starts = torch.ones_like(known)
    if n_bins > 1:
        starts[1:] = hz[1:] != hz[:-1]
    run = torch.cumsum(starts.long(), dim=0) - 1
    n_runs = int(run.max().item()) + 1
    flat = (run + torch.arange(frames, device=mag.device)[None, :] * n_runs).flatten()
    offset = torch.arange(n_bins, dtype=mag.dtype, device=mag.device)[:, None] - hz * n_fft / sample_rate_hz
    shape = torch.where(known, hann_lobe(offset), torch.zeros_like(mag))
    energy = torch.zeros(frames * n_runs, dtype=mag.dtype, device=mag.device)
    energy = energy.scatter_add(0, flat, (mag * mag).flatten())
    shaped = torch.zeros(frames * n_runs, dtype=mag.dtype, device=mag.device)
    shaped = shaped.scatter_add(0, flat, (shape * shape).flatten())
    scale = torch.sqrt(energy / torch.clamp(shaped, min=1e-12))[flat].reshape(n_bins, frames)
    return torch.where(known, shape * scale, mag)


def harmonic_hz(onset_s: np.ndarray, end_s: np.ndarray, pitch: np.ndarray, first_frame: int, frames: int,
                sample_rate_hz: int = render.SAMPLE_RATE_HZ, hop: int = render.HOP, n_fft: int = render.N_FFT,
                fmax_hz: float = render.FMAX_HZ, release_s: float = RELEASE_S,
                width: int = HARMONIC_BINS) -> torch.Tensor:
    """(n_fft // 2 + 1, frames) float32: for frames first_frame.., the frequency of the notes'
    harmonics (equal temperament, A4 = 440 Hz, up to ``fmax_hz``) in the bin nearest each and
    ``width`` bins each side of it, from each note's onset to ``release_s`` after its end; NaN
    elsewhere. Where two claim a bin, a sounding note beats one in its release, then the lower
    harmonic number wins (the louder, as a rule), then the later note."""
    n_bins = n_fft // 2 + 1
    hz = torch.full((n_bins, frames), float("nan"))
    rank = torch.full((n_bins, frames), 1 << 30, dtype=torch.long)
    per_frame = sample_rate_hz / hop
    on = np.floor(np.asarray(onset_s, np.float64) * per_frame).astype(np.int64) - first_frame
    off = np.ceil(np.asarray(end_s, np.float64) * per_frame).astype(np.int64) + 1 - first_frame
    tail = np.ceil((np.asarray(end_s, np.float64) + release_s) * per_frame).astype(np.int64) + 1 - first_frame
    released = 1 << 20  # added to a harmonic's rank in its note's release
    seen = (tail > 0) & (on < frames)  # only the notes these frames hear
    for a, e, b, p in zip(on[seen], off[seen], tail[seen], np.asarray(pitch, np.float64)[seen]):
        f0 = 440.0 * 2.0 ** ((p - 69.0) / 12.0)
        k = torch.arange(1, max(1, int(fmax_hz // f0)) + 1)
        partials = k.double() * f0
        centre = torch.round(partials * n_fft / sample_rate_hz).long()
        bins = torch.cat([centre + d for d in range(-width, width + 1)]).clamp(0, n_bins - 1)
        ks, freqs = k.repeat(2 * width + 1), partials.float().repeat(2 * width + 1)
        for lo, hi, extra in ((a, e, 0), (e, b, released)):
            lo, hi = max(int(lo), 0), min(int(hi), frames)
            if hi <= lo:
                continue
            mine = (ks + extra)[:, None]
            wins = mine <= rank[bins, lo:hi]
            rank[bins, lo:hi] = torch.where(wins, mine, rank[bins, lo:hi])
            hz[bins, lo:hi] = torch.where(wins, freqs[:, None], hz[bins, lo:hi])
    return hz


class PhaseGradient(GriffinLim):
    """(B, n_mels, T) natural-log mel -> (B, (T - 1) * hop) float32 audio: the mel filters'
    pseudo-inverse for magnitudes, ``phase_gradient`` for phases (``parabolic`` bin frequencies by
    default), then ``iters`` fast Griffin-Lim steps (none by default)."""

    def __init__(self, iters: int = DEFAULT_ITERS, momentum: float = 0.99, tol_db: float = TOL_DB,
                 parabolic: bool = PARABOLIC, split_known: bool = SPLIT_KNOWN,
                 shape_known: bool = SHAPE_KNOWN) -> None:
        if not 0 <= iters <= 1000:
            raise ValueError(f"iters must be 0..1000, got {iters}")
        super().__init__(max(iters, 1), momentum)
        self.iters, self.tol_db, self.parabolic = int(iters), float(tol_db), bool(parabolic)
        self.split_known = bool(split_known)
        self.shape_known = bool(shape_known)
        self.gamma = GAMMA_HANN * float(render.WIN) ** 2
        self.register_buffer("centre", 1.0 - 2.0 * (torch.arange(render.N_FFT // 2 + 1) % 2).float())

    def phasors(self, mag: torch.Tensor, first: int = 0, start: Optional[torch.Tensor] = None,
                known_hz: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(F, T) magnitudes of frames first.. -> (F, T) unit phasors in torch.stft's convention
        (phase referred to each frame's first sample: the window's centre is n_fft / 2 later)."""
        phase = phase_gradient(mag, self.hop, self.n_fft, self.gamma, start, self.parabolic, known_hz,
                               float(render.SAMPLE_RATE_HZ), self.split_known)
        phasors = torch.polar(torch.ones_like(phase), phase) * self.centre[:, None]
        s = torch.log(torch.clamp(mag, min=1e-9))
        quiet = s < s.max() - self.tol_db / 20.0 * math.log(10.0)
        return torch.where(quiet, self.initial_phase(mag.shape[1], first), phasors)

    def forward(self, mel: torch.Tensor, known_hz: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``known_hz`` (B, F, T), optional: the frequency each bin plays where finite (a score's
        harmonics, ``harmonic_hz``); elsewhere the magnitude's estimate."""
        mag = self.magnitudes(mel)
        if known_hz is not None and self.shape_known:
            mag = torch.stack([lobe_shaped(mag[b], known_hz[b], self.n_fft, float(render.SAMPLE_RATE_HZ))
                               for b in range(mag.shape[0])])
        angles = torch.stack([self.phasors(mag[b], 0, None, None if known_hz is None else known_hz[b])
                              for b in range(mag.shape[0])])
        if self.iters > 0:
            angles = self.refine(mag, angles)
        return self._istft(mag * angles, (mel.shape[-1] - 1) * self.hop)


class CarriedGradient:
    """``PhaseGradient`` for a stream of overlapping windows on one frame grid (a live session's
    blocks): frames the last window covered keep the phase it gave them; the frames after continue
    from its last frame by the same integration (the real-time form of the method). A window that
    shares no frame with the last (after a silence) starts afresh.

        carried = CarriedGradient(PhaseGradient())
        audio = carried(mel, first_frame)   # mel (n_mels, T) of frames first_frame.. on the grid
    """

    def __init__(self, model: PhaseGradient) -> None:
        self.model = model
        self.first, self.phasors = 0, None  # the last window's first frame and (F, T) phasors

    @torch.no_grad()
    def __call__(self, mel: torch.Tensor, first_frame: int,
                 known_hz: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(n_mels, T) log-mel of frames first_frame .. first_frame + T - 1 -> ((T - 1) * hop,) audio;
        ``known_hz`` (F, T), optional: the frequencies the notes play there (``harmonic_hz``)."""
        frames = mel.shape[-1]
        mag = self.model.magnitudes(mel[None])[0]
        if known_hz is not None and self.model.shape_known:
            mag = lobe_shaped(mag, known_hz, self.model.n_fft, float(render.SAMPLE_RATE_HZ))
        phasors = None
        if self.phasors is not None:
            known_end = self.first + self.phasors.shape[1]
            lo, hi = max(first_frame, self.first), min(first_frame + frames, known_end)
            if hi > lo and lo == first_frame:
                kept = self.phasors[:, lo - self.first:hi - self.first]
                if hi < first_frame + frames:
                    # the phase of the last kept frame, back in the centred convention the integration uses
                    start = torch.angle(kept[:, -1] * self.model.centre)
                    later = None if known_hz is None else known_hz[:, hi - first_frame:]
                    new = self.model.phasors(mag[:, hi - first_frame:], hi, start, later)
                    phasors = torch.cat([kept, new], dim=1)
                else:
                    phasors = kept
        if phasors is None:
            phasors = self.model.phasors(mag, first_frame, None, known_hz)
        if self.model.iters > 0:
            phasors = self.model.refine(mag[None], phasors[None])[0]
        self.first, self.phasors = first_frame, phasors
        return self.model._istft((mag * phasors)[None], (frames - 1) * self.model.hop)[0]


def metadata_for(model: PhaseGradient) -> dict:
    settings = {"generator": "phase-gradient", "iters": model.iters, "momentum": model.momentum,
                "tol_db": model.tol_db, "gamma": model.gamma, "parabolic": model.parabolic,
                "split_known": model.split_known, "shape_known": model.shape_known,
                "known_hz": "forward(mel, known_hz): optional (B, n_fft // 2 + 1, T) float32 Hz each bin "
                            "plays, NaN where unknown (a score's harmonics: phase_gradient.harmonic_hz)"}
    return vocoder_metadata(NAME, 0, settings)


def export(model: PhaseGradient, path: str | Path) -> Path:
    """TorchScript with metadata, reloaded and checked against eager (``vocoder.export_vocoder``)."""
    return export_vocoder(model, path, metadata_for(model), frames=(2, 40, 300))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iters", type=int, default=DEFAULT_ITERS,
                   help="Griffin-Lim steps after the computed phase (default %(default)s)")
    p.add_argument("--slope", dest="parabolic", action="store_false",
                   help="each bin's frequency from the Gaussian window's slope formula (the paper's), not "
                        "from a parabola through the log-magnitudes (see phase_gradient)")
    p.add_argument("--no-split-known", dest="split_known", action="store_false",
                   help="lobes end only at the magnitude's minima, not also where the score's harmonic "
                        "frequency changes (the export before 2026-12-07's rule D)")
    p.add_argument("--no-shape-known", dest="shape_known", action="store_false",
                   help="keep the mel's own magnitudes in each harmonic's bins (the export before rule F; "
                        "see lobe_shaped)")
    p.add_argument("--export", required=True, help="the .pt file to write")
    args = p.parse_args(argv)
    print(export(PhaseGradient(args.iters, parabolic=args.parabolic, split_known=args.split_known,
                               shape_known=args.shape_known), args.export))


if __name__ == "__main__":
    main()
