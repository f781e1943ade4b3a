from __future__ import annotations

from pathlib import Path

import mido
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.midi import DRUM_CHANNEL, key_name, read_midi, read_score, write_midi
from bridge.notation import ScoreReadError, read_notation
from bridge.score import KEY_DTYPE, METER_DTYPE, TEMPO_DTYPE, Score, Track, make_notes, sort_order

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "piano.mid"


def sorted_notes(notes: np.ndarray) -> np.ndarray:
    # Velocity breaks ties too, so duplicate notes that differ only in velocity compare equal.
    return notes[np.lexsort((notes["velocity"], notes["duration"], notes["pitch"], notes["time"]))]


def assert_same_tracks(got: Score, want: Score) -> None:
    assert [t.name for t in got.tracks] == [t.name for t in want.tracks]
    assert [t.program for t in got.tracks] == [t.program for t in want.tracks]
    assert [t.is_drum for t in got.tracks] == [t.is_drum for t in want.tracks]
    for g, w in zip(got.tracks, want.tracks, strict=True):
        np.testing.assert_array_equal(sorted_notes(g.notes), sorted_notes(w.notes))
        np.testing.assert_array_equal(g.notes, g.notes[sort_order(g.notes)])


def drop_nested(notes: np.ndarray) -> np.ndarray:
    """Drop same-pitch notes that start after and end before another note of the track.

    MIDI only says "pitch p off" and the reader pairs offs first-in, first-out, so a note nested
    inside a longer one of the same pitch comes back with the two ends swapped. Overlaps where the
    later note also ends later (or at the same tick) do round-trip exactly, and stay in.
    """
    keep = np.zeros(len(notes), bool)
    latest_end: dict[int, int] = {}
    for i in np.lexsort((notes["duration"], notes["time"])):
        pitch, end = int(notes["pitch"][i]), int(notes["time"][i] + notes["duration"][i])
        if end >= latest_end.get(pitch, end):
            keep[i] = True
            latest_end[pitch] = end
    return notes[keep]


@st.composite
def note_arrays(draw) -> np.ndarray:
    n = draw(st.integers(1, 30))
    column = lambda lo, hi: draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n))
    # Narrow pitch and time ranges make same-pitch overlaps and same-tick repeats common.
    notes = make_notes(column(0, 3000), column(55, 62), column(1, 1500), column(1, 127))
    if draw(st.booleans()):
        notes["pitch"] = column(0, 127)
    return drop_nested(notes)


