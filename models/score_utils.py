"""Small note-array helpers for models (export self-tests, benchmarks)."""
from __future__ import annotations

import numpy as np

from bridge.score import make_notes, sort_order


def random_notes(gen: np.random.Generator, n: int, resolution: int) -> np.ndarray:
    """``n`` plausible notes (chords included) sorted by (onset, pitch, duration)."""
    onsets = np.sort(gen.integers(0, max(1, n // 2), n)) * (resolution // 2)
    notes = make_notes(onsets, gen.integers(36, 90, n), gen.integers(1, 4 * resolution, n),
                       gen.integers(30, 120, n))
    return notes[sort_order(notes)]
