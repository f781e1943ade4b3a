"""MusicXML written back as it was read: the input's bars (a pickup, bars split at a phrase end, a
short last bar) and its tempo changes, from real corpus files."""
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
