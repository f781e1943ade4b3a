"""The Arranger paper's baselines, fitted on training pieces.

- most common: every note gets the training set's most common label;
- zone-based: each part owns a pitch zone; a note goes to the part whose zone holds it (zones are
  split halfway between neighbouring parts' mean training pitches);
- closest pitch: each note goes to the part whose last note is closest in pitch (online);
  ``mono`` only considers parts that are not sounding at the note's onset.
"""
from __future__ import annotations

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

    def predict(self, notes: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class MostCommon(Baseline):
    name = "most common"

    def predict(self, notes):
        return np.full(len(notes), self.most_common, np.int64)


class ZoneBased(Baseline):
    name = "zone-based"

    def predict(self, notes):
        dist = np.abs(notes["pitch"][:, None].astype(np.float64) - self.mean_pitch[None, :])
        return dist.argmin(1).astype(np.int64)


class ClosestPitch(Baseline):
    def __init__(self, mono: bool = False) -> None:
        self.mono = mono
        self.name = "closest pitch (mono)" if mono else "closest pitch"

    def predict(self, notes):
        from scipy.optimize import linear_sum_assignment

        last = self.mean_pitch.copy()
        busy_until = np.full(self.n_parts, -1, np.int64)
        out = np.zeros(len(notes), np.int64)
        if not self.mono:
            for i, n in enumerate(notes):
                p = int(np.abs(last - float(n["pitch"])).argmin())
                out[i] = p
                last[p] = float(n["pitch"])
            return out
        # mono: the notes of one onset go jointly to distinct free parts (min total pitch distance);
        # note by note with ties broken by index, one early swap of two voices never recovers.
        onsets = notes["time"]
        starts = np.flatnonzero(np.concatenate([[True], np.diff(onsets) != 0])) if len(notes) else []
        bounds = list(starts) + [len(notes)]
        for a, b in zip(bounds[:-1], bounds[1:]):
            pitch = notes["pitch"][a:b].astype(np.float64)
            # squared distance: among equal-total matchings it prefers the one without crossings
            cost = (pitch[:, None] - last[None, :]) ** 2 + 1e6 * (busy_until > onsets[a])[None, :]
            if b - a <= self.n_parts:
                rows, cols = linear_sum_assignment(cost)
                out[a + rows] = cols
            else:
                out[a:b] = cost.argmin(1)
            for i in range(a, b):
                p = out[i]
                last[p] = float(notes["pitch"][i])
                busy_until[p] = max(busy_until[p], int(notes["time"][i] + notes["duration"][i]))
        return out


def all_baselines() -> list[Baseline]:
    return [MostCommon(), ZoneBased(), ClosestPitch(), ClosestPitch(mono=True)]
