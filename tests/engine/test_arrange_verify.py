"""Issue 17's "what was seen", tried again as a user would (docs/verification-issue17.md): a folk
melody stays in one part for every shipped four-part ensemble, the Maple Leaf Rag's summary counts
exactly the notes its output leaves out of their part's range, and the help says each default once."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.midi import read_midi
from models.ensembles import get_ensemble

ROOT = Path(__file__).resolve().parents[2]


def _cli(*argv: str) -> int:
    from engine.cli import main

    return main(list(argv))


def _corpus(name: str) -> Path:
    from music21 import corpus

    return Path(str(corpus.getWork(name)))


@pytest.mark.parametrize("ensemble", ["satb", "string_quartet"])
def test_a_folk_melody_stays_in_one_part(ensemble, tmp_path, capsys):
    opus = _corpus("essenFolksong/altdeu10.abc")  # 313 tunes: its first is read alone, at once
    out = tmp_path / "out.mid"
    assert _cli("arrange", str(opus), "-o", str(out), "--ensemble", ensemble) == 0
    capsys.readouterr()
    counts = sorted((len(t.notes) for t in read_midi(out).tracks), reverse=True)
    assert counts[0] == 60 and sum(counts[1:]) == 0


def test_the_summary_counts_every_note_left_out_of_its_parts_range(tmp_path, capsys):
    out = tmp_path / "rag.mid"
    rag = str(_corpus("joplin/maple_leaf_rag.mxl"))
    assert _cli("arrange", rag, "-o", str(out), "--ensemble", "string_quartet") == 0
    said = capsys.readouterr().out
    parts = get_ensemble("string_quartet").parts
    tracks = read_midi(out).tracks
    outside = sum(int(((t.notes["pitch"] < p.low) | (t.notes["pitch"] > p.high)).sum())
                  for p, t in zip(parts, tracks))
    cello = tracks[3].notes["pitch"]
    assert outside > 0 and cello.min() < 36  # the rag goes below the cello's open C ...
    assert f"{outside} out of their part's range" in said  # ... and the summary says so, exactly
    assert sum(len(t.notes) for t in tracks) == 1489  # every note kept


def test_the_help_states_each_default_once():
    said = subprocess.run([sys.executable, "-m", "engine.cli", "arrange", "--help"], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout
    assert said.count("(default: satb)") == 1
    assert not re.search(r"\(default: [^)]*\)\s+\(default:", said)
