"""Part-separation metrics: the paper's accuracy protocol plus soundness, completeness and F1."""
from __future__ import annotations

import numpy as np

EVAL_NOTES = 2000  # the paper scores the first 2000 notes of each test piece


def _adjacent_pairs(labels: np.ndarray) -> set[tuple[int, int]]:
    """Pairs (i, j) of consecutive notes (in note order) that share a label."""
    pairs = set()
    for k in np.unique(labels):
        idx = np.flatnonzero(labels == k)
        pairs.update(zip(idx[:-1].tolist(), idx[1:].tolist()))
    return pairs


def soundness_completeness(pred: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """Soundness: share of consecutive same-part pairs in the prediction that are also in the same
    true part. Completeness: share of consecutive same-part pairs of the truth kept together by the
    prediction."""
    p_pairs, t_pairs = _adjacent_pairs(pred), _adjacent_pairs(true)
    sound = np.mean([true[i] == true[j] for i, j in p_pairs]) if p_pairs else 1.0
    complete = np.mean([pred[i] == pred[j] for i, j in t_pairs]) if t_pairs else 1.0
    return float(sound), float(complete)


class Scores:
    """Accumulates predictions over pieces; ``summary()`` micro-averages."""

    def __init__(self, n_parts: int) -> None:
        self.n_parts = n_parts
        self.correct = 0
        self.total = 0
        self.sound, self.complete, self.weights = [], [], []
        self.confusion = np.zeros((n_parts, n_parts), np.int64)

    def add(self, pred: np.ndarray, true: np.ndarray) -> None:
        pred, true = pred[:EVAL_NOTES], true[:EVAL_NOTES]
        self.correct += int((pred == true).sum())
        self.total += len(true)
        s, c = soundness_completeness(pred, true)
        self.sound.append(s)
        self.complete.append(c)
        self.weights.append(len(true))
        np.add.at(self.confusion, (true, np.clip(pred, 0, self.n_parts - 1)), 1)

    def summary(self) -> dict:
        tp = np.diag(self.confusion).astype(np.float64)
        prec = tp / np.maximum(self.confusion.sum(0), 1)
        rec = tp / np.maximum(self.confusion.sum(1), 1)
        f1 = 2 * prec * rec / np.maximum(prec + rec, 1e-12)
        w = np.asarray(self.weights, np.float64)
        return {
            "accuracy": self.correct / max(self.total, 1),
            "soundness": float(np.average(self.sound, weights=w)) if len(w) else 0.0,
            "completeness": float(np.average(self.complete, weights=w)) if len(w) else 0.0,
            "f1_per_part": [float(x) for x in f1],
            "notes": self.total,
        }
