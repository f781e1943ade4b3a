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


def chord_spans(onsets: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) index spans of the notes sharing an onset (onsets sorted)."""
    n = len(onsets)
    if n == 0:
        return []
    starts = np.flatnonzero(np.concatenate([[True], onsets[1:] != onsets[:-1]]))
    bounds = np.concatenate([starts, [n]])
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))


class PartState:
    """When each part's last note ends: the one piece of history the decoders need. Kept across
    calls by live sessions, which decode a chord at a time as the DAW plays."""

    def __init__(self, n_parts: int) -> None:
        self.n_parts = n_parts
        self.busy_until = np.full(n_parts, -1, np.int64)

    def sounding(self, onset: int) -> np.ndarray:
        return self.busy_until > onset

    def note(self, notes: np.ndarray, logp: np.ndarray) -> np.ndarray:
        """Greedy, note by note: the best part among those not sounding at the note's onset."""
        labels = np.zeros(len(notes), np.int64)
        for i in range(len(notes)):
            p = int((logp[i] - BUSY_PENALTY * self.sounding(notes["time"][i])).argmax())
            labels[i] = p
            self.take(p, notes[i])
        return labels

    def chord(self, notes: np.ndarray, logp: np.ndarray, ordered: bool = False) -> np.ndarray:
        """Notes sharing one onset, assigned jointly to distinct non-sounding parts with the highest
        total log-probability (with ``ordered``: the best order-preserving choice)."""
        from scipy.optimize import linear_sum_assignment

        k = len(notes)
        if k > self.n_parts:
            return self.note(notes, logp)
        score = logp - BUSY_PENALTY * self.sounding(notes["time"][0])[None, :]
        if ordered:  # ascending pitch -> descending part index: which k parts, in reverse order
            best, best_total = None, -np.inf
            for chosen in combinations(range(self.n_parts), k):
                cols = np.array(chosen[::-1])
                total = score[np.arange(k), cols].sum()
                if total > best_total:
                    best, best_total = cols, total
            labels = best
        else:
            labels = np.zeros(k, np.int64)
            rows, cols = linear_sum_assignment(-score)
            labels[rows] = cols
        for i in range(k):
            self.take(int(labels[i]), notes[i])
        return labels

    def take(self, part: int, note) -> None:
        self.busy_until[part] = max(self.busy_until[part], int(note["time"] + note["duration"]))


def notewise(notes: np.ndarray, logp: np.ndarray) -> np.ndarray:
    """Causal in note order (the paper's online setting)."""
    return PartState(logp.shape[1]).note(notes, logp)


def chordwise(notes: np.ndarray, logp: np.ndarray, ordered: bool = False) -> np.ndarray:
    """Causal in time: each chord decided from the past and itself."""
    state = PartState(logp.shape[1])
    labels = np.zeros(len(notes), np.int64)
    for a, b in chord_spans(notes["time"]):
        labels[a:b] = state.chord(notes[a:b], logp[a:b], ordered)
    return labels


def chordwise_ordered(notes: np.ndarray, logp: np.ndarray) -> np.ndarray:
    return chordwise(notes, logp, ordered=True)


DECODERS = {"argmax": argmax, "notewise": notewise, "chordwise": chordwise,
            "chordwise-ordered": chordwise_ordered}


def default_decoder(causal: bool, chord_context: bool) -> str:
    """A note-causal model (online, no chord context) can only be decoded note by note."""
    return "notewise" if causal and not chord_context else "chordwise"
