"""Live arranging, chord by chord as a DAW plays, on the shipped online models."""
from __future__ import annotations

import json

import numpy as np
import pytest

from bridge.notation import read_notation
from bridge.score import Score, Track, make_notes
from engine.arrange import ArrangeInputError, arrange
from engine.live import LiveArranger
from engine.registry import Registry
from models import dataset as ds

REGISTRY = Registry()


def _held_out_piano(resolution: int = 480) -> Score:
    from music21 import corpus

    name = json.loads((ds.SPLITS_DIR / "bach.json").read_text())["test"][1]
    score = read_notation(corpus.getWork(name.removeprefix("bach/"))).with_resolution(resolution)
    notes, _ = score.merged()
    notes = np.unique(notes)  # one key cannot sound twice: voices in unison become one piano note
    return Score(resolution, [Track("Piano", 0, notes=notes)])


@pytest.mark.parametrize("ensemble", ["satb", "string_quartet"])
def test_chord_by_chord_equals_the_whole_region(ensemble):
    model = REGISTRY.find_arranger(ensemble, "online")
    piano = _held_out_piano()
    whole = arrange(piano, model)
    expected = {tuple(n): k for k, t in enumerate(whole.tracks) for n in t.notes.tolist()}
    live = LiveArranger(model, piano.resolution)
    notes = piano.tracks[0].notes
    got = {}
    for onset in np.unique(notes["time"]):
        chord = notes[notes["time"] == onset][::-1]  # any order within the chord
        for n, label in zip(chord.tolist(), live.push(chord)):
            got[tuple(n)] = int(label)
    assert got == expected


def test_live_refuses_offline_models_and_time_travel():
    with pytest.raises(ArrangeInputError, match="offline model"):
        LiveArranger(REGISTRY.find_arranger("satb", "offline"), 480)
    live = LiveArranger(REGISTRY.find_arranger("satb", "online"), 480)
    live.push(make_notes([960], [60], 480))
    with pytest.raises(ArrangeInputError, match="out of order"):
        live.push(make_notes([0], [62], 480))
    assert live.push(make_notes([960, 1440], [64, 65], 480)).shape == (2,)
