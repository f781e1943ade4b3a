"""The decoder: the KV-cache step equals the full forward; cached and plain generation agree."""
from __future__ import annotations

import torch

from models.composer.model import Composer, ComposerConfig, generate_cached, generate_plain


def _tiny(**kw) -> Composer:
    torch.manual_seed(0)
    cfg = ComposerConfig(vocab_size=50, block_size=32, n_layers=2, n_heads=2, d_model=32, dropout=0.0,
                         factor_sizes=(5,), **kw)
    return Composer(cfg, torch.randint(0, 5, (1, 50))).eval()


def test_cached_steps_equal_the_full_forward():
    model = _tiny()
    idx = torch.randint(0, 50, (1, 20))
    full = model(idx)  # (1, 20, V)
    k, v = model.empty_cache(1)
    logits, k, v = model.step(idx[:, :8], torch.tensor(0), k, v)  # a prompt of 8
    torch.testing.assert_close(logits, full[:, 7], atol=1e-5, rtol=1e-4)
    for t in range(8, 20):
        logits, k, v = model.step(idx[:, t:t + 1], torch.tensor(t), k, v)
        torch.testing.assert_close(logits, full[:, t], atol=1e-5, rtol=1e-4)


def test_cached_and_plain_generation_sample_the_same_tokens():
    model = _tiny()
    idx = torch.tensor([[1, 2, 3]])
    a = generate_cached(model, idx, 20, generator=torch.Generator().manual_seed(3))
    b = generate_plain(model, idx, 20, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_the_benchmark_config_has_about_4m_parameters():
    from models.composer.study import BENCH

    n = Composer(ComposerConfig(vocab_size=630, **BENCH)).n_params()
    assert 3.5e6 < n < 4.5e6


def test_config_errors_name_the_field():
    import pytest

    with pytest.raises(ValueError, match="d_model"):
        ComposerConfig(vocab_size=10, d_model=30, n_heads=4)


def test_without_own_pitch_rows_a_pitch_token_is_its_factors_alone():
    ids = torch.tensor([[0, 1, 2, 1, 0], [0, 1, 1, 2, 0]])  # pitch factor, instrument factor; token 0, 4 none
    shared = Composer(ComposerConfig(vocab_size=5, block_size=8, n_layers=1, n_heads=2, d_model=8,
                                     factor_sizes=(3, 3), own_pitch_rows=False), ids)
    w = shared.embedding()
    factors = shared.factors[0].weight[ids[0]] + shared.factors[1].weight[ids[1]]
    torch.testing.assert_close(w[1:4], factors[1:4])  # pitch tokens: no row of their own
    torch.testing.assert_close(w[[0, 4]], shared.tok.weight[[0, 4]] + factors[[0, 4]])
    own = Composer(ComposerConfig(vocab_size=5, block_size=8, n_layers=1, n_heads=2, d_model=8,
                                  factor_sizes=(3, 3)), ids)
    assert not torch.allclose(own.embedding()[1:4], own.factors[0].weight[ids[0, 1:4]]
                              + own.factors[1].weight[ids[1, 1:4]])
