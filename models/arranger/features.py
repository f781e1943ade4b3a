"""Note features for part separation (the Arranger paper's inputs), in numpy.

Shared by training (models/) and inference (engine/): the engine feeds exactly these arrays to the
exported TorchScript model.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.data import RESOLUTION


@dataclass(frozen=True)
class FeatureConfig:
    resolution: int = RESOLUTION  # ticks per quarter the model was trained at
    max_beat: int = 1024  # beat indices at or past this share the last embedding
    max_duration: int = 96  # duration ticks are clipped to 1..max_duration (4 quarters at 24)
    use_duration: bool = True
    use_entry_hints: bool = False
    use_pitch_hints: bool = False
    use_voice_state: bool = False  # online LSTM only: feed back its own past part choices
    use_chord_context: bool = False  # size of the note's chord and its rank in it (same onset)

    def __post_init__(self) -> None:
        for name in ("resolution", "max_beat", "max_duration"):
            if getattr(self, name) <= 0:
                raise ValueError(f"FeatureConfig.{name} must be positive, got {getattr(self, name)}")


INT_FEATURES = ("pitch", "position", "beat", "duration", "chord")
MAX_CHORD = 8  # chord sizes and ranks past this share the last index
CHORD_VOCAB = MAX_CHORD * MAX_CHORD


def chord_context(notes: np.ndarray) -> np.ndarray:
    """(N,) index of (chord size, rank from the bottom) of each note among the notes sharing its
    onset. Causal in time: a live stream knows a chord once its onset has arrived. Notes must be
    sorted by (onset, pitch, duration)."""
    n = len(notes)
    if n == 0:
        return np.zeros(0, np.int64)
    onsets = notes["time"]
    starts = np.flatnonzero(np.concatenate([[True], onsets[1:] != onsets[:-1]]))
    sizes = np.diff(np.concatenate([starts, [n]]))
    group = np.repeat(np.arange(len(starts)), sizes)
    rank = np.arange(n) - starts[group]
    size = sizes[group]
    return (np.minimum(size, MAX_CHORD) - 1) * MAX_CHORD + np.minimum(rank, MAX_CHORD - 1)


def note_features(notes: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """(N, 5) int64 features per note, columns ``INT_FEATURES``: pitch, position in beat, beat,
    duration, chord context."""
    time = notes["time"].astype(np.int64)
    return np.stack([
        notes["pitch"].astype(np.int64),
        time % cfg.resolution,
        np.minimum(time // cfg.resolution, cfg.max_beat - 1),
        np.clip(notes["duration"].astype(np.int64), 1, cfg.max_duration),
        chord_context(notes),
    ], axis=-1)


def entry_hints(notes: np.ndarray, entries: np.ndarray) -> np.ndarray:
    """(N, P) float: 1 where part p has entered (its first onset tick ``entries[p]``) by the note's
    onset. A part that never plays has entry -1 (never entered)."""
    entries = np.asarray(entries, np.int64)
    return ((entries[None, :] >= 0) & (entries[None, :] <= notes["time"][:, None])).astype(np.float32)


def entries_from_labels(notes: np.ndarray, labels: np.ndarray, n_parts: int) -> np.ndarray:
    entries = np.full(n_parts, -1, np.int64)
    for p in range(n_parts):
        t = notes["time"][labels == p]
        if len(t):
            entries[p] = t.min()
    return entries


def pitch_hints_from_labels(notes: np.ndarray, labels: np.ndarray, n_parts: int) -> np.ndarray:
    """(P,) mean pitch of each part scaled to 0..1; parts without notes get 0."""
    hints = np.zeros(n_parts, np.float32)
    for p in range(n_parts):
        pitches = notes["pitch"][labels == p]
        if len(pitches):
            hints[p] = pitches.mean() / 127.0
    return hints


VOICE_FEATURES = 5  # per part: sounding, same onset, has a last note, interval, rest length


class VoiceTracker:
    """Causal per-part context for online models that see their own past decisions.

    For each part: is it still sounding at this onset; has it a note at this very onset; has it
    played yet; the interval from its last pitch to this note (octaves, clipped to ±3); how long
    it has rested (beats, clipped to 0..8, scaled to 0..1). Training computes it from the true
    labels, inference from the model's own choices, through this one class.
    """

    def __init__(self, n_parts: int, resolution: int) -> None:
        self.n_parts, self.resolution = n_parts, resolution
        self.end = np.full(n_parts, -1, np.int64)
        self.onset = np.full(n_parts, -1, np.int64)
        self.pitch = np.full(n_parts, -1.0)

    def features(self, time: int, pitch: int) -> np.ndarray:
        has = self.pitch >= 0
        out = np.zeros((self.n_parts, VOICE_FEATURES), np.float32)
        out[:, 0] = self.end > time
        out[:, 1] = self.onset == time
        out[:, 2] = has
        out[:, 3] = np.where(has, np.clip((pitch - self.pitch) / 12.0, -3, 3), 0)
        out[:, 4] = np.where(has, np.clip((time - self.end) / self.resolution, 0, 8) / 8.0, 0)
        return out.reshape(-1)

    def update(self, time: int, pitch: int, duration: int, label: int) -> None:
        self.end[label] = max(self.end[label], time + duration)
        self.onset[label] = time
        self.pitch[label] = pitch


def voice_states(notes: np.ndarray, labels: np.ndarray, n_parts: int, resolution: int) -> np.ndarray:
    """(N, P * VOICE_FEATURES) context of each note given the true labels of the notes before it."""
    tracker = VoiceTracker(n_parts, resolution)
    out = np.zeros((len(notes), n_parts * VOICE_FEATURES), np.float32)
    t, p, d = notes["time"].tolist(), notes["pitch"].tolist(), notes["duration"].tolist()
    for i in range(len(notes)):
        out[i] = tracker.features(t[i], p[i])
        tracker.update(t[i], p[i], d[i], int(labels[i]))
    return out
