"""Score types shared by every layer.

Notes live in numpy structured arrays (``NOTE_DTYPE``) so that a whole piece moves between file
readers, models and the wire without per-note Python objects. Times and durations are in ticks at
``Score.resolution`` ticks per quarter note.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# (time ticks, MIDI pitch, duration ticks, velocity 1..127)
NOTE_DTYPE = np.dtype(
    [("time", "<i8"), ("pitch", "u1"), ("duration", "<i8"), ("velocity", "u1")]
)
TEMPO_DTYPE = np.dtype([("time", "<i8"), ("qpm", "<f8")])
METER_DTYPE = np.dtype([("time", "<i8"), ("numerator", "<i4"), ("denominator", "<i4")])
# ``fifths`` is the number of sharps (positive) or flats (negative); ``minor`` is 0 or 1.
KEY_DTYPE = np.dtype([("time", "<i8"), ("fifths", "<i4"), ("minor", "u1")])
# a notated bar: where it starts, how long it is (a pickup or a bar split at a repeat is shorter
# than its meter's), its printed number (a pickup is bar 0; a split bar's halves share a number)
BAR_DTYPE = np.dtype([("time", "<i8"), ("duration", "<i8"), ("number", "<i4")])

DEFAULT_RESOLUTION = 24
DEFAULT_QPM = 120.0

# General MIDI: 16 channels, and channel 10 (9 counted from 0) is percussion, never given to a
# pitched part. Files, the synthesiser and the performer all follow it.
MIDI_CHANNELS = 16
DRUM_CHANNEL = 9
PITCHED_CHANNELS = tuple(c for c in range(MIDI_CHANNELS) if c != DRUM_CHANNEL)


class ScoreReadError(ValueError):
    """A file that exists but cannot be turned into a score; the message says why."""


def check_score_file(path: str | os.PathLike) -> None:
    """Raise ``FileNotFoundError`` or ``ScoreReadError`` with the fix when ``path`` is missing, a
    folder or empty: ``read_score`` and the mido reader check before they parse."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no file at {path}; check the path (relative paths start from {Path.cwd()})")
    if not path.is_file():
        raise ScoreReadError(f"{path} is a directory, not a score file; pass one file inside it")
    if path.stat().st_size == 0:
        raise ScoreReadError(f"{path.name} is empty (0 bytes); it was probably not written completely")


def empty_notes(n: int = 0) -> np.ndarray:
    return np.zeros(n, dtype=NOTE_DTYPE)


def make_notes(time, pitch, duration, velocity=64) -> np.ndarray:
    """Build a note array from columns; scalars broadcast."""
    time = np.asarray(time, dtype=np.int64).reshape(-1)
    notes = empty_notes(len(time))
    notes["time"] = time
    notes["pitch"] = pitch
    notes["duration"] = duration
    notes["velocity"] = velocity
    return notes


def sort_order(notes: np.ndarray) -> np.ndarray:
    """Indices that sort notes by (onset, pitch, duration): the Arranger paper's note order."""
    return np.lexsort((notes["duration"], notes["pitch"], notes["time"]))


@dataclass
class Track:
    """One part. ``program`` is the General MIDI program 0..127; ``role`` is free text such as
    "input" or a part name of an ensemble."""

    name: str = ""
    program: int = 0
    is_drum: bool = False
    notes: np.ndarray = field(default_factory=empty_notes)
    role: str = ""
    clef: str = ""  # notation: treble, treble_8vb, alto, tenor, bass, bass_8vb, percussion; "" to choose
    transposition: int = 0  # notation: semitones from written to sounding (clarinet in B-flat: -2)
    divisi: np.ndarray | None = None  # (N,) bool: notes beyond what the part plays at once, marked "div."

    def __post_init__(self) -> None:
        if not 0 <= int(self.program) <= 127:
            raise ValueError(f"Track.program must be a GM program 0..127, got {self.program}")
        if self.notes.dtype != NOTE_DTYPE:
            raise ValueError(f"Track.notes must have dtype NOTE_DTYPE, got {self.notes.dtype}")
        if self.divisi is not None and len(self.divisi) != len(self.notes):
            raise ValueError(f"Track.divisi must have one flag per note, got {len(self.divisi)} for "
                             f"{len(self.notes)} notes")


