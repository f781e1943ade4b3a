"""The representation study's bench after a run restricted to some instruments (`study run
--instruments soprano,alto,tenor,bass`, as docs/representations.md reruns the multitrack table)."""
from __future__ import annotations

import json

import pytest

from models.composer import study
from models.composer.train import TrainConfig, train


@pytest.fixture(autouse=True)
def _needs_bach(chorales):
    return chorales


def test_bench_measures_a_study_run_restricted_to_some_instruments(tmp_path):
    # the bach set holds more instruments than the four voices (recorder, violin, ...): the bench
    # must count tokens per bar on the tracks the run kept, as its training and validation did
    tiny = dict(data="bach", d_model=32, n_layers=1, n_heads=2, block_size=64, batch_size=2,
                limit_train=3, limit_valid=2, warmup_steps=2, eval_every=2, threads=1)
    result = train(TrainConfig(**tiny, rep="ours", out=str(tmp_path / "ours"), max_steps=2,
                               instruments="soprano,alto,tenor,bass"), progress=False)
    (tmp_path / "study.json").write_text(json.dumps({"ours": {"tokens_per_note": 3.7,
                                                              "steps": result["steps"]}}))
    bench = study.bench(tmp_path, n_new=8)
    assert bench["speedup"] > 0
    row = json.loads((tmp_path / "study.json").read_text())["ours"]
    assert 20 < row["tokens_per_bar"] < 200 and row["decode_tok_s"] > 0
