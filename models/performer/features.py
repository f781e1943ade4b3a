"""Alignment-model inputs and targets from a table of notes (``expression.PERFORMED_DTYPE`` or
``MARKED_DTYPE`` for inference).

A sequence is anchored at its first note: onsets are measured from it, in score beats and in
seconds at the score's tempo, and the onset target is the performed onset's deviation from that
score timing, also measured from the first note. A crop of a piece and a whole piece are then the
same kind of input, and the engine can align any region it is given.

    ints   (T, 3) int64    pitch 0..127, dynamic level 0..7, hairpin + 1 (0..2)
    floats (T, N_FLOATS)   see FLOAT_FEATURES
    target (T, 2) float32  onset deviation (s), log(performed duration / score duration)
"""
from __future__ import annotations

import numpy as np

from models.performer.expression import DEFAULT_QPM, FERMATA, MARK_BITS

ONSET_PERIODS_BEATS = (1, 2, 4, 8, 16, 32, 64)
FLOAT_FEATURES = (
    ("onset_beats/16", "beats from the first note"),
    ("onset_s/10", "seconds from the first note at the score's tempo"),
    ("log2 duration_beats", ""),
    ("log duration_s", "at the score's tempo"),
    ("velocity/127", "the score's velocity"),
    ("log(qpm/90)", "the score's tempo"),
    ("fermatas_before/8", "fermata chords earlier in the sequence"),
    ("top_part", "1 for the first part (the melody)"),
    *((f"mark/{i}", "marking flag bit") for i in range(MARK_BITS)),
    *((f"{f}/{p}", "phase of the onset") for p in ONSET_PERIODS_BEATS for f in ("sin", "cos")),
)
N_INTS = 3
ONSET_S_COLUMN, ONSET_S_SCALE = 1, 10.0  # the model reads score seconds back from this column
N_FLOATS = len(FLOAT_FEATURES)
TARGETS = ("onset_deviation_s", "log_duration_ratio")
MIN_SECONDS = 1e-3


def features(notes: np.ndarray, qpm: float = DEFAULT_QPM) -> tuple[np.ndarray, np.ndarray]:
    """(ints (T, 3) int64, floats (T, N_FLOATS) float32) of notes sorted by score onset."""
    onset = notes["onset_beats"] - (notes["onset_beats"][0] if len(notes) else 0.0)
    seconds = onset * 60.0 / qpm
    duration_s = notes["duration_beats"] * 60.0 / qpm
    fermata_onsets = np.unique(notes["onset_beats"][(notes["marks"] & FERMATA) > 0])
    before = np.searchsorted(fermata_onsets, notes["onset_beats"], side="left")
    ints = np.stack([notes["pitch"].astype(np.int64), notes["dynamic"].astype(np.int64),
                     notes["hairpin"].astype(np.int64) + 1], axis=1)
    cols = [onset / 16, seconds / ONSET_S_SCALE, np.log2(np.maximum(notes["duration_beats"], 1 / 64)),
            np.log(np.maximum(duration_s, MIN_SECONDS)), notes["velocity"] / 127.0,
            np.full(len(notes), np.log(qpm / DEFAULT_QPM)), before / 8.0,
            (notes["part"] == (notes["part"].min() if len(notes) else 0)).astype(np.float64)]
    cols += [((notes["marks"] >> i) & 1).astype(np.float64) for i in range(MARK_BITS)]
    for period in ONSET_PERIODS_BEATS:
        phase = 2 * np.pi * notes["onset_beats"] / period
        cols += [np.sin(phase), np.cos(phase)]
    return ints, np.stack(cols, axis=1).astype(np.float32)


def targets(notes: np.ndarray) -> np.ndarray:
    """(T, 2) float32: onset deviation from the score timing (s), both measured from the first
    note; log of performed over score duration."""
    score = notes["score_onset_s"] - notes["score_onset_s"][0]
    performed = notes["onset_s"] - notes["onset_s"][0]
    ratio = np.maximum(notes["duration_s"], MIN_SECONDS) / np.maximum(notes["score_duration_s"], MIN_SECONDS)
    return np.stack([performed - score, np.log(ratio)], axis=1).astype(np.float32)


def onsets_from(notes: np.ndarray, qpm: float, deviation_s: np.ndarray) -> np.ndarray:
    """Performed onsets (s from the first note) from predicted deviations."""
    return (notes["onset_beats"] - notes["onset_beats"][0]) * 60.0 / qpm + deviation_s
