from __future__ import annotations

from pathlib import Path

import mido
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge import midi
from bridge.midi import key_name, read_midi, write_midi
from bridge.notation import read_notation
from bridge.score import (
    BAR_DTYPE,
    DRUM_CHANNEL,
    KEY_DTYPE,
    METER_DTYPE,
    TEMPO_DTYPE,
    Score,
    Track,
    make_notes,
    sort_order,
)
from bridge.scorefile import ScoreReadError, read_score

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "piano.mid"
ENGINES = ("mido", "symusic")


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


@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(score=scores())
def test_write_read_round_trip(tmp_path: Path, engine: str, score: Score) -> None:
    path = tmp_path / "round_trip.mid"
    write_midi(score, path)
    back = read_midi(path, engine=engine)
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
    # its one-beat pickup comes back as a 1/4 bar before the 4/4 (see the test below)
    assert back.meters.tolist() == [(0, 1, 4), (score.resolution, 4, 4)] == \
        [(0, 1, 4), *((score.resolution, n, d) for _, n, d in score.meters.tolist())]


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


def test_zero_length_notes_are_written_and_read_back_when_kept(tmp_path: Path) -> None:
    # a zero-length note beside a sounding one of the same pitch at the same tick, and one alone
    notes = make_notes([0, 0, 5, 5], [60, 60, 61, 62], [0, 4, 0, 3])
    write_midi(Score(24, [Track("Lead", 0, False, notes)]), tmp_path / "zero.mid")
    for engine in ("mido", "symusic"):
        kept = read_midi(tmp_path / "zero.mid", engine=engine, keep_zero_length=True)
        assert kept.tracks[0].notes.tolist() == notes.tolist() and not kept.remarks
        lengthened = read_midi(tmp_path / "zero.mid", engine=engine)
        assert lengthened.tracks[0].notes["duration"].tolist() == [1, 4, 1, 3]
        assert "2 zero-length notes" in lengthened.remarks[0]


def test_write_midi_rejects_unwritable_notes(tmp_path: Path) -> None:
    score = Score(24, [Track("Lead", 0, False, make_notes([0, 5], [60, 61], [4, -1]))])
    with pytest.raises(ValueError, match=r"'Lead'.*duration -1.*>= 0 ticks"):
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


# --- The symusic reader gives the mido reader's Score ------------------------------------------


def assert_identical(got: Score, want: Score) -> None:
    """Equal to the last bit: same tracks in the same order, same note order, same dtypes."""
    assert (got.resolution, got.title) == (want.resolution, want.title)
    assert [(t.name, t.program, t.is_drum) for t in got.tracks] == [
        (t.name, t.program, t.is_drum) for t in want.tracks
    ]
    for g, w in zip(got.tracks, want.tracks, strict=True):
        assert g.notes.dtype == w.notes.dtype
        np.testing.assert_array_equal(g.notes, w.notes)
    for field in ("tempos", "meters", "keys"):
        assert getattr(got, field).dtype == getattr(want, field).dtype
        np.testing.assert_array_equal(getattr(got, field), getattr(want, field))


def read_both(path: Path, fast: bool) -> Score:
    """Both engines' Scores are identical; ``fast`` says whether symusic parsed the file itself
    (True) or handed it to mido (False)."""
    want = read_midi(path, engine="mido")
    assert_identical(read_midi(path, engine="symusic"), want)
    assert (midi._read_symusic(path.read_bytes(), path.stem) is not None) == fast
    return want


def save(tmp_path: Path, tracks: list[list], midi_format: int = 1, tpq: int = 96) -> Path:
    mid = mido.MidiFile(type=midi_format, ticks_per_beat=tpq)
    mid.tracks.extend(mido.MidiTrack(t) for t in tracks)
    path = tmp_path / f"edge{len(list(tmp_path.iterdir()))}.mid"
    mid.save(path)
    return path


M, Meta = mido.Message, mido.MetaMessage


