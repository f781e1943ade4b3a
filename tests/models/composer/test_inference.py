"""Sampling from an exported composer: streaming bars, determinism, modes, request errors."""
from __future__ import annotations

import numpy as np
import pytest

from bridge.score import make_notes
from models.composer.inference import Composer, ComposeRequest, parse_chords, parse_key


@pytest.fixture(scope="module")
def composer(tiny_composer_file):
    return Composer.load(tiny_composer_file)


def test_bars_stream_in_order_and_the_same_seed_gives_the_same_notes(composer):
    request = ComposeRequest(bars=3, chords="C G Am", key="C", seed=7)
    stream = composer.compose(request)
    first = next(stream)  # a generator: bar 0 arrives before the rest is written
    assert first.index == 0 and first.start_tick == 0
    rest = list(stream)
    assert [b.index for b in rest] == [1, 2] and rest[0].start_tick == 96
    again = list(composer.compose(request))
    for a, b in zip([first, *rest], again):
        np.testing.assert_array_equal(a.notes, b.notes)
        np.testing.assert_array_equal(a.track, b.track)
    other = list(composer.compose(ComposeRequest(bars=3, chords="C G Am", key="C", seed=8)))
    assert any(len(a.notes) != len(b.notes) or (a.notes != b.notes).any() for a, b in zip(again, other))


def test_accompaniment_keeps_the_given_track_note_for_note(composer):
    melody = make_notes([0, 24, 48, 72, 96, 144], [72, 74, 76, 77, 79, 77], [24, 24, 24, 24, 48, 48])
    score = composer.compose_score(ComposeRequest(bars=2, seed=3, given={"soprano": melody}))
    soprano = next(t for t in score.tracks if t.name == "soprano")
    for f in ("time", "pitch", "duration"):
        np.testing.assert_array_equal(soprano.notes[f], melody[f])
    assert [t.name for t in score.tracks] == ["soprano", "alto", "tenor", "bass"]


def test_compose_score_carries_the_request(composer):
    score = composer.compose_score(ComposeRequest(bars=1, meter=(3, 4), key="Am", qpm=90, seed=1,
                                                  instruments=("alto", "bass")))
    assert [t.name for t in score.tracks] == ["alto", "bass"]
    assert tuple(score.meters[0])[1:] == (3, 4) and score.qpm_at(0) == 90
    assert all(n["time"] < 72 for t in score.tracks for n in t.notes)


@pytest.mark.parametrize(("request_", "message"), [
    (ComposeRequest(bars=0), "bars must be 1..256"),
    (ComposeRequest(bars=10_000), "bars must be 1..256"),
    (ComposeRequest(instruments=("kazoo",)), "instrument 'kazoo' is not one this model writes"),
    (ComposeRequest(chords="C H7"), "unknown chord symbol 'H7'"),
    (ComposeRequest(key="X"), "key 'X' is not a key name"),
    (ComposeRequest(meter=(7, 16)), "meter 7/16 is not supported"),
    (ComposeRequest(top_p=0), "top_p must be in"),
    (ComposeRequest(harmony=-1), "harmony must be 0..10"),
    (ComposeRequest(harmony=11), "harmony must be 0..10"),
])
def test_bad_requests_are_sentences(composer, request_, message):
    with pytest.raises(ValueError, match=message):
        composer.plan(request_)


def test_keys_and_chords_parse():
    assert parse_key("C") == (0, 0) and parse_key("Am") == (0, 1) and parse_key("Bb") == (-2, 0)
    assert parse_key("F#m") == (3, 1)
    chords = parse_chords("C G7 | Am F/A", (4, 4), ["maj", "min", "dim", "aug", "7"])
    assert chords["time"].tolist() == [0, 48, 96, 144] and chords["bass"].tolist()[-1] == 9


def _chorale(composer, bars: int = 2) -> dict:
    score = composer.compose_score(ComposeRequest(bars=bars, seed=11))
    return {t.name: t.notes for t in score.tracks}


