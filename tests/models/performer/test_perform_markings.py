"""The measures of benchmarks/perform_markings on signals whose answer is known."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks import perform_markings as pm
from models.performer.expression import PERFORMED_DTYPE

SR = pm.SR


def tone(pitch: int, seconds: float, decay_s: float | None = None) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    y = 0.3 * np.sin(2 * np.pi * 440.0 * 2 ** ((pitch - 69) / 12) * t)
    return (y * (np.exp(-t / decay_s) if decay_s else 1.0)).astype(np.float32)


def test_a_note_sounds_until_its_envelope_falls_20_db_below_its_peak():
    y = np.concatenate([np.zeros(SR // 2, np.float32), tone(69, 1.0, decay_s=0.1), np.zeros(SR, np.float32)])
    env = pm.envelope_db(y)
    # 20 dB down is amplitude / 10: t = 0.1 * ln 10 = 0.23 s after the onset
    assert pm.sounding_s(env, 0.5, 2.5) == pytest.approx(0.23, abs=0.03)
    assert pm.sounding_s(env, 0.5, 0.6) == pytest.approx(0.1, abs=0.01)  # capped at the next onset
    assert pm.gap_drop_db(env, 0.5, 0.4) > 10 > pm.gap_drop_db(pm.envelope_db(tone(69, 2.0)), 0.0, 0.4)


def test_passage_loudness_and_reattacks():
    loud, soft = tone(60, 1.0), tone(60, 1.0) * 10 ** (-12 / 20)
    assert pm.rms_db(loud) - pm.rms_db(soft) == pytest.approx(12.0, abs=0.01)
    hit = pm.reattacked(np.array([0.0, 1.0, 2.0, 3.0]), np.array([0.02, 1.2, 2.96]))
    assert hit.tolist() == [True, False, False, True]
    notes = np.zeros(4, PERFORMED_DTYPE)
    notes["onset_s"], notes["duration_s"], notes["dynamic"] = [0, 1, 2, 3], 1.0, [2, 2, 5, 5]
    assert pm.passages(notes) == [(2, 0.0, 2.0), (5, 2.0, 4.0)]


def test_pitch_figures_count_octave_errors_only_as_chroma():
    notes = np.zeros(2, PERFORMED_DTYPE)
    notes["onset_s"], notes["duration_s"], notes["pitch"] = [0.0, 1.0], 1.0, [67, 72]
    right = pm.pitch_figures(np.concatenate([tone(67, 1.0), tone(72, 1.0)]), notes)
    assert right["raw_pitch_accuracy"] > 0.9 and right["voicing_recall"] > 0.9
    octave = pm.pitch_figures(np.concatenate([tone(67, 1.0), tone(60, 1.0)]), notes)  # 72 an octave low
    assert octave["raw_pitch_accuracy"] < 0.6 < 0.9 < octave["raw_chroma_accuracy"]
    for p in ("", "swift_f0_"):  # both trackers
        assert right[p + "raw_pitch_accuracy"] > 0.9 and right[p + "voicing_recall"] > 0.9
        assert octave[p + "raw_pitch_accuracy"] < 0.6 < 0.8 < octave[p + "raw_chroma_accuracy"]
