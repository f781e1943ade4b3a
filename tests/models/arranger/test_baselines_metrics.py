from __future__ import annotations

import numpy as np

from bridge.score import make_notes
from models.arranger import decoding
from models.arranger.baselines import ClosestPitch, MostCommon, ZoneBased
from models.arranger.metrics import EVAL_NOTES, Scores, soundness_completeness
from models.data.corpus import Piece


def _two_voice_piece(n=40):
    t = np.repeat(np.arange(n) * 24, 2)
    pitch = np.tile([48, 72], n) + np.repeat(np.arange(n) % 3, 2)
    notes = make_notes(t, pitch, 24)
    return Piece("x", "train", notes, np.tile([1, 0], n), 1.0)


def test_baselines_separate_two_distant_voices():
    piece = _two_voice_piece()
    for b in (ZoneBased(), ClosestPitch(), ClosestPitch(mono=True)):
        pred = b.fit([piece]).predict(piece.notes)
        assert (pred == piece.labels).all(), b.name
    assert (MostCommon().fit([piece]).predict(piece.notes) == 0).all()


def test_soundness_completeness():
    true = np.array([0, 0, 1, 1])
    assert soundness_completeness(true, true) == (1.0, 1.0)
    # everything in one part: complete but not sound
    s, c = soundness_completeness(np.zeros(4, int), true)
    assert c == 1.0 and s < 1.0


def test_scores_use_first_2000_notes_and_micro_average():
    s = Scores(2)
    s.add(np.zeros(3000, int), np.zeros(3000, int))
    s.add(np.ones(10, int), np.zeros(10, int))
    out = s.summary()
    assert out["notes"] == EVAL_NOTES + 10
    assert abs(out["accuracy"] - EVAL_NOTES / (EVAL_NOTES + 10)) < 1e-12


def test_decoders_keep_monophonic_parts_monophonic():
    rng = np.random.default_rng(1)
    notes = make_notes(np.repeat(np.arange(30) * 24, 3), rng.integers(40, 80, 90), 24)
    order = np.lexsort((notes["duration"], notes["pitch"], notes["time"]))
    notes = notes[order]
    logp = np.log(np.full((90, 4), 0.25)) + rng.normal(0, 1, (90, 4))
    logp[:, 0] += 5  # the model loves part 0; the decoders must still spread each chord
    for name in ("notewise", "chordwise", "chordwise-ordered"):
        labels = decoding.DECODERS[name](notes, logp)
        for k in range(4):
            t = notes["time"][labels == k]
            assert len(t) == len(set(t.tolist())), name  # never two notes at once in a part
        if name.endswith("ordered"):  # higher notes of a chord take higher (lower-index) parts
            for t in np.unique(notes["time"]):
                chord = labels[notes["time"] == t]
                assert (np.diff(chord) < 0).all(), (name, chord)
    assert (decoding.argmax(notes, logp) == 0).mean() > 0.9


def test_chordwise_decoding_is_causal_in_time():
    rng = np.random.default_rng(2)
    notes = make_notes(np.repeat(np.arange(20) * 24, 3), rng.integers(40, 80, 60), 24)
    notes = notes[np.lexsort((notes["duration"], notes["pitch"], notes["time"]))]
    logp = rng.normal(0, 1, (60, 4))
    changed = logp.copy()
    changed[30:] = rng.normal(0, 1, (30, 4))  # everything from chord 10 on
    for name in ("notewise", "chordwise", "chordwise-ordered"):
        a, b = decoding.DECODERS[name](notes, logp), decoding.DECODERS[name](notes, changed)
        assert (a[:30] == b[:30]).all(), name