def test_continuation_keeps_the_prime_bars_and_writes_on(composer):
    prime = _chorale(composer)
    score = composer.compose_score(ComposeRequest(bars=3, seed=5, given=prime, given_bars=(0, 1)))
    for track in score.tracks:
        want = prime[track.name][prime[track.name]["time"] < 96]
        got = track.notes[track.notes["time"] < 96]
        np.testing.assert_array_equal(got[["time", "pitch", "duration"]], want[["time", "pitch", "duration"]])


def test_infilling_rewrites_only_the_chosen_cells(composer):
    original = _chorale(composer)
    score = composer.compose_score(ComposeRequest(bars=2, seed=6, given=original, infill={"alto": (1, 2)}))
    for track in score.tracks:
        keep = np.ones(len(original[track.name]), bool)
        mine = np.ones(len(track.notes), bool)
        if track.name == "alto":
            keep, mine = original["alto"]["time"] < 96, track.notes["time"] < 96
        want = original[track.name][keep][["time", "pitch"]]
        np.testing.assert_array_equal(track.notes[mine][["time", "pitch"]], want)


def test_an_infill_range_outside_the_request_is_a_sentence(composer):
    with pytest.raises(ValueError, match="infill of alto covers bars 3..4, outside the request's 0..1"):
        composer.plan(ComposeRequest(bars=2, given=_chorale(composer), infill={"alto": (3, 5)}))


def test_long_requests_slide_the_context_and_stay_valid(composer):
    from models.composer.grammar import OursGrammar, check_score

    request = ComposeRequest(bars=6, seed=2, temperature=1.3)
    plan = composer.plan(request)
    grammar = OursGrammar(composer.tok, plan)
    bars = list(composer._compose(request, plan, grammar))
    assert len(grammar.tokens) > composer.block_size  # the 96-token context slid at least once
    assert len(bars) == 6
    assert check_score(composer.tok.decode(grammar.tokens), plan, composer.tok.cfg.ranges) == []


def _chord_tone_share(score, progression: list[set[int]]) -> float:
    notes = np.concatenate([t.notes for t in score.tracks])
    return float(np.mean([int(n["pitch"]) % 12 in progression[int(n["time"]) // 96 % len(progression)]
                          for n in notes]))


def test_the_chords_of_the_bar_conditions_are_read_back(composer):
    plan = composer.plan(ComposeRequest(bars=2, chords="C G7", key="C"))
    tones = composer.chord_tones(plan)
    assert [[step for step, _ in bar] for bar in tones] == [[0], [0]]
    assert set(np.flatnonzero(tones[0][0][1].numpy())) == {0, 4, 7}
    assert set(np.flatnonzero(tones[1][0][1].numpy())) == {7, 11, 2, 5}


def test_harmony_pulls_written_notes_to_the_chord_tones(composer):
    progression = [{0, 4, 7}, {7, 11, 2}, {9, 0, 4}, {5, 9, 0}]
    shares = {h: _chord_tone_share(composer.compose_score(ComposeRequest(
        bars=4, chords="C G Am F", key="C", seed=1, harmony=h)), progression) for h in (0.0, 8.0)}
    assert shares[8.0] > 0.9 and shares[8.0] > shares[0.0]


def test_harmony_changes_nothing_where_no_chords_are_asked_for(composer):
    a, b = (composer.compose_score(ComposeRequest(bars=2, key="C", seed=4, harmony=h)) for h in (0.0, 8.0))
    for x, y in zip(a.tracks, b.tracks):
        np.testing.assert_array_equal(x.notes, y.notes)


def test_harmony_keeps_a_voice_off_the_pitch_another_starts_at_the_same_onset(composer):
    score = composer.compose_score(ComposeRequest(bars=4, chords="C G Am F", key="C", seed=5, harmony=8.0))
    starts = [(int(n["time"]), int(n["pitch"])) for t in score.tracks for n in t.notes]
    assert len(starts) > 8 and len(set(starts)) == len(starts)
