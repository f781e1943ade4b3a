"""Grammar and range masks: an untrained model sampled under them always writes a valid score."""
from __future__ import annotations

import numpy as np
import pytest

from bridge.score import make_notes
from models.composer.export import composer_metadata
from models.composer.grammar import OursGrammar, Plan, check_score
from models.composer.inference import Composer, ComposeRequest


@pytest.fixture(scope="module")
def eager(tiny_model):
    from models.composer.export import Stepper

    model, mcfg, tcfg = tiny_model
    return Composer(Stepper(model), composer_metadata(mcfg, tcfg, "tiny"))


@pytest.mark.parametrize("seed", range(24))
def test_every_sample_of_an_untrained_model_is_a_valid_score(eager, seed):
    request = ComposeRequest(bars=2, chords="C G7", key="C", seed=seed, temperature=1.5, top_p=1.0,
                             instruments=("soprano", "bass") if seed % 2 else None,
                             ranges={"soprano": (64, 72)} if seed % 3 == 0 else {})
    plan = eager.plan(request)
    grammar = OursGrammar(eager.tok, plan)
    bars = list(eager._compose(request, plan, grammar))
    assert [b.index for b in bars] == [0, 1]
    tokens = grammar.tokens
    decoded = eager.tok.decode(tokens)
    assert check_score(decoded, plan, eager.tok.cfg.ranges) == []
    assert sum(len(b.notes) for b in bars) == len(decoded.notes)
    if request.instruments:
        assert set(decoded.track.tolist()) <= {0, 3}


def test_voices_sound_one_note_per_onset(eager):
    score = eager.compose_score(ComposeRequest(bars=2, seed=4, temperature=2.0))
    for track in score.tracks:
        assert len(np.unique(track.notes["time"])) == len(track.notes)


def test_a_token_outside_the_mask_is_refused(eager):
    plan = eager.plan(ComposeRequest(bars=1))
    grammar = OursGrammar(eager.tok, plan)
    with pytest.raises(ValueError, match="not allowed"):
        grammar.advance(eager.tok.vocab.id("EOS"))


def test_check_score_names_the_problem(eager):
    plan = eager.plan(ComposeRequest(bars=1, instruments=("bass",)))
    from models.composer.tokens import TokenScore

    bad = TokenScore(make_notes([0], [90], [24]), np.array([3], np.int16), eager.instruments,
                     np.array([0]))
    assert any("leaves its range" in p for p in check_score(bad, plan, eager.tok.cfg.ranges))
    assert Plan([3], [[1]], [32]).n_bars == 1
