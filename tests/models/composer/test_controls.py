"""Per-track controls (density, polyphony, rhythm, range) and the tokens behind them: a tiny untrained
composer with DENSITY tokens must obey every control, because the grammar holds it to them."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bridge.score import make_notes
from models.composer.inference import Composer, ComposeRequest
from models.composer.representations import make_tokenizer
from models.composer.tokens import TokenizerConfig, density_bounds, density_bucket

INSTRUMENTS = ["soprano", "alto", "tenor", "bass"]


@pytest.fixture(scope="module")
def composer(tiny_controls_file):
    return Composer.load(tiny_controls_file)


def test_density_tokens_and_repeated_conditions_round_trip(chorales):
    plain = make_tokenizer(TokenizerConfig.for_instruments("ours", INSTRUMENTS))
    tok = make_tokenizer(TokenizerConfig.for_instruments("ours", INSTRUMENTS, True, True))
    assert tok.vocab.names[:len(plain)] == plain.vocab.names  # an old model's ids are unchanged
    v = tok.vocab
    for piece in chorales[:4]:
        ids = tok.encode(piece)
        decoded, before = tok.decode(ids), plain.decode(plain.encode(piece))
        np.testing.assert_array_equal(decoded.notes, before.notes)
        names = [v.names[i] for i in ids]
        bars = names.count("BAR")
        assert names.count("METER_4/4") + names.count("METER_3/4") == bars  # the meter in every bar
        # each TRACK is followed by the bucket of that track bar's note count
        for k, name in enumerate(names):
            if name.startswith("TRACK_"):
                n, j = 0, k + 2
                while j < len(names) and not names[j].startswith(("TRACK_", "BAR", "EOS")):
                    n += names[j].startswith("DUR_")
                    j += 1
                assert names[k + 1] == f"DENSITY_{density_bounds(density_bucket(n))[0]}"
        assert tok.count_notes(ids) == len(decoded.notes)


def test_density_rhythm_polyphony_and_range_are_obeyed(composer):
    for seed in range(4):
        request = ComposeRequest(bars=3, meter=(4, 4), seed=seed, density={"alto": 3, "bass": 8},
                                 rhythm={"alto": "moderate", "tenor": "plain"},
                                 ranges={"soprano": (65, 72)}, chords="C F G")
        score = composer.compose_score(request)
        notes = {t.name: t.notes for t in score.tracks}
        for name, n in (("alto", 3), ("bass", 8)):
            per_bar = np.bincount(notes[name]["time"] // 96, minlength=3)
            low, high = density_bounds(density_bucket(n))
            assert ((per_bar >= low) & (per_bar <= high)).all(), (name, per_bar)
        assert (notes["alto"]["time"] % 12 == 0).all() and (notes["tenor"]["time"] % 24 == 0).all()
        p = notes["soprano"]["pitch"]
        assert ((p >= 65) & (p <= 72)).all()


def test_polyphony_control_caps_notes_starting_together(tiny_composer_file):
    import json

    from models.format import load_scripted

    _, meta = load_scripted(tiny_composer_file)
    meta = json.loads(json.dumps(meta))
    meta["monophonic"] = []  # let every voice stack notes, then cap one of them
    free = Composer(Composer.load(tiny_composer_file).module, meta)
    torch.manual_seed(0)
    capped = free.compose_score(ComposeRequest(bars=2, seed=1, polyphony={"tenor": 2}))
    tenor = next(t for t in capped.tracks if t.name == "tenor").notes
    assert np.bincount(tenor["time"]).max() <= 2


def test_register_target_pulls_the_mean_pitch(composer):
    """A soft pull: seed for seed, the tenor's mean pitch is lower with a low target than with none and
    higher with a high one, and nearer each target than without it."""
    low, high = composer.tok.cfg.ranges[composer.instruments.index("tenor")]
    means = {}
    for seed in range(4):
        for target in (None, low + 5, high - 5):
            request = ComposeRequest(bars=3, seed=seed, instruments=("tenor", "bass"),
                                     register={} if target is None else {"tenor": target})
            tenor = next(t for t in composer.compose_score(request).tracks if t.name == "tenor").notes
            means[seed, target] = float(tenor["pitch"].mean())
        free = means[seed, None]
        assert means[seed, low + 5] < free < means[seed, high - 5], means
        assert abs(means[seed, low + 5] - (low + 5)) < abs(free - (low + 5))
        assert abs(means[seed, high - 5] - (high - 5)) < abs(free - (high - 5))


def test_given_cells_carry_their_density_and_stay_note_for_note(composer):
    melody = make_notes([0, 24, 48, 72, 96, 144], [72, 74, 76, 77, 79, 77], [24, 24, 24, 24, 48, 48])
    score = composer.compose_score(ComposeRequest(bars=2, seed=3, given={"soprano": melody},
                                                  density={"alto": 2}))
    soprano = next(t for t in score.tracks if t.name == "soprano")
    for f in ("time", "pitch", "duration"):
        np.testing.assert_array_equal(soprano.notes[f], melody[f])


@pytest.mark.parametrize(("fields", "message"), [
    ({"density": {"alto": 99}}, "density of alto must be 0..64"),
    ({"density": {"kazoo": 2}}, "instrument 'kazoo' is not one this model writes"),
    ({"polyphony": {"alto": 0}}, "polyphony of alto must be 1..16"),
    ({"rhythm": {"alto": "wild"}}, "rhythm of alto must be one of plain, moderate, busy"),
    ({"register": {"alto": [60, 62, 64]}}, "register of alto lists 3 pitches for 2 bars"),
    ({"register": {"alto": 200}}, "register of alto must be MIDI pitches"),
])
def test_bad_controls_are_sentences(composer, fields, message):
    with pytest.raises(ValueError, match=message):
        composer.plan(ComposeRequest(bars=2, **fields))


def test_a_model_without_density_tokens_says_so(tiny_composer_file):
    with pytest.raises(ValueError, match="no density control"):
        Composer.load(tiny_composer_file).plan(ComposeRequest(bars=2, density={"alto": 2}))


def test_load_eager_matches_the_exported_step(tiny_controls_file):
    from models.composer.export import load_eager

    model, tcfg, meta = load_eager(tiny_controls_file)
    assert tcfg.density and meta["task"] == "compose"
    exported = Composer.load(tiny_controls_file)
    idx = torch.randint(0, model.cfg.vocab_size, (1, 9), generator=torch.Generator().manual_seed(0))
    k, v = torch.zeros(exported.cache_shape), torch.zeros(exported.cache_shape)
    logits, _, _ = exported.module(idx, torch.tensor(0), k, v)
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[0, -1], logits[0], atol=1e-4, rtol=1e-4)
