"""Piano-roll pictures of a ``Score``, for eyeballing model output and debugging file readers.

Drawn on a bare ``Figure`` with the Agg canvas rather than through pyplot, so no global backend is
switched and plotting is safe from worker threads. matplotlib is imported lazily: it is slow to load.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from bridge.score import Score

BLACK_KEYS = {1, 3, 6, 8, 10}
MAX_WIDTH_IN = 24.0  # 2400 px at the default dpi; longer pieces get squeezed, not wider
MIN_WIDTH_IN = 8.0
WIDTH_PER_BEAT_IN = 0.18


def _bar_starts(score: Score, end_tick: int) -> list[int]:
    """Tick of every barline up to ``end_tick``, following the meter map (4/4 when it is empty)."""
    meters = [(int(m["time"]), int(m["numerator"]), int(m["denominator"])) for m in score.meters]
    if not meters or meters[0][0] > 0:
        meters.insert(0, (0, 4, 4))
    bars = []
    for i, (start, numerator, denominator) in enumerate(meters):
        stop = meters[i + 1][0] if i + 1 < len(meters) else end_tick
        bar_ticks = max(1, round(numerator * 4 / denominator * score.resolution))
        bars.extend(range(start, stop, bar_ticks))
    return bars


def plot_piano_roll(score: Score, path: str | os.PathLike, title: str | None = None, dpi: int = 100) -> Path:
    """Save a piano roll as PNG: one bar per note (x in beats, y in MIDI pitch), one colour per track,
    opacity following velocity, barlines from the meter map. Returns the path written."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import to_rgba
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    path = Path(path)
    end_tick = max(score.end_tick(), score.resolution)
    beats = end_tick / score.resolution
    pitches = np.concatenate([t.notes["pitch"] for t in score.tracks] + [np.zeros(0, np.uint8)]).astype(int)
    low, high = (int(pitches.min()) - 2, int(pitches.max()) + 2) if len(pitches) else (58, 72)
    width_in = float(np.clip(4 + beats * WIDTH_PER_BEAT_IN, MIN_WIDTH_IN, MAX_WIDTH_IN))
    height_in = float(np.clip(2.5 + (high - low) * 0.09, 4.0, 10.0))

    fig = Figure(figsize=(width_in, height_in), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for p in range(low, high + 1):
        if p % 12 in BLACK_KEYS:
            ax.axhspan(p - 0.5, p + 0.5, color="0.94", zorder=0, linewidth=0)
    for bar in _bar_starts(score, end_tick):
        ax.axvline(bar / score.resolution, color="0.75", linewidth=0.6, zorder=1)

    cmap = colormaps["tab10" if len(score.tracks) <= 10 else "tab20"]
    colors = [cmap(i % cmap.N) for i in range(len(score.tracks))]
    handles = []
    for track, color in zip(score.tracks, colors, strict=True):
        n = track.notes
        if len(n) == 0:
            continue
        x0 = n["time"] / score.resolution
        x1 = (n["time"] + n["duration"]) / score.resolution
        y = n["pitch"].astype(float)
        # (N, 4, 2) rectangles, 0.8 semitones tall so neighbouring pitches stay apart
        verts = np.stack(
            [
                np.stack([x0, y - 0.4], 1),
                np.stack([x1, y - 0.4], 1),
                np.stack([x1, y + 0.4], 1),
                np.stack([x0, y + 0.4], 1),
            ],
            1,
        )
        faces = np.tile(to_rgba(color), (len(n), 1))
        faces[:, 3] = 0.35 + 0.65 * n["velocity"] / 127
        ax.add_collection(
            PolyCollection(verts, facecolors=faces, edgecolors=to_rgba(color, 1.0), linewidths=0.4, zorder=2)
        )
        label = (track.name or "untitled") + (" (drums)" if track.is_drum else "")
        handles.append(Patch(facecolor=color, edgecolor=color, label=f"{label}: {len(n)} notes"))

    ax.set_xlim(0, beats)
    ax.set_ylim(low - 0.5, high + 0.5)
    octaves = [p for p in range(low, high + 1) if p % 12 == 0]
    ax.set_yticks(octaves, [f"C{p // 12 - 1}" for p in octaves])
    ax.set_xlabel("beats (quarter notes)")
    ax.set_ylabel("pitch")
    ax.set_title(title if title is not None else score.title or path.stem)
    if handles:
        ax.legend(
            handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize="small", frameon=False
        )
    else:
        ax.text(0.5, 0.5, "no notes", transform=ax.transAxes, ha="center", va="center", color="0.5")
    fig.savefig(path, format="png")
    return path


def plot_spectrogram(audio: np.ndarray, sample_rate_hz: int, path: str | os.PathLike, title: str = "",
                     dpi: int = 100) -> Path:
    """Save a spectrogram (dB, log frequency) of (channels, samples) audio as PNG, over its waveform."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    mono = np.asarray(audio, np.float64).mean(axis=0)
    seconds = len(mono) / sample_rate_hz
    fig = Figure(figsize=(float(np.clip(4 + seconds * 0.5, 8, 24)), 6), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    wave, spec = fig.subplots(2, 1, sharex=True, height_ratios=(1, 3))
    step = max(1, len(mono) // 4000)
    t = np.arange(0, len(mono), step) / sample_rate_hz
    wave.plot(t, mono[::step], linewidth=0.5, color="0.3")
    wave.set_ylabel("amplitude")
    wave.set_title(title or path.stem)
    if len(mono) >= 2048:
        spec.specgram(mono, NFFT=2048, Fs=sample_rate_hz, noverlap=1536, cmap="magma", vmin=-120, scale="dB")
        spec.set_yscale("symlog", linthresh=200)
        spec.set_ylim(20, sample_rate_hz / 2)
    spec.set_xlabel("seconds")
    spec.set_ylabel("frequency (Hz)")
    fig.savefig(path, format="png")
    return path
