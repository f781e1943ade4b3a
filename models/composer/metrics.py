"""Evaluation metrics of composed music, computed by the project on note arrays.

The MusPy metrics (Dong et al., ISMIR 2020) follow the ``muspy`` package (0.5) definition by
definition, quirks included, so the numbers agree with it on the same notes (tests check to 1e-9):
a note ending on a beat line marks the next beat as sounding (``empty_beat_rate``), the measure
grid runs one measure past the last note end (``groove_consistency``), drums count for onsets and
empty beats but not for pitch metrics. Beside them: the chord-tone ratio (share of notes whose
pitch class is in the sounding chord) and note-level precision/recall/F1 for infilling (a note
matches a reference note of the same onset and pitch, each used once).

Every metric takes a ``MultiPiece`` (drum tracks known from its instruments) or a bare
``NOTE_DTYPE`` array (all pitched, ``resolution`` ticks per quarter).
"""
from __future__ import annotations

import math
from collections import Counter

import numpy as np

from bridge.chords import chord_tone_ratio as _chord_tone_ratio
from models.data import RESOLUTION
from models.data.multitrack import MultiPiece

MUSPY_METRICS = ("pitch_class_entropy", "scale_consistency", "groove_consistency", "polyphony",
                 "empty_beat_rate", "pitch_range")

_MAJOR = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1], bool)
_MINOR = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0], bool)
_SCALES = np.array([np.roll(s, r) for s in (_MAJOR, _MINOR) for r in range(12)])  # (24, 12)


