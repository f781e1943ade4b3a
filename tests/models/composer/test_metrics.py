from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from bridge.chords import parse_progression
from bridge.score import make_notes
from models.composer import metrics as M
from models.data import RESOLUTION
from models.data import multitrack as mt

CORPUS_FILES = ("bach/bwv66.6.mxl", "bach/bwv1.6.mxl", "bach/bwv269.mxl")


def corpus_path(rel: str) -> str:
    import music21

    return f"{music21.__file__.rsplit('/', 1)[0]}/corpus/{rel}"


@pytest.fixture(scope="module")
def real_pieces() -> list[mt.MultiPiece]:
    """Real chorales converted as the builder converts them."""
    pieces = []
    for rel in CORPUS_FILES:
        (name, a), = mt.convert_file((corpus_path(rel), rel, True))
        pieces.append(mt.MultiPiece(name, "test", RESOLUTION, a["notes"], a["track"], a["instruments"],
                                    a["programs"], a["meters"], a["keys"], a["chords"], a["bar_starts"],
                                    a["qpm"]))
    return pieces


def test_metrics_by_hand_on_a_small_score():
    # bar 1: C E G held a half note together, then a C; bar 2: the same rhythm on D
    notes = np.concatenate([make_notes([0, 0, 0, 48], [60, 64, 67, 60], [48, 48, 48, 48]),
                            make_notes([96, 96, 96, 144], [62, 65, 69, 62], [48, 48, 48, 48])])
    assert M.pitch_range(notes) == 9
    # pitch classes C and D twice, E F G A once: 2 at 1/4, 4 at 1/8
    assert M.pitch_class_entropy(notes) == pytest.approx(2 * 0.25 * 2 + 4 * 0.125 * 3)
    assert M.scale_consistency(notes) == 1.0  # C major holds all of them
    assert M.polyphony(notes) == pytest.approx((3 * 48 + 48 + 3 * 48 + 48) / 192)
    # the grid runs one bar past the end (192 = 2 * 96): bars 0 and 1 match, bar 2 is empty
    assert M.groove_consistency(notes) == pytest.approx(1 - (0 + 2) / (96 * 2))
    assert M.empty_beat_rate(notes) == 0.0
    gap = make_notes([0, 96], [60, 60], [12, 12])  # beats 1-3 of 5 (the grid counts beat 4) are empty
    assert M.empty_beat_rate(gap) == pytest.approx(3 / 5)
    assert math.isnan(M.pitch_class_entropy(make_notes([], [], [])))


def test_chord_tone_ratio_and_note_f1():
    chords = parse_progression("C G")
    notes = make_notes([0, 24, 48, 96, 120], [60, 62, 67, 71, 60], 24)
    assert M.chord_tone_ratio(notes, chords) == pytest.approx(3 / 5)  # D over C, C over G are not
    with pytest.raises(ValueError, match="needs chords"):
        M.chord_tone_ratio(notes)
    ref = make_notes([0, 24, 48], [60, 62, 64], 24)
    gen = make_notes([0, 24, 48, 72], [60, 62, 65, 67], 12)  # durations do not matter
    f = M.note_f1(ref, gen)
    assert (f["precision"], f["recall"]) == (0.5, pytest.approx(2 / 3)) and f["f1"] == pytest.approx(4 / 7)
    assert M.note_f1(ref, ref)["f1"] == 1.0 and M.note_f1(ref, gen[:0])["f1"] == 0.0


def test_drums_count_for_rhythm_not_for_pitch(real_pieces):
    p = real_pieces[0]
    drums = mt.MultiPiece(**{**p.__dict__, "instruments": ["drums"] + p.instruments[1:]})
    assert M.pitch_range(drums) <= M.pitch_range(p)
    assert M.groove_consistency(drums) == M.groove_consistency(p)


def to_muspy(p: mt.MultiPiece):
    import muspy

    tracks = []
    for t, name in enumerate(p.instruments):
        n = p.notes[p.track == t]
        tracks.append(muspy.Track(program=p.programs[t], is_drum=name == "drums", notes=[
            muspy.Note(int(a), int(b), int(c), int(d))
            for a, b, c, d in zip(n["time"], n["pitch"], n["duration"], n["velocity"])]))
    return muspy.Music(resolution=p.resolution, tracks=tracks)


def muspy_values(music, measure_resolution: int) -> dict[str, float]:
    import muspy

    return {"pitch_class_entropy": muspy.pitch_class_entropy(music),
            "scale_consistency": muspy.scale_consistency(music),
            "groove_consistency": muspy.groove_consistency(music, measure_resolution),
            "polyphony": muspy.polyphony(music), "empty_beat_rate": muspy.empty_beat_rate(music),
            "pitch_range": float(muspy.pitch_range(music))}


def test_the_muspy_package_agrees_on_the_same_files(real_pieces):
    """Two checks on real chorales. Our notes through muspy's functions: equal to 1e-9. muspy
    reading the same MusicXML itself (resampled to our grid): equal to 1e-9 where it reads the
    same notes, within 0.02 (pitch range exact) where it unfolds repeats we keep once (BWV 269)."""
    muspy = pytest.importorskip("muspy", reason="muspy is not installed (pip install -e .[dev])")
    for p, rel in zip(real_pieces, CORPUS_FILES):
        ours = M.muspy_metrics(p)
        same = muspy_values(to_muspy(p), M.measure_ticks(p))
        assert ours == pytest.approx(same, abs=1e-9)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            music = muspy.read_musicxml(corpus_path(rel))
        music.adjust_resolution(RESOLUTION)
        own = muspy_values(music, M.measure_ticks(p))
        same_notes = sum(len(t.notes) for t in music.tracks) == len(p.notes)
        assert ours == pytest.approx(own, abs=1e-9 if same_notes else 0.02), rel
        assert ours["pitch_range"] == own["pitch_range"]


def test_reference_band_over_real_pieces(real_pieces):
    band = M.reference_band(real_pieces)
    assert set(band) == {*M.MUSPY_METRICS, "chord_tone_ratio"}
    for name, b in band.items():
        assert b["low"] <= b["mean"] <= b["high"] and b["n"] == 3, name
    assert 2.5 < band["pitch_class_entropy"]["mean"] < 3.5 and 3 < band["polyphony"]["mean"] < 5
    assert 0.7 < band["chord_tone_ratio"]["mean"] <= 1
    inside = M.inside_band({k: v["mean"] for k, v in band.items()}, band)
    assert all(inside.values())
    with pytest.raises(ValueError, match="percentiles"):
        M.reference_band(real_pieces, low=95, high=5)
    with pytest.raises(ValueError, match="at least one piece"):
        M.evaluate([])