@st.composite
def scores(draw) -> Score:
    tracks = [
        Track(
            name=draw(st.text(max_size=12)),
            program=draw(st.integers(0, 127)),
            is_drum=draw(st.booleans()),
            notes=draw(note_arrays()),
        )
        for _ in range(draw(st.integers(0, 5)))
    ]
    times = st.integers(0, 5000)
    tempos = draw(st.lists(st.tuples(times, st.floats(20, 300)), max_size=3, unique_by=lambda t: t[0]))
    meters = draw(
        st.lists(
            st.tuples(times, st.integers(1, 16), st.sampled_from([1, 2, 4, 8, 16, 32])),
            max_size=3,
            unique_by=lambda m: m[0],
        )
    )
    keys = draw(
        st.lists(
            st.tuples(times, st.integers(-7, 7), st.integers(0, 1)), max_size=3, unique_by=lambda k: k[0]
        )
    )
    return Score(
        resolution=draw(st.integers(1, 2000)),
        tracks=tracks,
        tempos=np.sort(np.array(tempos, TEMPO_DTYPE), order="time"),
        meters=np.sort(np.array(meters, METER_DTYPE), order="time"),
        keys=np.sort(np.array(keys, KEY_DTYPE), order="time"),
        title=draw(st.text(min_size=1, max_size=12)),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(score=scores())
def test_write_read_round_trip(tmp_path: Path, score: Score) -> None:
    path = tmp_path / "round_trip.mid"
    write_midi(score, path)
    back = read_midi(path)
    assert back.resolution == score.resolution
    assert back.title == score.title
    assert_same_tracks(back, score)
    np.testing.assert_array_equal(back.tempos["time"], score.tempos["time"])
    np.testing.assert_allclose(back.tempos["qpm"], score.tempos["qpm"], rtol=1e-5)
    np.testing.assert_array_equal(back.meters, score.meters)
    np.testing.assert_array_equal(back.keys, score.keys)


def test_overlapping_same_pitch_notes_pair_first_in_first_out(tmp_path: Path) -> None:
    # Ends 240, 480, 720, 720, 730: every later note ends no earlier, so pairing is exact.
    notes = make_notes([0, 0, 240, 480, 480], 60, [240, 480, 480, 240, 250], [10, 20, 30, 40, 50])
    score = Score(480, [Track("Piano", 0, False, notes)])
    write_midi(score, tmp_path / "overlap.mid")
    assert_same_tracks(read_midi(tmp_path / "overlap.mid"), score)


def test_nested_same_pitch_notes_swap_ends(tmp_path: Path) -> None:
    # The documented limit: (0, 480) holding (100, 10) inside it is heard as (0, 110) and (100, 380).
    write_midi(
        Score(480, [Track("Piano", 0, False, make_notes([0, 100], 60, [480, 10]))]), tmp_path / "nest.mid"
    )
    np.testing.assert_array_equal(read_midi(tmp_path / "nest.mid").tracks[0].notes["duration"], [110, 380])


def test_corpus_chorale_round_trip(tmp_path: Path) -> None:
    from music21 import corpus

    score = read_notation(corpus.getWork("bach/bwv66.6"))
    assert len(score.tracks) == 4 and score.n_notes > 100
    write_midi(score, tmp_path / "bwv66.6.mid")
    back = read_midi(tmp_path / "bwv66.6.mid")
    assert back.resolution == score.resolution
    assert_same_tracks(back, score)
    np.testing.assert_array_equal(back.keys, score.keys)
    np.testing.assert_array_equal(back.meters, score.meters)


def test_read_score_dispatches_notation_by_suffix() -> None:
    from music21 import corpus

    path = Path(corpus.getWork("bach/bwv66.6"))
    score = read_score(path)
    assert score.resolution == 24 and len(score.tracks) == 4
    assert read_score(path, resolution=48).tracks[0].notes["duration"].min() >= 2


def test_type0_file_splits_channels_and_reads_meta(tmp_path: Path) -> None:
    track = mido.MidiTrack(
        [
            mido.MetaMessage("track_name", name="Band"),
            mido.MetaMessage("set_tempo", tempo=500_000),
            mido.MetaMessage("time_signature", numerator=6, denominator=8),
            mido.MetaMessage("key_signature", key="F#m"),
            mido.Message("program_change", channel=2, program=33),
            mido.Message("note_on", channel=2, note=40, velocity=90, time=0),
            mido.Message("note_on", channel=DRUM_CHANNEL, note=36, velocity=100, time=0),
            mido.Message("note_on", channel=DRUM_CHANNEL, note=36, velocity=0, time=10),  # velocity 0 = off
            mido.Message(
                "note_on", channel=2, note=40, velocity=70, time=50
            ),  # same pitch again, overlapping
            mido.Message("note_off", channel=2, note=40, time=40),  # ends the first E2 (FIFO)
            mido.Message("note_off", channel=2, note=40, time=100),
            mido.MetaMessage("key_signature", key="Bb", time=0),
        ]
    )
    mid = mido.MidiFile(type=0, ticks_per_beat=96)
    mid.tracks.append(track)
    mid.save(tmp_path / "type0.mid")

    score = read_midi(tmp_path / "type0.mid")
    assert score.resolution == 96 and score.title == "type0"
    assert [(t.name, t.program, t.is_drum) for t in score.tracks] == [
        ("Band ch3", 33, False),
        ("Band ch10", 0, True),
    ]
    np.testing.assert_array_equal(score.tracks[0].notes, make_notes([0, 60], 40, [100, 140], [90, 70]))
    np.testing.assert_array_equal(score.tracks[1].notes, make_notes([0], 36, [10], [100]))
    assert score.qpm_at(0) == 120.0
    assert score.meters.tolist() == [(0, 6, 8)]
    assert score.keys.tolist() == [(0, 3, 1), (200, -2, 0)]


def test_read_midi_rescales_to_requested_resolution(tmp_path: Path) -> None:
    score = Score(
        480,
        [Track("Piano", 0, False, make_notes([0, 240, 480], [60, 62, 64], [240, 240, 960]))],
        meters=np.array([(1920, 3, 4)], METER_DTYPE),
    )
    write_midi(score, tmp_path / "hi.mid")
    low = read_midi(tmp_path / "hi.mid", resolution=24)
    assert low.resolution == 24
    np.testing.assert_array_equal(low.tracks[0].notes, make_notes([0, 12, 24], [60, 62, 64], [12, 12, 48]))
    assert low.meters.tolist() == [(96, 3, 4)]


def test_many_tracks_share_channels_but_skip_drums(tmp_path: Path) -> None:
    tracks = [Track(f"T{i}", i, False, make_notes([i], 60, 10)) for i in range(17)]
    tracks.append(Track("Kit", 0, True, make_notes([0], 38, 10)))
    score = Score(24, tracks)
    write_midi(score, tmp_path / "many.mid")
    channels = [
        {m.channel for m in t if m.type == "note_on"} for t in mido.MidiFile(tmp_path / "many.mid").tracks[1:]
    ]
    assert channels == [{c} for c in [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 0, 1, 9]]
    assert_same_tracks(read_midi(tmp_path / "many.mid"), score)


def test_write_midi_rejects_unwritable_notes(tmp_path: Path) -> None:
    score = Score(24, [Track("Lead", 0, False, make_notes([0, 5], [60, 61], [4, 0]))])
    with pytest.raises(ValueError, match=r"'Lead'.*duration 0.*>= 1 tick"):
        write_midi(score, tmp_path / "bad.mid")
    score.tracks[0].notes["duration"] = 4
    score.tracks[0].notes["velocity"][1] = 0
    with pytest.raises(ValueError, match="velocit"):
        write_midi(score, tmp_path / "bad.mid")
    with pytest.raises(ValueError, match="power of two"):
        write_midi(Score(24, meters=np.array([(0, 3, 6)], METER_DTYPE)), tmp_path / "bad.mid")


def test_key_names() -> None:
    assert key_name(0, 0) == "C" and key_name(-2, 0) == "Bb" and key_name(1, 1) == "Em"
    with pytest.raises(ValueError, match="-7..7"):
        key_name(8, 0)


def test_read_score_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no file at .*nowhere.mid"):
        read_score(tmp_path / "nowhere.mid")


def test_read_score_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.mid").write_bytes(b"")
    with pytest.raises(ScoreReadError, match="empty.mid is empty"):
        read_score(tmp_path / "empty.mid")


def test_read_score_garbage_midi(tmp_path: Path) -> None:
    (tmp_path / "noise.mid").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ScoreReadError, match="could not read noise.mid as a MIDI file.*MThd"):
        read_score(tmp_path / "noise.mid")


