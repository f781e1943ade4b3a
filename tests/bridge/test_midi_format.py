from __future__ import annotations

import numpy as np

from bridge.midi_format import assemble_score, decode_meta_text, encode_meta_text, last_per_tick
from bridge.score import DRUM_CHANNEL, KEY_DTYPE, METER_DTYPE, TEMPO_DTYPE, make_notes


def test_meta_text_round_trips_any_name_and_keeps_latin1() -> None:
    for name in ("Violino I", "Flûte", "二胡", ""):
        assert decode_meta_text(encode_meta_text(name)) == name
    assert decode_meta_text("Fl\xfbte") == "Fl\xfbte"  # latin-1 written by another program


def test_last_per_tick_keeps_the_last_event_of_each_tick() -> None:
    tempos = np.array([(10, 90.0), (0, 120.0), (10, 60.0)], TEMPO_DTYPE)
    assert last_per_tick(tempos).tolist() == [(0, 120.0), (10, 60.0)]
    assert len(last_per_tick(np.zeros(0, TEMPO_DTYPE))) == 0


def test_assemble_names_tracks_programs_and_title() -> None:
    notes = {key: make_notes([0], [60], [1]) for key in [(1, 0), (1, 3), (2, DRUM_CHANNEL)]}
    empty = (np.zeros(0, TEMPO_DTYPE), np.zeros(0, METER_DTYPE), np.zeros(0, KEY_DTYPE))
    score = assemble_score(96, 1, notes, {0: "Song", 1: "Keys"}, {(0, 3): 40}, *empty, "file")
    assert [(t.name, t.program, t.is_drum) for t in score.tracks] == [
        ("Keys ch1", 0, False),
        ("Keys ch4", 40, False),  # a program change in another MIDI track applies to its channel
        ("Drums", 0, True),
    ]
    assert score.title == "Song"  # a type-1 conductor track's name
    assert assemble_score(96, 0, notes, {0: "Song"}, {}, *empty, "file").title == "file"
