from __future__ import annotations

import numpy as np
import pytest

from bridge.chords import (
    CHORD_DTYPE,
    CHORD_QUALITIES,
    chord_pitch_classes,
    identify_chords,
    parse_chord,
    parse_key,
    parse_progression,
    parse_roman,
    quality_of,
)
from bridge.score import make_notes

Q = CHORD_QUALITIES.index


@pytest.mark.parametrize("symbol, expected", [
    ("C", (0, Q("maj"), 0)), ("Am7", (9, Q("min7"), 9)), ("C/E", (0, Q("maj"), 4)),
    ("F#dim", (6, Q("dim"), 6)), ("Bbmaj7", (10, Q("maj7"), 10)), ("Ebm7b5", (3, Q("hdim7"), 3)),
    ("G7/B", (7, Q("7"), 11)), ("Dsus4", (2, Q("sus4"), 2)), ("Caug", (0, Q("aug"), 0)),
    ("Bdim7", (11, Q("dim7"), 11)), ("C9", (0, Q("7"), 0)), ("Dm/F", (2, Q("min"), 5)),
])
def test_chord_symbols(symbol, expected):
    assert parse_chord(symbol) == expected


@pytest.mark.parametrize("bad", ["H7", "Cxyz", "", "C/Q", "7"])
def test_unknown_symbols_name_the_symbol_and_the_accepted_forms(bad):
    with pytest.raises(ValueError, match=r"unknown chord symbol .*e\.g\. Am7"):
        parse_chord(bad)


def test_one_chord_per_bar_and_several_per_bar():
    one = parse_progression("C G Am F", resolution=24)
    assert one.dtype == CHORD_DTYPE
    assert one["time"].tolist() == [0, 96, 192, 288] and (one["duration"] == 96).all()
    assert one["root"].tolist() == [0, 7, 9, 5]
    assert one["quality"].tolist() == [Q("maj"), Q("maj"), Q("min"), Q("maj")]
    two = parse_progression("C G | Am F | Dm7", meter=(3, 4), resolution=24)
    assert two["time"].tolist() == [0, 36, 72, 108, 144]
    assert two["duration"].tolist() == [36, 36, 36, 36, 72]
    looped = parse_progression("C G", bars=5)
    assert looped["root"].tolist() == [0, 7, 0, 7, 0]


def test_roman_numerals_in_major_and_minor_keys():
    c = parse_progression("I V vi IV", key="C")
    assert c["root"].tolist() == [0, 7, 9, 5]
    assert c["quality"].tolist() == [Q("maj"), Q("maj"), Q("min"), Q("maj")]
    a = parse_progression("i iv V7 i", key="a")
    assert a["root"].tolist() == [9, 2, 4, 9] and a["quality"][2] == Q("7")
    assert parse_roman("ii65", "C") == (2, Q("min7"), 5)
    assert parse_roman("viio7", "C") == (11, Q("dim7"), 11)
    assert parse_roman("bVII", "C") == (10, Q("maj"), 10)
    assert parse_key("F# minor") == (6, True) and parse_key("Bb") == (10, False)
    assert parse_key("e") == (4, True)


@pytest.mark.parametrize("text, kwargs, match", [
    ("I V vi IV", {}, "needs a key"),
    ("I V", {"key": "Q"}, "unknown key"),
    ("C | | G", {}, "empty bar"),
    ("", {}, "empty chord progression"),
    ("C G", {"bars": 0}, "bars must be"),
    ("C G", {"meter": (4, 3)}, "power-of-two"),
    ("I Vx", {"key": "C"}, "unknown roman numeral"),
])
def test_bad_progressions_say_what_to_change(text, kwargs, match):
    with pytest.raises(ValueError, match=match):
        parse_progression(text, **kwargs)


def test_identify_chords_names_triads_and_sevenths_and_covers_the_span():
    # C major for a bar, G7 for a bar, silence, A minor
    notes = np.concatenate([
        make_notes([0] * 3, [48, 64, 67], 96),
        make_notes([96] * 4, [43, 59, 62, 65], 96),
        make_notes([240] * 3, [45, 60, 64], 48),
    ])
    chords = identify_chords(notes, 24)
    named = [(int(c["root"]), CHORD_QUALITIES[c["quality"]]) for c in chords]
    assert named == [(0, "maj"), (7, "7"), (9, "min")]
    assert chords["time"].tolist() == [0, 96, 240]  # the silent beats hold G7
    assert int(chords["time"][-1] + chords["duration"][-1]) == 288
    inverted = identify_chords(make_notes([0] * 3, [52, 60, 67], 24), 24)
    assert (int(inverted["root"][0]), int(inverted["bass"][0])) == (0, 4)


def test_identify_chords_on_a_real_chorale_agrees_with_its_roman_numeral_analysis():
    """Riemenschneider 1 (BWV 269) in music21's analysis against our identification, beat by beat."""
    from music21 import converter, corpus

    from bridge.chords import chord_at
    from bridge.notation import from_music21

    score = from_music21(corpus.parse("bach/bwv269"), 24)
    notes = np.concatenate([t.notes for t in score.tracks])
    ours = identify_chords(notes, 24)
    analysis = converter.parse(corpus.getWork("bach/choraleAnalyses/riemenschneider001.rntxt"))
    beats = [(round(float(rn.offset) * 24), rn.root().pitchClass)
             for rn in analysis.flatten().getElementsByClass("RomanNumeral")]
    roots = ours["root"][chord_at(ours, np.array([t for t, _ in beats]))]
    agree = np.mean([r == want for r, (_, want) in zip(roots, beats)])
    assert agree > 0.75


def test_pitch_classes_and_qualities_round_trip():
    for q, name in enumerate(CHORD_QUALITIES):
        pcs = chord_pitch_classes(5, q)
        assert pcs[0] == 5
        assert quality_of(5, pcs) == q or name == "other"
    assert quality_of(0, [0, 4, 7, 10, 2]) == Q("7")  # a ninth is its seventh chord
    assert quality_of(0, [0, 1, 2]) == Q("other")
