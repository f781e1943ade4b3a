"""The arrange task on the shipped TorchScript models: every note kept, only assigned."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.score import Score, Track, make_notes
from engine.registry import Registry
from engine.tasks.arrange import ArrangeInputError, ArrangeOptions, Hints, arrange

REGISTRY = Registry()
SHIPPED = [(e.metadata["ensemble"], e.metadata["mode"]) for e in REGISTRY.usable("arrange")]


def _key(notes: np.ndarray) -> list[tuple]:
    return sorted(zip(notes["time"].tolist(), notes["pitch"].tolist(), notes["duration"].tolist(),
                      notes["velocity"].tolist()))


@st.composite
def scores(draw):
    resolution = draw(st.sampled_from([24, 96, 480, 960]))
    tracks = []
    for i in range(draw(st.integers(1, 3))):
        n = draw(st.integers(1, 60))
        notes = make_notes(
            draw(st.lists(st.integers(0, 64 * resolution), min_size=n, max_size=n)),
            draw(st.lists(st.integers(0, 127), min_size=n, max_size=n)),
            draw(st.lists(st.integers(1, 8 * resolution), min_size=n, max_size=n)),
            draw(st.lists(st.integers(1, 127), min_size=n, max_size=n)),
        )
        tracks.append(Track(f"t{i}", 0, is_drum=draw(st.booleans()) and i > 0, notes=notes))
    return Score(resolution, tracks)


def test_shipped_models_cover_both_ensembles_and_modes():
    assert {("satb", "online"), ("satb", "offline"), ("string_quartet", "online"),
            ("string_quartet", "offline")} <= set(SHIPPED)


@pytest.mark.parametrize("ensemble,mode", SHIPPED)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(score=scores())
def test_every_input_note_comes_out_unchanged(ensemble, mode, score):
    model = REGISTRY.find_arranger(ensemble, mode)
    out = arrange(score, model).to_score()
    pitched = np.concatenate([t.notes for t in score.tracks if not t.is_drum])
    parts = [t for t in out.tracks if not t.is_drum]
    assert _key(np.concatenate([t.notes for t in parts])) == _key(pitched)
    assert [t.name for t in parts] == [p["name"] for p in model.metadata["parts"]]
    drums = [t for t in score.tracks if t.is_drum]  # drum tracks pass through as they were
    assert [_key(t.notes) for t in out.tracks if t.is_drum] == [_key(t.notes) for t in drums]
    assert out.resolution == score.resolution


def test_monophonic_parts_never_sound_two_notes_at_once():
    rng = np.random.default_rng(0)
    t = np.repeat(np.arange(40) * 24, 4)
    pitch = np.tile([48, 55, 64, 72], 40) + rng.integers(-2, 3, 160)
    score = Score(24, [Track("Piano", 0, notes=make_notes(t, pitch, 24))])
    for mode in ("online", "offline"):
        out = arrange(score, REGISTRY.find_arranger("satb", mode)).to_score()
        for track in out.tracks:
            assert len(set(track.notes["time"].tolist())) == len(track.notes), (mode, track.name)
            assert len(track.notes) == 40  # four voices, four parts: one note each per chord


@pytest.mark.parametrize("score,match", [
    (Score(24, []), "no notes"),
    (Score(24, [Track("Drums", 0, is_drum=True, notes=make_notes([0, 24], [36, 38], 12))]), "drum"),
])
def test_unusable_input_is_refused_with_a_reason(score, match):
    with pytest.raises(ArrangeInputError, match=match):
        arrange(score, REGISTRY.find_arranger("satb", "offline"))


def test_unknown_ensemble_or_mode_lists_what_exists():
    with pytest.raises(ValueError, match="available: .*satb"):
        REGISTRY.find_arranger("gamelan", "online")


def test_hints_parse_and_reject_bad_items():
    parts = ["Soprano", "Alto", "Tenor", "Bass"]
    hints = Hints.parse(["soprano:entry=4,pitch=72", "Bass:pitch=40"], parts)
    assert hints.entries_beats == {"Soprano": 4.0} and hints.pitches == {"Soprano": 72, "Bass": 40}
    for bad in ("Kazoo:entry=1", "Soprano", "Alto:entry=soon", "Alto:colour=red"):
        with pytest.raises(ArrangeInputError, match="hint"):
            Hints.parse([bad], parts)
    # the wire form (bridge.protocol's hints map) round-trips, and names a part the model lacks
    wire = hints.to_wire()
    assert wire == {"Soprano": {"entry_beats": 4.0, "pitch": 72}, "Bass": {"pitch": 40}}
    assert Hints.from_wire(wire, parts, "m") == hints
    with pytest.raises(ArrangeInputError, match="Trumpet.*its parts are Soprano"):
        Hints.from_wire({"Trumpet": {"pitch": 60}}, parts, "m")


def test_constraint_off_is_plain_argmax_and_keeps_notes():
    score = Score(24, [Track("Piano", 0, notes=make_notes(np.repeat([0, 24], 3), [50, 60, 70] * 2, 24))])
    out = arrange(score, REGISTRY.find_arranger("satb", "online"), ArrangeOptions(constrained=False))
    out = out.to_score()
    assert sum(len(t.notes) for t in out.tracks) == 6



@pytest.mark.parametrize("mode", ["offline", "online"])
def test_arrange_notes_stops_at_its_check_in_the_middle_of_decoding(mode):
    # `check` is the job's cancellation check: it runs once per chord (the online models'
    # step-wise decode included), so raising from it stops the arrangement there.
    from engine.tasks.arrange import arrange_notes
    from tests.models.arranger.test_decoding import Check

    notes = make_notes(np.arange(40) * 12, 48 + np.arange(40) % 24, 12, 80)  # 40 chords of one note
    model = REGISTRY.find_arranger("satb", mode)
    check = Check()
    arrange_notes(notes, 24, model, check=check)
    assert check.calls == 40, mode
    check = Check(stop_at=10)
    with pytest.raises(Check.Stop):
        arrange_notes(notes, 24, model, check=check)
    assert check.calls == 10
