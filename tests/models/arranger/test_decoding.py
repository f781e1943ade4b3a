"""Playable decoding: ranges, notes at once, the policy for what no part can take, and melodies
kept in one part. Synthetic log-probabilities where a property is exact; a real rag at the end."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bridge.score import make_notes, sort_order
from models.arranger import decoding
from models.arranger.decoding import DIVISI, EXTRA, OUT_OF_RANGE, PLAYABLE, PartLimits, playability
from models.ensembles import ENSEMBLES

SATB = PartLimits.of(ENSEMBLES["satb"].parts)


def _sorted(notes):
    return notes[sort_order(notes)]


def test_a_note_goes_to_a_part_that_has_it_in_range():
    notes = make_notes([0, 24, 48], [40, 84, 62], 24)  # bass-only, above every part, anywhere
    logp = np.log(np.full((3, 4), 0.25))
    logp[:, 0] += 3  # the model wants the soprano for everything
    for name in ("notewise", "chordwise", "chordwise-ordered"):
        labels = decoding.DECODERS[name](notes, logp, SATB)
        assert labels[0] == 3, name  # only the bass has MIDI 40
        assert labels[1] == 0, name  # out of every range: the nearest, the soprano (top A5 = 81)
    flags = playability(notes, decoding.chordwise(notes, logp, SATB), SATB)
    assert flags.tolist() == [PLAYABLE, OUT_OF_RANGE, PLAYABLE]


def test_a_chord_with_more_notes_than_parts_is_a_marked_divisi_and_nothing_is_dropped():
    notes = _sorted(make_notes([0] * 6, [43, 50, 57, 62, 67, 72], 24))
    logp = np.random.default_rng(0).normal(0, 1, (6, 4))
    labels = decoding.chordwise(notes, logp, SATB)
    assert len(labels) == 6 and set(labels.tolist()) == {0, 1, 2, 3}
    flags = playability(notes, labels, SATB)
    assert (flags == DIVISI).sum() == 2 and (flags == OUT_OF_RANGE).sum() == 0
    for k in range(4):  # every divisi note is in range of its part
        part = ENSEMBLES["satb"].parts[k]
        assert all(part.plays(int(p)) for p in notes["pitch"][labels == k])


def test_keep_extras_sends_what_no_part_can_take_to_the_keyboard_part():
    limits = PartLimits.of(ENSEMBLES["satb"].parts, keep_extras=True)
    notes = _sorted(make_notes([0] * 6 + [24], [43, 50, 57, 62, 67, 72, 100], 24))
    labels = decoding.chordwise(notes, np.zeros((7, 4)), limits)
    assert (labels == 4).sum() == 3  # two beyond four parts, and MIDI 100
    flags = playability(notes, labels, limits)
    assert (flags == EXTRA).sum() == 3 and (flags[labels < 4] == PLAYABLE).all()


def test_a_part_plays_as_many_notes_at_once_as_it_can():
    parts = ENSEMBLES["piano_quartet"].parts  # the piano takes up to ten
    limits = PartLimits.of(parts)
    notes = _sorted(make_notes([0] * 8, [36, 40, 43, 48, 52, 55, 60, 64], 24))
    logp = np.full((8, 4), -5.0)
    logp[:, 3] = 0.0  # the model wants the piano for all
    labels = decoding.chordwise(notes, logp, limits)
    flags = playability(notes, labels, limits)
    assert (labels == 3).sum() >= 5 and (flags == PLAYABLE).all()


def test_a_melody_stays_in_one_part_unless_its_range_forces_a_change():
    rng = np.random.default_rng(3)
    pitch = rng.integers(62, 72, 40)  # in range of soprano, alto and tenor
    notes = make_notes(np.arange(40) * 24, pitch, 24)
    logp = rng.normal(0, 1, (40, 4))  # a model that cannot make up its mind
    for decode in (decoding.notewise, decoding.chordwise):  # causal: the first note's part keeps it
        assert len(set(decode(notes, logp, SATB).tolist())) == 1
    notes["pitch"][20:] = 78  # above the alto and tenor: the stretch moves at most once
    labels = decoding.chordwise(notes, decoding.prefer_one_part(notes, logp, SATB), SATB)
    assert (labels == 0).all()  # offline: the part whose range holds the whole tune


def test_without_limits_decoders_behave_as_before():
    rng = np.random.default_rng(1)
    notes = _sorted(make_notes(np.repeat(np.arange(30) * 24, 3), rng.integers(40, 80, 90), 24))
    logp = rng.normal(0, 1, (90, 4))
    for name in ("notewise", "chordwise"):
        labels = decoding.DECODERS[name](notes, logp)
        for k in range(4):
            t = notes["time"][labels == k]
            assert len(t) == len(set(t.tolist()))


def test_maple_leaf_rag_for_satb_every_note_kept_and_out_of_range_only_when_no_part_has_it():
    from music21 import corpus

    from bridge.scorefile import read_score
    from engine.registry import Registry
    from engine.tasks.arrange import arrange

    score = read_score(str(corpus.getWork("joplin/maple_leaf_rag.mxl")))
    out = arrange(score, Registry().find_arranger("satb", "offline"))
    flags = out.flags()
    assert len(out.labels) == score.n_notes
    outside = out.notes["pitch"][flags == OUT_OF_RANGE]
    assert ((outside < 36) | (outside > 81)).all()  # in nobody's range


def test_the_assignment_solver_is_scipys_without_importing_scipy_optimize():
    import subprocess
    import sys

    code = ("from models.arranger.decoding import linear_sum_assignment as f; import sys; f();"
            "print('scipy.optimize' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[3])
    assert done.stdout.strip() == "False"
    from scipy.optimize import linear_sum_assignment as scipys

    solve, rng = decoding.linear_sum_assignment(), np.random.default_rng(0)
    for trial in range(500):  # random costs, and the decoder's kind: k notes x k slots per part, ties
        k, parts = rng.integers(1, 9, size=2)
        cost = rng.normal(size=(k, k * parts))
        if trial % 2:
            cost = np.repeat(rng.normal(size=(k, 1, parts)), k, axis=1).reshape(k, k * parts)
            cost += 30.0 * (rng.random(cost.shape) < 0.3)
        got, want = solve(cost), scipys(cost)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])



class Check:
    """A cancellation check that counts its calls and raises ``Stop`` at call ``stop_at``."""

    class Stop(Exception):
        pass

    def __init__(self, stop_at: int = 0) -> None:
        self.calls, self.stop_at = 0, stop_at

    def __call__(self) -> None:
        self.calls += 1
        if self.calls == self.stop_at:
            raise Check.Stop


def test_every_decoder_calls_its_check_before_each_chord_and_stops_when_it_raises():
    # The engine passes its job's cancellation check: a cancel stops a long decode within a chord.
    notes = _sorted(make_notes([0, 0, 24, 48, 48, 72], [48, 60, 62, 50, 64, 65], 24))  # 4 chords
    logp = np.log(np.full((6, 4), 0.25))
    for name, calls in (("notewise", 6), ("chordwise", 4), ("chordwise-ordered", 4)):
        check = Check()
        decoding.DECODERS[name](notes, logp, SATB, check=check)
        assert check.calls == calls, name
        check = Check(stop_at=2)
        with pytest.raises(Check.Stop):
            decoding.DECODERS[name](notes, logp, SATB, check=check)
