"""Export: TorchScript and .pt2 files reload, carry compose metadata, and step as eager does."""
from __future__ import annotations

import json

import pytest
import torch

from models.composer.export import Stepper, composer_metadata, export_composer
from models.format import load_for_inference, validate


@pytest.mark.parametrize("suffix", [".pt", ".pt2"])
def test_export_reloads_and_matches_eager(tmp_path, tiny_model, suffix):
    model, mcfg, tcfg = tiny_model
    meta = composer_metadata(mcfg, tcfg, "tiny", metrics={"nll_per_note": 1.0})
    path = export_composer(model, tmp_path / f"composer-tiny{suffix}", meta)
    module, got = load_for_inference(path)
    assert validate(got, path) == "" and got["task"] == "compose"
    assert got == json.loads(json.dumps(meta))
    k = torch.zeros(mcfg.n_layers, 1, mcfg.n_heads, mcfg.block_size, mcfg.d_model // mcfg.n_heads)
    idx = torch.tensor([[1, 3, 4, 5]])
    want = Stepper(model)(idx, torch.tensor(0), k, k.clone())
    logits, _, _ = module(idx, torch.tensor(0), k, k.clone())
    torch.testing.assert_close(logits, want[0], atol=1e-4, rtol=1e-4)


def test_compose_metadata_without_its_keys_is_refused(tiny_model):
    _, mcfg, tcfg = tiny_model
    meta = composer_metadata(mcfg, tcfg, "tiny")
    del meta["tokenizer"]
    assert validate(meta) == "compose model metadata lacks tokenizer"
