"""Live arranging, chord by chord as a DAW plays, on the shipped online models."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bridge.notation import read_notation
from bridge.score import Score, Track, make_notes
from engine.registry import Registry
from engine.tasks.arrange import ArrangeInputError, arrange
from engine.tasks.live_arrange import LiveArranger
from models.data.splits import SPLITS_DIR

REGISTRY = Registry()


def _held_out_piano(resolution: int = 480) -> Score:
    from music21 import corpus

    name = json.loads((SPLITS_DIR / "bach.json").read_text())["test"][1]
    score = read_notation(corpus.getWork(name.removeprefix("bach/"))).with_resolution(resolution)
    notes, _ = score.merged()
    notes = np.unique(notes)  # one key cannot sound twice: voices in unison become one piano note
    return Score(resolution, [Track("Piano", 0, notes=notes)])


@pytest.mark.parametrize("ensemble", ["satb", "string_quartet"])
def test_chord_by_chord_equals_the_whole_region(ensemble):
    model = REGISTRY.find_arranger(ensemble, "online")
    piano = _held_out_piano()
    whole = arrange(piano, model).to_score()
    expected = {tuple(n): k for k, t in enumerate(whole.tracks) for n in t.notes.tolist()}
    live = LiveArranger(model, piano.resolution)
    notes = piano.tracks[0].notes
    got = {}
    for onset in np.unique(notes["time"]):
        chord = notes[notes["time"] == onset][::-1]  # any order within the chord
        for n, label in zip(chord.tolist(), live.push(chord)):
            got[tuple(n)] = int(label)
    assert got == expected


@pytest.mark.parametrize("ensemble", ["satb", "string_quartet"])
def test_a_reset_session_arranges_like_a_new_one(ensemble):
    # The engine reuses evicted sessions: after reset, nothing of the old piece may leak into the new
    # one (parts busy, held notes, entries, LSTM state, another resolution or hints).
    from engine.tasks.arrange import ArrangeOptions, Hints

    model = REGISTRY.find_arranger(ensemble, "online")
    notes = _held_out_piano(resolution=24).tracks[0].notes
    hints = Hints(pitches={model.metadata["parts"][0]["name"]: 40})
    reused = LiveArranger(model, 480, ArrangeOptions(hints=hints))
    reused.push(make_notes([960, 960, 1440], [50, 62, 70], 0))  # held notes, never released
    reused.reset(24)
    fresh = LiveArranger(model, 24)
    for onset in np.unique(notes["time"]):
        chord = notes[notes["time"] == onset]
        assert reused.push(chord).tolist() == fresh.push(chord).tolist(), f"tick {onset}"
        # the whole state, not just the labels (a stale LSTM state can still pick the same parts)
        a, b = reused.decoder, fresh.decoder
        assert torch.equal(a.h, b.h) and torch.equal(a.c, b.c), f"tick {onset}"
    assert torch.equal(reused.decoder.pitch_hints, fresh.decoder.pitch_hints)
    assert np.array_equal(reused.entries, fresh.entries) and reused.last_onset == fresh.last_onset
    assert np.array_equal(reused.decoder.parts.busy_until, fresh.decoder.parts.busy_until)
    for name in ("end", "onset", "pitch"):
        assert np.array_equal(getattr(reused.decoder.tracker, name), getattr(fresh.decoder.tracker, name))
    assert reused.holding == fresh.holding and reused.ends == fresh.ends
    with pytest.raises(ArrangeInputError, match="resolution"):
        reused.reset(0)


def test_live_refuses_offline_models_and_time_travel():
    with pytest.raises(ArrangeInputError, match="offline model"):
        LiveArranger(REGISTRY.find_arranger("satb", "offline"), 480)
    live = LiveArranger(REGISTRY.find_arranger("satb", "online"), 480)
    live.push(make_notes([960], [60], 480))
    with pytest.raises(ArrangeInputError, match="out of order"):
        live.push(make_notes([0], [62], 480))
    assert live.push(make_notes([960, 1440], [64, 65], 480)).shape == (2,)


def test_held_notes_and_releases_place_notes_like_known_durations():
    """As a DAW plays, a note's length is unknown at its note-on: sent with duration 0 and released
    later, every note gets the part it gets when its duration is known up front (all notes last a
    beat here, the length the model reads for an open note)."""
    model = REGISTRY.find_arranger("satb", "online")
    notes = _held_out_piano().tracks[0].notes.copy()
    notes["duration"] = 480
    by_key = np.lexsort((notes["time"], notes["pitch"]))  # one key cannot be struck while it sounds:
    notes = notes[by_key]                                 # drop notes that restrike a sounding key
    restrike = (notes["pitch"][1:] == notes["pitch"][:-1]) & (notes["time"][1:] < notes["time"][:-1] + 480)
    notes = np.sort(notes[np.concatenate([[True], ~restrike])], order=["time", "pitch"])
    assert len(notes) > 100
    known, played = LiveArranger(model, 480), LiveArranger(model, 480)
    open_notes = notes.copy()
    open_notes["duration"] = 0
    releases = np.stack([notes["time"] + 480, notes["pitch"], np.zeros(len(notes), np.int64)], 1)
    onsets = np.unique(notes["time"])
    with_chord = np.searchsorted(onsets, releases[:, 0], side="left")  # sent with the next chord
    for k, onset in enumerate(onsets):
        at = notes["time"] == onset
        labels = played.push(open_notes[at], releases[with_chord == k])
        assert known.push(notes[at]).tolist() == labels.tolist(), f"tick {onset}"
    assert set(played.holding) == set(notes["pitch"][with_chord == len(onsets)].tolist())  # not released


def test_a_held_note_keeps_its_part_busy_until_released():
    live = LiveArranger(REGISTRY.find_arranger("satb", "online"), 480)
    (part,) = live.push(make_notes([0], [40], 0))  # a low note, held
    assert live.decoder.parts.busy_until[part] > 10**12
    live.push(make_notes([960], [72], 480), releases=np.array([[480, 40, 0]]))  # released at beat 2
    assert live.decoder.parts.busy_until[part] == 24  # beat 2 in the model's 24 ticks per quarter
    assert 40 not in live.holding
    live.push(make_notes([1920], [60], 480), releases=np.array([[1900, 99, 0]]))  # unknown: ignored
