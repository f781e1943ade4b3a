"""A bar longer than its meter in the input (Haydn's op. 74 no. 1, third movement: bar 58 of the
first violin holds 3¼ quarters in 3/4, a slip of the engraving) keeps its length in MusicXML
output: every note, grace notes among them, comes back at its own time (issue 17: notes are never
moved)."""
from __future__ import annotations

import numpy as np

from bridge.notation import read_notation, write_musicxml


def _notes(score) -> list[tuple]:
    n = np.concatenate([t.notes for t in score.tracks])
    return sorted(zip(n["time"].tolist(), n["pitch"].tolist(), n["duration"].tolist()))


def test_an_overfull_bar_keeps_every_later_note_in_place(tmp_path):
    from music21 import corpus

    score = read_notation(corpus.getWork("haydn/opus74no1/movement3"), keep_zero_length=True)
    assert (score.bars["duration"] > 3 * score.resolution).sum() == 1  # the overfull bar
    write_musicxml(score, tmp_path / "out.musicxml")
    back = read_notation(tmp_path / "out.musicxml", keep_zero_length=True)
    assert _notes(back) == _notes(score)
    assert [len(t.notes) for t in back.tracks] == [len(t.notes) for t in score.tracks]
    assert (back.tracks[0].notes["duration"] == 0).sum() == (score.tracks[0].notes["duration"] == 0).sum() > 0