@dataclass
class Score:
    resolution: int = DEFAULT_RESOLUTION  # ticks per quarter note
    tracks: list[Track] = field(default_factory=list)
    tempos: np.ndarray = field(default_factory=lambda: np.zeros(0, TEMPO_DTYPE))
    meters: np.ndarray = field(default_factory=lambda: np.zeros(0, METER_DTYPE))
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, KEY_DTYPE))
    title: str = ""
    composer: str = ""
    remarks: list[str] = field(default_factory=list)  # what a reader changed or chose, for the user
    # the input's bars, as notation files give them; empty (MIDI): bars follow the meters from 0
    bars: np.ndarray = field(default_factory=lambda: np.zeros(0, BAR_DTYPE))

    def __post_init__(self) -> None:
        if int(self.resolution) <= 0:
            raise ValueError(f"Score.resolution must be a positive tick count, got {self.resolution}")

    @property
    def n_notes(self) -> int:
        return int(sum(len(t.notes) for t in self.tracks))

    def pitched_tracks(self) -> list[Track]:
        return [t for t in self.tracks if not t.is_drum]

    def end_tick(self) -> int:
        ends = [int((t.notes["time"] + t.notes["duration"]).max()) for t in self.tracks if len(t.notes)]
        return max(ends, default=0)

    def merged(self, include_drums: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """All notes in (onset, pitch, duration) order and the index of the track each came from."""
        tracks = [(i, t) for i, t in enumerate(self.tracks) if include_drums or not t.is_drum]
        if not tracks:
            return empty_notes(), np.zeros(0, np.int64)
        notes = np.concatenate([t.notes for _, t in tracks])
        labels = np.concatenate([np.full(len(t.notes), i, np.int64) for i, t in tracks])
        order = sort_order(notes)
        return notes[order], labels[order]

    def qpm_at(self, tick: int = 0) -> float:
        if len(self.tempos) == 0:
            return DEFAULT_QPM
        idx = np.searchsorted(self.tempos["time"], tick, side="right") - 1
        return float(self.tempos["qpm"][max(idx, 0)])

    def seconds(self) -> float:
        """Duration in seconds, following the tempo map."""
        return float(tick_to_seconds(self, self.end_tick()))

    def with_resolution(self, resolution: int) -> Score:
        """A copy at another tick resolution; onsets and ends are rounded, a note with a length keeps
        one of at least a tick, a note of none (a grace note) stays at 0."""
        factor = resolution / self.resolution

        def scale(a: np.ndarray) -> np.ndarray:
            a = a.copy()
            a["time"] = np.round(a["time"] * factor).astype(np.int64)
            return a

        bars = scale(self.bars)
        bars["duration"] = np.round((self.bars["time"] + self.bars["duration"]) * factor) - bars["time"]

        tracks = []
        for t in self.tracks:
            n = scale(t.notes)
            end = np.round((t.notes["time"] + t.notes["duration"]) * factor).astype(np.int64)
            n["duration"] = np.where(t.notes["duration"] == 0, 0, np.maximum(end - n["time"], 1))
            tracks.append(Track(t.name, t.program, t.is_drum, n, t.role, t.clef, t.transposition, t.divisi))
        return Score(resolution, tracks, scale(self.tempos), scale(self.meters), scale(self.keys), self.title,
                     self.composer, list(self.remarks), bars)


def tick_to_seconds(score: Score, ticks) -> np.ndarray:
    """Convert tick positions to seconds with the score's tempo map (piecewise constant)."""
    ticks = np.asarray(ticks, dtype=np.float64)
    tempos = score.tempos if len(score.tempos) else np.array([(0, DEFAULT_QPM)], TEMPO_DTYPE)
    if tempos["time"][0] != 0:
        tempos = np.concatenate([np.array([(0, tempos["qpm"][0])], TEMPO_DTYPE), tempos])
    sec_per_tick = 60.0 / (tempos["qpm"] * score.resolution)
    starts = tempos["time"].astype(np.float64)
    seg_seconds = np.concatenate([[0.0], np.cumsum(np.diff(starts) * sec_per_tick[:-1])])
    idx = np.clip(np.searchsorted(starts, ticks, side="right") - 1, 0, len(starts) - 1)
    return seg_seconds[idx] + (ticks - starts[idx]) * sec_per_tick[idx]
