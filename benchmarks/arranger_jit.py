"""Why TorchScript can run an arranger's whole-piece forward slower than eager. Prints JSON.

    python -m benchmarks.arranger_jit [--models satb-online satb-offline] [--rounds 5]

Batch 1, one intra-op thread, the held-out Bach test pieces; in interleaved rounds (the variants
in a rotated order each round), notes/s of one pass over all pieces for:
- ``eager``: the PyTorch class with the file's weights;
- ``scripted``: ``load_scripted`` (the file as saved, not frozen);
- ``frozen``: ``load_frozen`` (what the engine runs: weights folded in as constants);
- ``frozen_no_opt``: the same frozen module under ``torch.jit.optimized_execution(False)`` (the
  profiling executor's specialisation and fusion passes off).
Also the cost of the first calls of a fresh frozen module on new sequence lengths (the profiling
executor records shapes and compiles a specialised graph) against its later calls.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.arranger_speed import SHIPPED, eager_twin
from benchmarks.protocol_rtt import run_info, spread
from models.arranger.inference import to_inputs
from models.arranger.model import ArrangerConfig
from models.data import corpus as ds
from models.format import load_frozen, load_scripted


@torch.no_grad()
def one_pass(fn, inputs: list[tuple], n: int) -> float:
    t0 = time.perf_counter()
    for x in inputs:
        fn(*x)
    return n / (time.perf_counter() - t0)


@torch.no_grad()
def first_calls_ms(path: Path, inputs: list[tuple]) -> dict:
    """Per-call ms of a freshly frozen module over the pieces, in order, twice."""
    module, _ = load_frozen(path)
    times = []
    for x in inputs + inputs:
        t0 = time.perf_counter()
        module(*x)
        times.append((time.perf_counter() - t0) * 1e3)
    k = len(inputs)
    return {"first_5_calls_ms": [round(t, 2) for t in times[:5]],
            "first_pass_total_ms": round(sum(times[:k]), 1), "second_pass_total_ms": round(sum(times[k:]), 1)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["satb-online", "satb-offline"])
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    info = run_info()
    torch.set_num_threads(1)
    pieces = ds.load("bach", "test")
    out = {**info, "torch": torch.__version__, "intra_op_threads": torch.get_num_threads(), "models": {}}
    for name in args.models:
        path = SHIPPED / f"arranger-{name}.pt"
        plain, meta = load_scripted(path)
        mcfg = ArrangerConfig.from_dict(meta["model"])
        inputs = [to_inputs(pc.notes, mcfg.features, mcfg.n_parts) for pc in pieces]
        n = sum(x[0].shape[1] for x in inputs)
        row = {"first_calls": first_calls_ms(path, inputs)}
        frozen, _ = load_frozen(path)
        eager = eager_twin(plain, meta)

        def no_opt(*x, _m=frozen):
            with torch.jit.optimized_execution(False):
                return _m(*x)

        variants = {"eager": eager, "scripted": plain, "frozen": frozen, "frozen_no_opt": no_opt}
        for fn in variants.values():  # warm-up: two passes (the profiling executor's runs)
            one_pass(fn, inputs, n)
            one_pass(fn, inputs, n)
        runs = {k: [] for k in variants}
        names = list(variants)
        for r in range(args.rounds):
            for k in names[r % len(names):] + names[:r % len(names)]:
                runs[k].append(one_pass(variants[k], inputs, n))
        row["notes_per_s"] = {k: spread(v, 0) for k, v in runs.items()}
        row["over_eager"] = {k: spread(np.array(v) / np.array(runs["eager"]), 3) for k, v in runs.items()}
        out["models"][name] = row
        print(json.dumps({name: row["over_eager"]}), flush=True, file=__import__("sys").stderr)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