def test_read_score_truncated_midi(tmp_path: Path) -> None:
    write_midi(Score(24, [Track("P", 0, False, make_notes([0, 24], 60, 24))]), tmp_path / "whole.mid")
    (tmp_path / "cut.mid").write_bytes((tmp_path / "whole.mid").read_bytes()[:-12])
    with pytest.raises(ScoreReadError, match="cut.mid"):
        read_score(tmp_path / "cut.mid")


def test_read_score_unknown_suffix(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("C D E")
    with pytest.raises(ScoreReadError, match=r"'\.txt' is not a score format.*\.mid, \.midi.*\.musicxml"):
        read_score(tmp_path / "notes.txt")


def test_example_piece_reads_back() -> None:
    score = read_score(EXAMPLE)
    assert len(score.tracks) == 1 and score.n_notes > 100
    track = score.tracks[0]
    assert (track.name, track.program, track.is_drum) == ("Piano", 0, False)
    assert score.resolution == 480 and score.meters.tolist() == [(0, 4, 4)]
    assert 40 <= track.notes["pitch"].min() and track.notes["pitch"].max() <= 81


def test_humdrum_and_abc_from_the_corpus_read_voice_by_voice() -> None:
    from music21 import corpus

    from bridge.notation import read_notation

    kern = read_notation(corpus.getWork("palestrina/Agnus_01.krn"))
    assert [t.name for t in kern.tracks] == ["Soprano", "Alto", "Tenor", "Tenor", "Bass"]
    assert all(len(t.notes) > 50 for t in kern.tracks)
    # each voice of this chanson is its own ABC tune with the same title: one piece, four voices
    abc = read_notation(corpus.getWork("josquin/adieuMesAmours.abc"))
    assert [t.name for t in abc.tracks] == ["Cantus", "Altus", "Tenor", "Bassus"]
    assert [len(t.notes) > 50 for t in abc.tracks] == [True] * 4
