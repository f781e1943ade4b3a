from __future__ import annotations

import numpy as np

from bridge.score import make_notes
from models.arranger.features import (
    MAX_CHORD,
    VOICE_FEATURES,
    FeatureConfig,
    VoiceTracker,
    chord_context,
    entry_hints,
    note_features,
    voice_states,
)


def test_chord_context_is_size_and_rank_within_each_onset():
    notes = make_notes([0, 0, 0, 24, 48, 48], [40, 50, 60, 55, 50, 70], 24)
    idx = chord_context(notes)
    size, rank = idx // MAX_CHORD + 1, idx % MAX_CHORD
    assert size.tolist() == [3, 3, 3, 1, 2, 2]
    assert rank.tolist() == [0, 1, 2, 0, 0, 1]


def test_note_features_columns_and_clipping():
    cfg = FeatureConfig(max_beat=4, max_duration=96)
    f = note_features(make_notes([0, 30, 24 * 10], [60, 61, 62], [0, 500, 24]), cfg)
    assert f.shape == (3, 5)
    assert f[:, 1].tolist() == [0, 6, 0]  # position in beat
    assert f[:, 2].tolist() == [0, 1, 3]  # beat, clipped to max_beat - 1
    assert f[:, 3].tolist() == [1, 96, 24]  # duration clipped to 1..max_duration


def test_entry_hints_mark_parts_that_have_entered():
    notes = make_notes([0, 24, 48], [60, 62, 64], 24)
    h = entry_hints(notes, np.array([0, 24, -1]))
    assert h.tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 0]]


def test_voice_states_are_causal_and_match_the_tracker():
    notes = make_notes([0, 0, 24, 24], [48, 60, 50, 62], [24, 48, 24, 24])
    labels = np.array([1, 0, 1, 0])
    states = voice_states(notes, labels, 2, 24).reshape(4, 2, VOICE_FEATURES)
    assert (states[0] == 0).all()  # nothing has played before the first note
    assert states[1, 1, 1] == 1 and states[1, 1, 0] == 1  # part 1 sounds, and at this onset
    assert states[2, 0, 0] == 1 and states[2, 1, 0] == 0  # at tick 24 part 0 still holds, 1 ended
    assert np.isclose(states[2, 1, 3], (50 - 48) / 12)  # interval from part 1's last pitch
    tracker = VoiceTracker(2, 24)
    for i, n in enumerate(notes):
        assert np.array_equal(tracker.features(int(n["time"]), int(n["pitch"])), states[i].reshape(-1))
        tracker.update(int(n["time"]), int(n["pitch"]), int(n["duration"]), int(labels[i]))
