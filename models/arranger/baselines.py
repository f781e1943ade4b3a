"""The Arranger paper's baselines, fitted on training pieces.

- most common: every note gets the training set's most common label;
- zone-based: each part owns a pitch zone; a note goes to the part whose zone holds it (zones are
  split halfway between neighbouring parts' mean training pitches);
- closest pitch: each note goes to the part whose last note is closest in (squared) pitch
  distance (online); ``mono`` assigns the notes of one onset jointly to distinct parts that are not
  sounding. As in the paper's code, this baseline is given each part's first note (its label, and
  that no note before it belongs to the part): without that oracle, one early swap of two voices
  persists to the end of a piece. Parts' last pitches update after each onset's notes.
"""
from __future__ import annotations

from itertools import permutations

import numpy as np


class Baseline:
    name = "baseline"

    def fit(self, pieces) -> Baseline:
        labels = np.concatenate([p.labels for p in pieces])
        pitches = np.concatenate([p.notes["pitch"] for p in pieces]).astype(np.float64)
        self.n_parts = int(labels.max()) + 1
        self.most_common = int(np.bincount(labels).argmax())
        self.mean_pitch = np.array([pitches[labels == k].mean() if (labels == k).any() else 60.0
                                    for k in range(self.n_parts)])
        return self

    def predict(self, notes: np.ndarray, first_notes: np.ndarray | None = None) -> np.ndarray:
        """Labels; ``first_notes[p]`` is the index of part p's first note (-1: never plays)."""
        raise NotImplementedError


class MostCommon(Baseline):
    name = "most common"

    def predict(self, notes, first_notes=None):
        return np.full(len(notes), self.most_common, np.int64)


class ZoneBased(Baseline):
    name = "zone-based"

    def predict(self, notes, first_notes=None):
        dist = np.abs(notes["pitch"][:, None].astype(np.float64) - self.mean_pitch[None, :])
        return dist.argmin(1).astype(np.int64)


def first_notes(labels: np.ndarray, n_parts: int) -> np.ndarray:
    """Index of each part's first note (-1 for a part without notes)."""
    out = np.full(n_parts, -1, np.int64)
    for p in range(n_parts):
        idx = np.flatnonzero(labels == p)
        if len(idx):
            out[p] = idx[0]
    return out


class ClosestPitch(Baseline):
    def __init__(self, mono: bool = False) -> None:
        self.mono = mono
        self.name = "closest pitch (mono)" if mono else "closest pitch"

    def predict(self, notes, first_notes=None):
        n, P = len(notes), self.n_parts
        pitch = notes["pitch"].astype(np.int64)
        onsets, ends = notes["time"], notes["time"] + notes["duration"]
        first = np.full(P, -1, np.int64) if first_notes is None else np.asarray(first_notes)
        last = np.where(first >= 0, pitch[np.maximum(first, 0)], np.round(self.mean_pitch)).astype(np.int64)
        # a part takes no note before its first one (all notes may go to a part never seen)
        entry = np.where(first >= 0, first, n if first_notes is not None else 0)
        owner = {int(i): p for p, i in enumerate(first) if i >= 0}
        busy_until = np.full(P, -1, np.int64)
        out = np.zeros(n, np.int64)
        starts = np.flatnonzero(np.concatenate([[True], onsets[1:] != onsets[:-1]])) if n else []
        for a, b in zip(starts, list(starts[1:]) + [n]):
            idx = np.arange(a, b)
            score = -np.square(last[None, :] - pitch[idx, None]).astype(np.float64)
            score[idx[:, None] < entry[None, :]] = -1e7
            for k, i in enumerate(idx):
                if int(i) in owner:
                    score[k] = 0.0
                    score[k, owner[int(i)]] = 1e5
            if self.mono and b - a <= P:
                score -= 1e5 * (busy_until > onsets[a])[None, :]
                # the best assignment to distinct parts; ties go to the last permutation, as in
                # the paper's code (a few permutations of at most P parts)
                best, best_score = None, -np.inf
                for perm in permutations(range(P), int(b - a)):
                    total = score[np.arange(b - a), perm].sum()
                    if total >= best_score:
                        best, best_score = perm, total
                out[idx] = best
            else:
                out[idx] = score.argmax(1)
            for i in idx:
                last[out[i]] = pitch[i]
                busy_until[out[i]] = max(busy_until[out[i]], ends[i])
        return out


def all_baselines() -> list[Baseline]:
    return [MostCommon(), ZoneBased(), ClosestPitch(), ClosestPitch(mono=True)]
