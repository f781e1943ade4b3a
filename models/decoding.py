"""Turning per-note part probabilities into labels, with the constraint that a monophonic part
sounds one note at a time, and optionally that parts do not cross within a chord.

- ``notewise``: greedy, note by note; causal in note order (what the paper calls online).
- ``chordwise``: the notes sharing an onset are assigned jointly (Hungarian algorithm); causal in
  time, so usable live once a chord's onset has arrived, and the offline models' decoder.
- ``chordwise-ordered``: as chordwise, but within a chord higher notes take higher parts. Parts
  are ordered top voice first (soprano, alto, ...; violin I, violin II, ...).
"""
from __future__ import annotations

from itertools import combinations

import numpy as np

BUSY_PENALTY = 30.0  # nats; large enough to rule out a sounding part unless every part is sounding


def argmax(notes: np.ndarray, logp: np.ndarray) -> np.ndarray:
    return logp.argmax(-1).astype(np.int64)


def _chords(onsets: np.ndarray) -> list[tuple[int, int]]:
    n = len(onsets)
    if n == 0:
        return []
    starts = np.flatnonzero(np.concatenate([[True], onsets[1:] != onsets[:-1]]))
    bounds = np.concatenate([starts, [n]])
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))


def notewise(notes: np.ndarray, logp: np.ndarray) -> np.ndarray:
    """Greedy, note by note: the best part among those not already sounding at this onset."""
    n, n_parts = logp.shape
    labels = np.zeros(n, np.int64)
    busy_until = np.full(n_parts, -1, np.int64)  # end tick of each part's last note
    onsets, ends = notes["time"], notes["time"] + notes["duration"]
    for i in range(n):
        p = int((logp[i] - BUSY_PENALTY * (busy_until > onsets[i])).argmax())
        labels[i] = p
        busy_until[p] = max(busy_until[p], ends[i])
    return labels


def chordwise(notes: np.ndarray, logp: np.ndarray, ordered: bool = False) -> np.ndarray:
    """Per chord, the assignment of its notes to distinct, non-sounding parts with the highest
    total log-probability (Hungarian algorithm; with ``ordered``, the best order-preserving
    choice of parts). Chords larger than the part count fall back to ``notewise``."""
    from scipy.optimize import linear_sum_assignment

    n, n_parts = logp.shape
    labels = np.zeros(n, np.int64)
    busy_until = np.full(n_parts, -1, np.int64)
    onsets, ends = notes["time"], notes["time"] + notes["duration"]
    for a, b in _chords(onsets):
        k = b - a
        score = logp[a:b] - BUSY_PENALTY * (busy_until > onsets[a])[None, :]
        if k > n_parts:
            labels[a:b] = notewise(notes[a:b], logp[a:b])
        elif ordered:
            # ascending pitch -> descending part index: choose which k parts, in reverse order
            best, best_total = None, -np.inf
            for chosen in combinations(range(n_parts), k):
                cols = np.array(chosen[::-1])
                total = score[np.arange(k), cols].sum()
                if total > best_total:
                    best, best_total = cols, total
            labels[a:b] = best
        else:
            rows, cols = linear_sum_assignment(-score)
            labels[a + rows] = cols
        for i in range(a, b):
            busy_until[labels[i]] = max(busy_until[labels[i]], ends[i])
    return labels


def chordwise_ordered(notes: np.ndarray, logp: np.ndarray) -> np.ndarray:
    return chordwise(notes, logp, ordered=True)


DECODERS = {"argmax": argmax, "notewise": notewise, "chordwise": chordwise,
            "chordwise-ordered": chordwise_ordered}


def default_decoder(causal: bool, chord_context: bool) -> str:
    """A note-causal model (online, no chord context) can only be decoded note by note."""
    return "notewise" if causal and not chord_context else "chordwise"