@pytest.mark.parametrize("work", ["bach/bwv66.6", "haydn/opus74no1/movement3", "palestrina/Agnus_01.krn"])
def test_corpus_pieces_read_the_same_through_symusic(tmp_path: Path, work: str) -> None:
    from music21 import corpus

    score = read_notation(corpus.getWork(work))
    score.tempos = np.array([(0, 72.0), (score.end_tick() // 2, 66.0)], TEMPO_DTYPE)
    write_midi(score, tmp_path / "piece.mid")
    back = read_both(tmp_path / "piece.mid", fast=True)
    assert back.n_notes == score.n_notes
    assert_identical(
        read_midi(tmp_path / "piece.mid", 480, "symusic"), read_midi(tmp_path / "piece.mid", 480, "mido")
    )


def test_example_piece_reads_the_same_through_symusic() -> None:
    read_both(EXAMPLE, fast=True)


def test_symusic_overlaps_velocity_zero_and_open_notes(tmp_path: Path) -> None:
    notes = [
        M("note_on", note=60, velocity=90),
        M("note_on", note=60, velocity=80, time=10),  # same pitch again while the first sounds
        M("note_on", note=60, velocity=0, time=5),  # velocity 0: ends the first (FIFO)
        M("note_on", note=62, velocity=70),
        M("note_off", note=62),  # zero length: one tick
        M("note_off", note=64, time=3),  # no note to end
        M("note_on", note=67, velocity=50, time=1),  # never switched off: ends with the track
        M("note_off", note=60, velocity=40, time=20),
        Meta("end_of_track", time=7),
    ]
    score = read_both(save(tmp_path, [notes]), fast=True)
    np.testing.assert_array_equal(
        score.tracks[0].notes,
        make_notes([0, 10, 15, 19], [60, 60, 62, 67], [15, 29, 1, 27], [90, 80, 70, 50]),
    )


def test_symusic_several_open_notes_of_one_pitch(tmp_path: Path) -> None:
    notes = [M("note_on", note=60, velocity=v, time=4) for v in (10, 20, 30)] + [
        M("note_off", note=60, time=2)
    ]
    score = read_both(save(tmp_path, [notes + [Meta("end_of_track", time=5)]]), fast=True)
    assert score.tracks[0].notes["duration"].tolist() == [10, 11, 7]


def test_symusic_channels_drums_and_programs(tmp_path: Path) -> None:
    conductor = [Meta("track_name", name="Song"), Meta("set_tempo", tempo=600_000)]  # 0x0927C0
    band = [
        Meta("track_name", name="Band"),
        M("program_change", channel=4, program=33),
        M("control_change", channel=4, control=7, value=100),
        M("program_change", channel=2, program=0),
        *[
            m
            for ch, pitch in [(4, 40), (DRUM_CHANNEL, 36), (2, 72), (5, 50)]
            for m in (
                M("note_on", channel=ch, note=pitch, velocity=99, time=3),
                M("note_off", channel=ch, note=pitch, time=2),
            )
        ],
    ]
    lead = [M("note_on", channel=5, note=80, velocity=64), M("note_off", channel=5, note=80, time=48)]
    programs_only = [
        M("program_change", channel=5, program=71),
        M("control_change", channel=5, control=10, value=3),
    ]
    score = read_both(save(tmp_path, [conductor, band, lead, programs_only]), fast=True)
    assert score.title == "Song"
    assert [(t.name, t.program, t.is_drum) for t in score.tracks] == [
        ("Band ch3", 0, False),
        ("Band ch5", 33, False),
        ("Band ch6", 71, False),  # the program comes from another MIDI track
        ("Band ch10", 0, True),
        ("Track 3", 71, False),
    ]


def test_symusic_format0_with_meta_changes_among_notes(tmp_path: Path) -> None:
    events = [Meta("time_signature", numerator=3, denominator=4)]
    for i, key in enumerate(["Bb", "Ebm", "C#", "Cb"]):  # flats are bytes 0xF9..0xFF
        events += [
            M("note_on", channel=i % 3, note=60 + i, velocity=100, time=5),
            Meta("set_tempo", tempo=600_000 + 64 * i, time=1),
            Meta("key_signature", key=key),
            Meta("time_signature", numerator=5 + i, denominator=8, time=2),
            M("note_off", channel=i % 3, note=60 + i, time=3),
            Meta("lyrics", text="la"),
        ]
    score = read_both(save(tmp_path, [events], midi_format=0), fast=True)
    assert [t.name for t in score.tracks] == ["Track 1 ch1", "Track 1 ch2", "Track 1 ch3"]
    assert score.keys.tolist() == [(6, -2, 0), (17, -6, 1), (28, 7, 0), (39, -7, 0)]
    assert len(score.tempos) == 4 and len(score.meters) == 5


def test_symusic_running_status_and_raw_bytes(tmp_path: Path) -> None:
    def chunk(body: bytes) -> bytes:
        return b"MTrk" + len(body).to_bytes(4, "big") + body

    def smf(*bodies: bytes) -> bytes:
        return b"MThd" + bytes([0, 0, 0, 6, 0, 1, 0, len(bodies), 0, 96]) + b"".join(map(chunk, bodies))

    eot = bytes([0, 0xFF, 0x2F, 0])
    running = bytes([0, 0x90, 60, 100, 10, 64, 90, 0, 60, 0, 0, 0xFF, 0x51, 3, 7, 0xA1, 0x20, 5, 64, 0]) + eot
    program_change = bytes(
        [0, 0x90, 60, 100, 5, 60, 0, 0, 0xC0, 5, 0, 0x91, 60, 1, 3, 0x81, 60, 0, 0, 0xC1, 9]
    )
    cases = {
        # running status, also across a meta event
        "running.mid": (smf(running), True),
        # 0xC8 and 0xF1 are parts of delta times here, not a program change or a system message
        "long_delta.mid": (smf(bytes([0, 0x90, 60, 100, 0xC8, 0, 0x80, 60, 0, 0xF1, 0, 64, 0]) + eot), True),
        # a program change after the first note, and a track name
        "late_program.mid": (smf(program_change + bytes([0, 0xFF, 3, 1, 65]) + eot), True),
        "sysex.mid": (
            smf(bytes([0, 0xF0, 5, 0x7E, 0x7F, 9, 1, 0xF7, 0, 0x90, 60, 100, 5, 60, 0]) + eot),
            True,
        ),
        "no_end_of_track.mid": (smf(bytes([0, 0x90, 60, 100, 0, 0xC0, 1, 5, 0x90, 62, 100])), True),
        "trailing.mid": (smf(running) + b"junk after the last track", True),
        # symusic stops at the first end_of_track, mido reads on
        "after_end.mid": (
            smf(bytes([0, 0x90, 60, 100, 5, 0x80, 60, 0]) + eot + bytes([0, 0x90, 62, 1]) + eot),
            False,
        ),
        # a delta time of five bytes: mido reads it, symusic does not
        "long_varlen.mid": (
            smf(bytes([0, 0x90, 60, 100, 0x80, 0x80, 0x80, 0x81, 0, 0x80, 60, 0]) + eot),
            False,
        ),
        # a system message (song select) between notes: mido reads it, symusic does not
        "system.mid": (smf(bytes([0, 0x90, 60, 100, 0, 0xF3, 1, 5, 0x80, 60, 0]) + eot), False),
    }
    for name, (data, fast) in cases.items():
        (tmp_path / name).write_bytes(data)
        read_both(tmp_path / name, fast)


def test_symusic_ties_keep_note_on_order(tmp_path: Path) -> None:
    # Two voices on one channel in unison with different velocities: mido's order is note_on order.
    notes = [M("note_on", note=60, velocity=30), M("note_on", note=60, velocity=90)]
    notes += [M("note_off", note=60, time=24), M("note_off", note=60)]
    score = read_both(save(tmp_path, [notes]), fast=False)
    assert score.tracks[0].notes["velocity"].tolist() == [30, 90]


@st.composite
def midi_tracks(draw) -> list[list]:
    """Random channel-voice and meta events, biased to collide: few pitches, few ticks."""
    tracks = []
    for _ in range(draw(st.integers(1, 3))):
        channels = draw(
            st.lists(st.sampled_from([0, 1, 5, DRUM_CHANNEL]), min_size=1, max_size=3, unique=True)
        )
        events = []
        if draw(st.booleans()):
            events.append(Meta("track_name", name=draw(st.sampled_from(["Lead", "Bass", "Ünï"]))))
        for channel in channels:
            if draw(st.booleans()):
                events.append(M("program_change", channel=channel, program=draw(st.integers(0, 127))))
        for _ in range(draw(st.integers(0, 40))):
            kind = draw(
                st.sampled_from(["on", "on", "off", "zero", "cc", "bend", "program", "sysex", "tempo", "key"])
            )
            channel, pitch = draw(st.sampled_from(channels)), draw(st.sampled_from([40, 60, 61, 127]))
            # 9000 and 16300 ticks put 0xC6 and 0xFF in delta times, 20000 a three-byte one
            time = draw(st.sampled_from([0, 0, 1, 7, 200, 9000, 16300, 20000]))
            if kind == "on":
                events.append(
                    M("note_on", channel=channel, note=pitch, velocity=draw(st.integers(1, 127)), time=time)
                )
            elif kind in ("off", "zero"):
                velocity = 0 if kind == "zero" else draw(st.integers(0, 127))
                events.append(
                    M(
                        "note_off" if kind == "off" else "note_on",
                        channel=channel,
                        note=pitch,
                        velocity=velocity,
                        time=time,
                    )
                )
            elif kind == "cc":
                events.append(M("control_change", channel=channel, control=64, value=127, time=time))
            elif kind == "bend":
                events.append(
                    M("pitchwheel", channel=channel, pitch=draw(st.integers(-8192, 8191)), time=time)
                )
            elif kind == "program":
                events.append(
                    M("program_change", channel=channel, program=draw(st.integers(0, 127)), time=time)
                )
            elif kind == "sysex":
                events.append(M("sysex", data=draw(st.lists(st.integers(0, 127), max_size=3)), time=time))
            elif kind == "tempo":
                events.append(Meta("set_tempo", tempo=draw(st.integers(1, 0xFFFFFF)), time=time))
            else:
                events.append(
                    Meta(
                        "key_signature",
                        key=draw(st.sampled_from(midi.MAJOR_KEYS + midi.MINOR_KEYS)),
                        time=time,
                    )
                )
        tracks.append(events + [Meta("end_of_track", time=draw(st.sampled_from([0, 3])))])
    return tracks


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tracks=midi_tracks(), midi_format=st.sampled_from([0, 1, 2]))
def test_symusic_reads_random_files_like_mido(tmp_path: Path, tracks: list[list], midi_format: int) -> None:
    path = save(tmp_path, tracks[:1] if midi_format == 0 else tracks, midi_format)
    want = midi._read_mido(path)  # both parsers, before read_midi lengthens zero-length notes
    fast = midi._read_symusic(path.read_bytes(), path.stem)
    if fast is not None:
        assert_identical(fast, want)
    path.unlink()


def test_engine_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="engine must be one of auto, symusic, mido, got 'fast'"):
        read_midi(EXAMPLE, engine="fast")


def test_without_symusic_auto_reads_through_mido(monkeypatch: pytest.MonkeyPatch) -> None:
    want = read_midi(EXAMPLE, engine="mido")
    monkeypatch.setattr(midi, "symusic", None)
    assert_identical(read_midi(EXAMPLE), want)
    with pytest.raises(ValueError, match="needs the symusic package"):
        read_midi(EXAMPLE, engine="symusic")


@pytest.mark.parametrize("work, pickup, meter", [("bach/bwv269", (1, 4), (3, 4)),
                                                 ("bach/bwv66.6", (1, 4), (4, 4))])
def test_a_pickup_bar_is_written_as_a_meter_of_its_own_length(tmp_path: Path, work, pickup, meter) -> None:
    from music21 import corpus

    score = read_notation(corpus.getWork(work))
    assert int(score.bars["duration"][0]) == score.resolution  # both chorales start with one beat
    write_midi(score, tmp_path / "out.mid")
    back = read_midi(tmp_path / "out.mid")
    assert back.meters.tolist()[:2] == [(0, *pickup), (score.resolution, *meter)]
    assert_same_tracks(back, score)  # the notes stay where they were


def test_pickup_meters_for_any_length() -> None:
    def meters(length: int, numerator: int, denominator: int) -> list:
        score = Score(resolution=24, tracks=[], meters=np.array([(0, numerator, denominator)], METER_DTYPE),
                      bars=np.array([(0, length, 0), (length, 72, 1)], BAR_DTYPE))
        return midi._meters_with_pickup(score)

    assert meters(12, 6, 8) == [(0, 1, 8), (12, 6, 8)]
    assert meters(36, 4, 4) == [(0, 3, 8), (36, 4, 4)]  # a dotted quarter
    assert meters(96, 4, 4) == [(0, 4, 4)]  # a full first bar is no pickup
    assert meters(1, 4, 4) == [(0, 4, 4)]  # a 1/96 note: no MIDI meter measures it, the meter stays
