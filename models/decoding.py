"""Turning per-note part probabilities into labels, with the constraint that a monophonic part
sounds one note at a time.

``online`` is causal (decides each note from what came before it); ``offline`` solves an
assignment per chord (notes sharing an onset) with the Hungarian algorithm.
"""
from __future__ import annotations

import numpy as np

BUSY_PENALTY = 30.0  # nats; large enough to rule out a sounding part unless every part is sounding


def argmax(notes: np.ndarray, logp: np.ndarray) -> np.ndarray:
    return logp.argmax(-1).astype(np.int64)


def online(notes: np.ndarray, logp: np.ndarray) -> np.ndarray:
    """Greedy, note by note: the best part among those not already sounding at this onset."""
    n, n_parts = logp.shape
    labels = np.zeros(n, np.int64)
    busy_until = np.full(n_parts, -1, np.int64)  # end tick of each part's last note
    onsets, ends = notes["time"], notes["time"] + notes["duration"]
    for i in range(n):
        scores = logp[i] - BUSY_PENALTY * (busy_until > onsets[i])
        p = int(scores.argmax())
        labels[i] = p
        busy_until[p] = max(busy_until[p], ends[i])
    return labels


def offline(notes: np.ndarray, logp: np.ndarray) -> np.ndarray:
    """Per onset group, the assignment of notes to distinct, non-sounding parts with the highest
    total log-probability. Groups larger than the part count fall back to ``online``."""
    from scipy.optimize import linear_sum_assignment

    n, n_parts = logp.shape
    labels = np.zeros(n, np.int64)
    busy_until = np.full(n_parts, -1, np.int64)
    onsets, ends = notes["time"], notes["time"] + notes["duration"]
    starts = np.flatnonzero(np.concatenate([[True], np.diff(onsets) != 0])) if n else np.zeros(0, int)
    bounds = np.concatenate([starts, [n]])
    for a, b in zip(bounds[:-1], bounds[1:]):
        cost = -(logp[a:b] - BUSY_PENALTY * (busy_until > onsets[a])[None, :])
        if b - a <= n_parts:
            rows, cols = linear_sum_assignment(cost)
            labels[a + rows] = cols
        else:
            labels[a:b] = online(notes[a:b], logp[a:b])
        for i in range(a, b):
            busy_until[labels[i]] = max(busy_until[labels[i]], ends[i])
    return labels


DECODERS = {"argmax": argmax, "online": online, "offline": offline}
