"""``LiveLevel``, the live neural session's levelling, measures the session with the loudness
meter's running histogram: every measure gives the gain a full re-read of the session so far would
give (pyloudnorm over all of it), while the texture and loudness change under it."""
from __future__ import annotations

import numpy as np
import pytest

from bridge.loudness import level_gain_db
from engine.tasks.live_perform import LiveLevel

SR, BLOCK = 22_050, 1_024  # 100 ms is a whole 2,205 samples here


def session_audio(seconds: float) -> np.ndarray:
    """(2, n): a quiet line, then loud chords, then near silence, then the line again: the gates
    (absolute and relative) and the ceiling all have work."""
    rng = np.random.default_rng(1)
    t = np.arange(int(seconds * SR)) / SR
    part = (t * 4 / seconds).astype(int)  # four sections
    line = 0.01 * np.sin(2 * np.pi * 330 * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t))
    chords = 0.3 * sum(np.sin(2 * np.pi * f * t) for f in (220, 277, 330)) / 3
    hush = 1e-5 * rng.standard_normal(len(t))
    mono = np.select([part == 0, part == 1, part == 2], [line, chords, hush], line)
    return np.stack([mono, mono]).astype(np.float32)


def test_every_live_measure_gives_the_gain_of_a_full_re_read():
    pyloudnorm = pytest.importorskip("pyloudnorm")
    audio = session_audio(24.0)
    level, reference = LiveLevel(SR), pyloudnorm.Meter(SR)
    measured = 0
    for start in range(0, audio.shape[1] - BLOCK + 1, BLOCK):
        level(audio[:, start:start + BLOCK])
        if level._unmeasured == 0 and start >= SR:  # it measured after this block
            # the session so far to its last whole 100 ms, where the meter's gating blocks end
            so_far = audio[:, :(start + BLOCK) // (SR // 10) * (SR // 10)].T.astype(np.float64)
            lufs = reference.integrated_loudness(so_far)
            want = level_gain_db(lufs, level.meter.true_peak_dbtp(), level.target_lufs, level.ceiling_dbtp)
            assert level.goal_db == pytest.approx(want, abs=0.02), start / SR
            measured += 1
    assert measured >= 90  # each 0.2 s (five blocks) of the 23 s after the first second
