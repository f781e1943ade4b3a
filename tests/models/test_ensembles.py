"""Ensembles as data: the shipped TOML files, the user's own, and a sentence for each bad file."""
from __future__ import annotations

import pytest

from models.ensembles import CLEFS, ENSEMBLES, EnsembleError, get_ensemble, load_ensemble_file, midi_pitch

GOOD = '''
name = "duo"
description = "violin and cello"

[[parts]]
name = "Violin"
program = 40
range = ["G3", 103]
clef = "treble"

[[parts]]
name = "Cello"
program = 42
range = ["C2", "A5"]
clef = "bass"
polyphony = 2
'''


def test_at_least_six_ensembles_ship_and_each_is_complete():
    assert {"satb", "string_quartet", "string_orchestra", "woodwind_quintet", "brass_quintet",
            "piano_quartet"} <= set(ENSEMBLES)
    for e in ENSEMBLES.values():
        assert e.parts and e.description
        for p in e.parts:
            assert 0 <= p.program <= 127 and p.low < p.high and p.clef in CLEFS


def test_shipped_ranges_clefs_and_transpositions():
    satb = ENSEMBLES["satb"]
    assert [(p.low, p.high) for p in satb.parts] == [(60, 81), (53, 74), (48, 69), (36, 64)]
    assert [p.clef for p in satb.parts] == ["treble", "treble", "treble_8vb", "bass"]
    assert satb.label_of("Bass") == 3 and satb.label_of("Soprano 1") == 0
    winds = ENSEMBLES["woodwind_quintet"]
    assert {p.name: p.transposition for p in winds.parts}["Clarinet in Bb"] == -2
    assert {p.name: p.transposition for p in winds.parts}["Horn in F"] == -7
    assert ENSEMBLES["string_quartet"].parts[2].clef == "alto"
    assert ENSEMBLES["piano_quartet"].parts[-1].polyphony == 10


def test_a_users_file_is_read(tmp_path):
    path = tmp_path / "duo.toml"
    path.write_text(GOOD)
    duo = get_ensemble(str(path))
    assert duo.part_names == ["Violin", "Cello"]
    assert (duo.parts[0].low, duo.parts[0].high) == (55, 103)
    assert duo.parts[1].polyphony == 2 and not duo.monophonic


def test_pitch_names():
    assert midi_pitch("C4", "x") == 60 and midi_pitch("F#3", "x") == 54 and midi_pitch("Bb1", "x") == 34
    assert midi_pitch(0, "x") == 0
    with pytest.raises(EnsembleError, match="not a pitch"):
        midi_pitch("H4", "x")


@pytest.mark.parametrize("change,message", [
    (("clef = \"bass\"\npolyphony = 2", "clef = \"bass\"\npolyphony = 0"), "polyphony = 0"),
    (("range = [\"C2\", \"A5\"]", "range = [\"A5\", \"C2\"]"), "goes down"),
    (("range = [\"C2\", \"A5\"]", "range = \"C2\""), "range must be"),
    (("clef = \"bass\"", "clef = \"baritone\""), "clef 'baritone'"),
    (("program = 42", "program = 200"), "program = 200"),
    (("name = \"Cello\"", "name = \"Violin\""), "share a name"),
    (("program = 42", "program = 42\nmute = true"), "unknown field"),
    (("[[parts]]\nname = \"Violin\"", "[[parts]\nname = \"Violin\""), "not valid TOML"),
])
def test_a_bad_file_gets_a_sentence(tmp_path, change, message):
    path = tmp_path / "bad.toml"
    path.write_text(GOOD.replace(*change))
    with pytest.raises(EnsembleError, match=message):
        load_ensemble_file(path)


def test_unknown_names_and_missing_files():
    with pytest.raises(EnsembleError, match="choose one of: .*satb"):
        get_ensemble("kazoo_band")
    with pytest.raises(EnsembleError, match="no ensemble file at"):
        get_ensemble("nowhere/band.toml")
