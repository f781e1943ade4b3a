"""An ABC file of many tunes: only the tune asked for is parsed (issue 17: a 313-tune opus took
seconds to read because music21 parsed every tune), and it comes back as music21 reads that tune
alone, with the file's header defaults and the remark that says which tune was used."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bridge.notation import from_music21, read_notation
from bridge.score import ScoreReadError

OPUS = ("%abc-2.1\nL:1/8\n\n"  # a file header: the unit length holds for every tune
        "X:1\nT:First\nM:4/4\nK:G\n|cdef gabc'|c'bag fedc|]\n\n"
        "X:7\nT:Second\nT:Alternative\nM:3/4\nK:Dm\n|def gab|agf edc|]\n\n"
        "X:9\nT:Third\nM:2/4\nK:C\n|CD EF|GA Bc|]\n")


def _same(a, b) -> bool:
    same_notes = all(np.array_equal(x.notes, y.notes) for x, y in zip(a.tracks, b.tracks))
    return (len(a.tracks) == len(b.tracks) and same_notes and np.array_equal(a.meters, b.meters)
            and np.array_equal(a.keys, b.keys) and a.title == b.title)


def test_one_tune_of_a_collection_reads_as_from_the_whole_file(tmp_path):
    from music21 import converter

    path = tmp_path / "tunes.abc"
    path.write_text(OPUS)
    whole = converter.parse(str(path))  # all three tunes: the old way
    for tune, place in ((None, 1), ("2", 2), ("third", 3)):
        one = read_notation(path, tune=tune)
        assert _same(one, from_music21(whole, title=path.stem, tune=tune))
        assert one.remarks[0].startswith(f"the file holds 3 tunes; used tune {place} (X:")
    second = read_notation(path, tune="2")
    assert "used tune 2 (X:7 'Second')" in second.remarks[0]
    assert tuple(second.meters[0])[1:] == (3, 4)
    assert second.tracks[0].notes["duration"][0] == second.resolution // 2  # L:1/8 from the header
    with pytest.raises(ScoreReadError, match="holds 3 tunes; give 1..3"):
        read_notation(path, tune="4")
    with pytest.raises(ScoreReadError, match="no tune's title contains it; the first titles are 'First'"):
        read_notation(path, tune="Fourth")


def test_a_tune_is_read_without_parsing_the_others(tmp_path):
    from music21 import converter

    path = tmp_path / "tunes.abc"  # a fourth tune whose unit length is 1/0: music21 cannot read it
    path.write_text(OPUS + "\nX:10\nT:Broken\nM:4/4\nL:1/0\nK:C\n|CD EF|]\n")
    with pytest.raises(ZeroDivisionError):
        converter.parse(str(path))  # reading every tune fails on it ...
    assert len(read_notation(path).tracks[0].notes) == 16  # ... the first tune alone reads
    with pytest.raises(ScoreReadError, match="could not parse tunes.abc as ABC"):
        read_notation(path, tune="4")


def test_a_tune_of_the_313_tune_essen_opus_is_the_tune_music21_extracts():
    from music21 import converter, corpus

    path = Path(str(corpus.getWork("essenFolksong/altdeu10.abc")))
    one = read_notation(path, tune="157")
    alone = converter.parse(str(path), number=157)  # music21's own pick of tune X:157
    assert _same(one, from_music21(alone, title=path.stem))
    assert one.remarks[0] == ("the file holds 313 tunes; used tune 157 (X:157 'Goldringlein'); pick another "
                              "with --tune N (1..313) or --tune TITLE")


def test_voices_written_tune_by_tune_under_one_title_stay_one_piece(tmp_path):
    path = tmp_path / "duet.abc"
    path.write_text("X:1\nT:Duet\nT:Upper\nM:4/4\nL:1/4\nK:C\n|cdef|gabc'|]\n\n"
                    "X:2\nT:Duet\nT:Lower\nM:4/4\nL:1/4\nK:C\n|CDEF|GABc|]\n")
    score = read_notation(path)
    assert [len(t.notes) for t in score.tracks] == [8, 8] and not score.remarks