def _split(x: MultiPiece | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(all notes, pitched notes) of a piece or note array."""
    if isinstance(x, MultiPiece):
        drums = [i for i, name in enumerate(x.instruments) if name == "drums"]
        return x.notes, x.notes[~np.isin(x.track, drums)] if drums else x.notes
    return x, x


def _end(notes: np.ndarray) -> int:
    return int((notes["time"] + notes["duration"]).max()) if len(notes) else 0


def pitch_class_entropy(x: MultiPiece | np.ndarray) -> float:
    """Entropy (bits) of the pitch-class histogram of the pitched notes; NaN without notes."""
    _, pitched = _split(x)
    if not len(pitched):
        return math.nan
    p = np.bincount(pitched["pitch"] % 12, minlength=12) / len(pitched)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def scale_consistency(x: MultiPiece | np.ndarray) -> float:
    """The largest share of pitched notes inside one major or minor scale; NaN without notes."""
    _, pitched = _split(x)
    if not len(pitched):
        return math.nan
    counts = np.bincount(pitched["pitch"] % 12, minlength=12)
    return float((_SCALES @ counts).max() / len(pitched))


def measure_ticks(x: MultiPiece | np.ndarray, resolution: int = RESOLUTION) -> int:
    """Bar length in ticks: the piece's first meter; 4/4 for a bare note array."""
    if isinstance(x, MultiPiece):
        m = x.meters[0]
        return int(m["numerator"]) * 4 * x.resolution // int(m["denominator"])
    return 4 * resolution


def groove_consistency(x: MultiPiece | np.ndarray, measure_resolution: int | None = None) -> float:
    """1 - mean Hamming distance between the onset patterns of consecutive measures (all notes,
    drums too; constant meter assumed); NaN for fewer than two measures."""
    notes, _ = _split(x)
    mr = int(measure_resolution or measure_ticks(x))
    if mr < 1:
        raise ValueError(f"measure_resolution must be a positive number of ticks, got {mr}")
    n_measures = _end(notes) // mr + 1
    if n_measures < 2:
        return math.nan
    patterns = np.zeros((n_measures, mr), bool)
    patterns[notes["time"] // mr, notes["time"] % mr] = True
    return float(1 - np.count_nonzero(patterns[:-1] != patterns[1:]) / (mr * (n_measures - 1)))


def _pianoroll(pitched: np.ndarray, length: int) -> np.ndarray:
    """(length, 128) bool: which pitches sound at each tick."""
    roll = np.zeros((length + 1, 128), np.int32)
    np.add.at(roll, (pitched["time"], pitched["pitch"]), 1)
    np.add.at(roll, (pitched["time"] + pitched["duration"], pitched["pitch"]), -1)
    return np.cumsum(roll, axis=0)[:length] > 0


def polyphony(x: MultiPiece | np.ndarray) -> float:
    """Mean number of distinct pitches sounding at the ticks where any sounds; NaN without notes."""
    notes, pitched = _split(x)
    roll = _pianoroll(pitched, _end(notes))
    active = np.count_nonzero(roll.any(1))
    return float(roll.sum() / active) if active else math.nan


def empty_beat_rate(x: MultiPiece | np.ndarray, resolution: int | None = None) -> float:
    """Share of beats (quarter notes) where no note sounds, drums included; NaN for no length."""
    notes, _ = _split(x)
    res = int(resolution or (x.resolution if isinstance(x, MultiPiece) else RESOLUTION))
    length = _end(notes)
    if length < 1:
        return math.nan
    n_beats = length // res + 1
    cover = np.zeros(n_beats + 1, np.int64)
    np.add.at(cover, notes["time"] // res, 1)
    np.add.at(cover, (notes["time"] + notes["duration"]) // res + 1, -1)
    return float(1 - np.count_nonzero(np.cumsum(cover)[:n_beats]) / n_beats)


def pitch_range(x: MultiPiece | np.ndarray) -> int:
    """Highest minus lowest pitched MIDI pitch; 0 without notes."""
    _, pitched = _split(x)
    if not len(pitched):
        return 0
    return int(pitched["pitch"].max()) - int(pitched["pitch"].min())


def chord_tone_ratio(x: MultiPiece | np.ndarray, chords: np.ndarray | None = None) -> float:
    """Share of pitched notes whose pitch class is in the chord sounding at their onset: the
    piece's own chords, or ``chords`` (``CHORD_DTYPE``) given."""
    _, pitched = _split(x)
    if chords is None:
        if not isinstance(x, MultiPiece):
            raise ValueError("chord_tone_ratio of a bare note array needs chords (a CHORD_DTYPE array)")
        chords = x.chords
    return _chord_tone_ratio(pitched, chords)


def note_f1(reference: np.ndarray, generated: np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 of generated notes against reference notes: a generated note is
    right where a reference note has its onset and pitch (each reference note matched once).
    Empty against empty is a perfect 1.0."""
    ref = Counter(zip(reference["time"].tolist(), reference["pitch"].tolist()))
    gen = Counter(zip(generated["time"].tolist(), generated["pitch"].tolist()))
    hits = sum((ref & gen).values())
    if not ref and not gen:
        return {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    precision = hits / len(generated) if len(generated) else 0.0
    recall = hits / len(reference) if len(reference) else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def muspy_metrics(x: MultiPiece | np.ndarray) -> dict[str, float]:
    """The six MusPy metrics of one piece."""
    return {
        "pitch_class_entropy": pitch_class_entropy(x),
        "scale_consistency": scale_consistency(x),
        "groove_consistency": groove_consistency(x),
        "polyphony": polyphony(x),
        "empty_beat_rate": empty_beat_rate(x),
        "pitch_range": float(pitch_range(x)),
    }


def evaluate(pieces: list[MultiPiece], chord_tones: bool = True) -> dict[str, np.ndarray]:
    """Each metric over a set of pieces: name -> one value per piece (NaN where undefined)."""
    if not pieces:
        raise ValueError("evaluate needs at least one piece; got an empty list")
    rows = [muspy_metrics(p) | ({"chord_tone_ratio": chord_tone_ratio(p)} if chord_tones else {})
            for p in pieces]
    return {k: np.array([r[k] for r in rows], float) for k in rows[0]}


def reference_band(pieces: list[MultiPiece], low: float = 5, high: float = 95) -> dict[str, dict[str, float]]:
    """The ``low``-``high`` percentile band and mean of each metric over real pieces: generated
    music is judged by whether its mean falls inside."""
    if not 0 <= low < high <= 100:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got low={low}, high={high}")
    out = {}
    for name, values in evaluate(pieces).items():
        v = values[~np.isnan(values)]
        if not len(v):
            out[name] = {"low": math.nan, "high": math.nan, "mean": math.nan, "n": 0}
            continue
        out[name] = {"low": float(np.percentile(v, low)), "high": float(np.percentile(v, high)),
                     "mean": float(v.mean()), "n": len(v)}
    return out


def inside_band(values: dict[str, float], band: dict[str, dict[str, float]]) -> dict[str, bool]:
    """Whether each metric value (e.g. generated music's means) lies inside a reference band."""
    return {k: band[k]["low"] <= v <= band[k]["high"] for k, v in values.items() if k in band}
