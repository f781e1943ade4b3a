from __future__ import annotations

from pathlib import Path

import pytest

from bridge import scorefile
from bridge.midi import read_midi, write_midi
from bridge.score import Score, ScoreReadError, Track, make_notes
from bridge.scorefile import MIDI_SUFFIXES, NOTATION_SUFFIXES, SCORE_SUFFIXES, read_score


def test_suffix_lists_are_disjoint_lower_case_and_complete() -> None:
    assert SCORE_SUFFIXES == MIDI_SUFFIXES + NOTATION_SUFFIXES
    assert not set(MIDI_SUFFIXES) & set(NOTATION_SUFFIXES)
    assert all(s == s.lower() and s.startswith(".") for s in SCORE_SUFFIXES)


@pytest.mark.parametrize("suffix", [".mid", ".MIDI"])
def test_midi_suffixes_go_to_the_midi_reader(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"song{suffix}"
    write_midi(Score(96, [Track("Lead", 0, False, make_notes([0, 96], [60, 62], 48))]), path)
    got, want = read_score(path), read_midi(path)
    assert got.resolution == want.resolution == 96
    assert got.tracks[0].notes.tolist() == want.tracks[0].notes.tolist()
    assert read_score(path, resolution=48).resolution == 48


def test_notation_gets_the_default_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = []
    monkeypatch.setattr(scorefile, "read_notation", lambda path, res, tune=None, keep=0: calls.append(res))
    (tmp_path / "a.krn").write_text("**kern\n*-\n")
    read_score(tmp_path / "a.krn")
    read_score(tmp_path / "a.krn", resolution=96)
    assert calls == [24, 96]


def test_a_folder_is_refused_before_its_suffix(tmp_path: Path) -> None:
    (tmp_path / "takes.mid").mkdir()
    with pytest.raises(ScoreReadError, match="is a directory"):
        read_score(tmp_path / "takes.mid")
    assert scorefile.ScoreReadError is ScoreReadError
