"""MusicXML written back as it was read: the input's bars (a pickup, bars split at a phrase end, a
short last bar), its tempo changes and its ties (across bars, in parts of several voices), from real
corpus files."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bridge.notation import read_notation, write_musicxml
from bridge.score import METER_DTYPE, TEMPO_DTYPE, Score, Track, make_notes


def _bars(path: Path) -> list[tuple]:
    from music21 import converter

    parts = converter.parse(str(path)).parts
    return [[(m.number, m.numberSuffix, float(m.offset), float(m.duration.quarterLength))
             for m in p.getElementsByClass("Measure")] for p in parts]


def test_bars_of_a_chorale_with_a_pickup_and_split_bars_come_back(tmp_path: Path) -> None:
    from music21 import corpus

    src = tmp_path / "bwv269.musicxml"  # 3/4, a one-beat pickup, bars 7/7a and 14/14a, short last bar
    corpus.parse("bach/bwv269").write("musicxml", fp=str(src))
    score = read_notation(src)
    assert score.bars["time"][:2].tolist() == [0, score.resolution]  # bar 0 is one beat
    out = tmp_path / "out.musicxml"
    write_musicxml(score, out)
    want = _bars(src)[0]
    assert (0, None, 0.0, 1.0) == want[0] and (7, "a", 21.0, 1.0) in want
    assert all(part == want for part in _bars(out))
    back = read_notation(out)
    assert back.bars.tolist() == score.bars.tolist()
    assert sorted(back.tracks[0].notes.tolist()) == sorted(score.tracks[0].notes.tolist())
    # a track that sounds past the bars read: whole bars of the last meter follow
    later = make_notes([score.end_tick() + 12], [60], 24)
    score.tracks[1].notes = np.concatenate([score.tracks[1].notes, later])
    write_musicxml(score, out)
    back = read_notation(out)
    n = len(score.bars)
    assert back.bars.tolist()[:n] == score.bars.tolist() and len(back.bars) == n + 1
    assert later.tolist()[0] in back.tracks[1].notes.tolist()


def test_tempo_changes_are_written(tmp_path: Path) -> None:
    t = np.arange(12) * 24
    score = Score(24, [Track("A", 0, notes=make_notes(t, 60 + np.arange(12), 24))],
                  np.array([(0, 90.0), (120, 60.0)], TEMPO_DTYPE), np.array([(0, 4, 4)], METER_DTYPE))
    write_musicxml(score, tmp_path / "t.musicxml")
    assert read_notation(tmp_path / "t.musicxml").tempos.tolist() == [(0, 90.0), (120, 60.0)]


def test_ties_across_bars_in_a_part_with_several_voices_come_back_as_one_note(tmp_path: Path) -> None:
    # a held C under a moving line, and an E tied over the bar line in a third voice: music21's
    # stripTies on the flattened part returned the C cut at the bar and the E in three pieces
    held = make_notes([0], [60], 24 * 6)
    line = make_notes([0, 24, 48, 72, 96, 120, 144], [67, 69, 71, 72, 74, 76, 77], 24)
    offbeat = make_notes([36], [64], 24 * 3)
    score = Score(resolution=24, tracks=[Track(name="Piano", program=0,
                                               notes=np.concatenate([held, line, offbeat]))],
                  meters=np.array([(0, 4, 4)], METER_DTYPE))
    write_musicxml(score, tmp_path / "voices.musicxml")
    back = read_notation(tmp_path / "voices.musicxml")
    assert sorted(back.tracks[0].notes.tolist()) == sorted(score.tracks[0].notes.tolist())


def test_tied_chord_notes_of_a_piano_piece_are_merged() -> None:
    from music21 import corpus

    score = read_notation(corpus.getWork("schumann_clara/opus17/movement3"))
    notes = {tuple(n[:3]) for n in score.tracks[2].notes.tolist()}
    # E4 eighths tied inside a chord at beat 73 (the file marks start and stop) are one quarter
    assert (73 * score.resolution, 64, score.resolution) in notes
    assert (int(73.5 * score.resolution), 64, score.resolution // 2) not in notes
