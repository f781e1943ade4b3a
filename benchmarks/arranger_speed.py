"""Arranger speed: the exported TorchScript model against the same model in eager PyTorch, in the
same process, on one intra-op thread.

- offline throughput, batch 1: notes/s over whole held-out pieces;
- offline throughput, 2 workers: whole pieces at batch 1 on two worker threads (the engine's
  scheduler on both cores): ``offline_2_workers_notes_per_s``;
- offline throughput, padded one batch: all pieces padded to the longest into one batch, one
  thread (causal models only: padding at the end cannot change a causal model's outputs):
  ``offline_padded_one_batch_notes_per_s``, with the padding factor (padded steps / real notes)
  and the rate counting padded steps too, which says whether padding is what it loses; and the
  same pieces sorted by length into batches of 8 (``offline_length_buckets_of_8_notes_per_s``);
- online latency: one note in, one label out, the LSTM state carried (``step``), p50/p99 in ms.

    python -m benchmarks.arranger_speed --data bach --json benchmarks/arranger_speed_bach.json
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.protocol_rtt import run_info
from models.arranger.inference import to_inputs
from models.arranger.model import Arranger, ArrangerConfig
from models.data import RESOLUTION
from models.data import corpus as ds
from models.format import load_for_inference, load_scripted

SHIPPED = Path(__file__).resolve().parent.parent / "models" / "pretrained"


def eager_twin(module, meta: dict) -> Arranger:
    """The eager model with the exported file's weights."""
    model = Arranger(ArrangerConfig.from_dict(meta["model"]))
    # a scripted module lists non-persistent buffers in its state_dict too; the eager one rebuilds them
    state = {k: v for k, v in module.state_dict().items() if k not in ("step_w", "step_b")}
    model.load_state_dict(state)
    return model.prepare_for_export()


@torch.no_grad()
def offline_notes_per_s(fn, inputs: list[tuple], repeats: int, n: int | None = None) -> float:
    """Real notes per second (``n`` excludes padding when given), best of ``repeats``."""
    n = n or sum(x[0].shape[1] for x in inputs)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for x in inputs:
            fn(*x)
        best = min(best, time.perf_counter() - t0)
    return n / best


@torch.no_grad()
def paired_notes_per_s(fns: dict, inputs: list[tuple], repeats: int, n: int | None = None) -> dict:
    """One pass over ``inputs`` per variant per round, the variants in a rotated order each round
    (a burst of load from other processes hits both alike): best notes/s per variant, as before,
    and the median over rounds of the first variant's rate over the second's."""
    names = list(fns)
    runs = {k: [] for k in names}
    for r in range(repeats):
        for k in names[r % len(names):] + names[:r % len(names)]:
            runs[k].append(offline_notes_per_s(fns[k], inputs, 1, n))
    out = {k: max(v) for k, v in runs.items()}
    ratios = np.array(runs[names[0]]) / np.array(runs[names[1]])
    out[f"{names[0]}_over_{names[1]}"] = {"median": round(float(np.median(ratios)), 3),
                                          "min": round(float(ratios.min()), 3),
                                          "max": round(float(ratios.max()), 3), "rounds": repeats}
    return out


@torch.no_grad()
def step_latency_ms(model, x: tuple, n: int) -> tuple[float, float]:
    h, c = model.initial_state()
    times = []
    for i in range(n):
        xi = (x[0][:, i:i + 1], x[1][:, i:i + 1], x[2], x[3][:, i:i + 1])
        t0 = time.perf_counter()
        _, h, c = model.step(*xi, h, c)
        times.append(time.perf_counter() - t0)
    ms = np.array(times[20:]) * 1e3  # the first calls include TorchScript's profiling runs
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def two_workers_notes_per_s(fn, inputs: list[tuple], repeats: int) -> float:
    """Whole pieces shared by two worker threads of one intra-op thread each: the engine's
    scheduler on a 2-core machine (TorchScript and PyTorch ops release the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    n = sum(x[0].shape[1] for x in inputs)
    order = sorted(inputs, key=lambda x: -x[0].shape[1])  # longest first balances the two queues

    def run(x):
        with torch.no_grad():
            fn(*x)

    best = float("inf")
    with ThreadPoolExecutor(2, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        for _ in range(repeats):
            t0 = time.perf_counter()
            list(pool.map(run, order))
            best = min(best, time.perf_counter() - t0)
    return n / best


def live_latency_ms(path: Path, pieces: list[ds.Piece]) -> dict:
    """The engine's live path: ``LiveArranger.push`` of one chord (features, one model step per
    note, chordwise decoding), as a DAW session would call it."""
    from engine.registry import Registry
    from engine.tasks.live_arrange import LiveArranger

    entry = next(e for e in Registry([path.parent]).entries if e.path == path)
    times, sizes = [], []
    for piece in pieces:
        live = LiveArranger(entry, RESOLUTION)
        notes = piece.notes
        for onset in np.unique(notes["time"]):
            chord = notes[notes["time"] == onset]
            t0 = time.perf_counter()
            live.push(chord)
            times.append(time.perf_counter() - t0)
            sizes.append(len(chord))
    ms = np.array(times[20:]) * 1e3
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
            "notes_per_chord": float(np.mean(sizes))}


def batch_inputs(inputs: list[tuple]) -> tuple:
    T = max(x[0].shape[1] for x in inputs)

    def pad(a):
        shape = list(a.shape)
        shape[1] = T - a.shape[1]
        return torch.cat([a, torch.zeros(shape, dtype=a.dtype)], 1)

    return tuple(torch.cat([x[k] for x in inputs]) if k == 2 else torch.cat([pad(x[k]) for x in inputs])
                 for k in range(4))


def bench(path: Path, pieces: list[ds.Piece], repeats: int) -> dict:
    plain, meta = load_scripted(path)
    eager = eager_twin(plain, meta)
    module, _ = load_for_inference(path)  # what the engine runs
    mcfg = ArrangerConfig.from_dict(meta["model"])
    inputs = [to_inputs(p.notes, mcfg.features, mcfg.n_parts) for p in pieces]
    for fn in (module, eager):  # warm-up: a whole pass (TorchScript profiles and specialises its
        for x in inputs:        # first calls on each new length: ~100 ms over the first pass)
            with torch.no_grad():
                fn(*x)
    row = {"model": meta["name"], "mode": meta["mode"], "notes": int(sum(len(p.notes) for p in pieces)),
           "params": sum(p.numel() for p in eager.parameters()),
           "size_mb": round(path.stat().st_size / 1e6, 2)}
    row["offline_batch1_notes_per_s"] = paired_notes_per_s({"torchscript": module, "eager": eager}, inputs,
                                                           repeats)
    row["offline_2_workers_notes_per_s"] = {"torchscript": two_workers_notes_per_s(module, inputs, repeats),
                                            "eager": two_workers_notes_per_s(eager, inputs, repeats)}
    if mcfg.causal:
        big = [batch_inputs(inputs)]
        with torch.no_grad():
            module(*big[0])
        padded = int(big[0][0].shape[0] * big[0][0].shape[1])
        row["offline_padded_one_batch_notes_per_s"] = {
            **paired_notes_per_s({"torchscript": module, "eager": eager}, big, repeats, row["notes"]),
            "batch": int(big[0][0].shape[0]), "steps": int(big[0][0].shape[1]),
            "padding_factor": round(padded / row["notes"], 3)}
        # the same pieces sorted by length into batches of 8: little padding, smaller batches
        order = sorted(inputs, key=lambda x: x[0].shape[1])
        buckets = [batch_inputs(order[i:i + 8]) for i in range(0, len(order), 8)]
        row["offline_length_buckets_of_8_notes_per_s"] = {
            **paired_notes_per_s({"torchscript": module, "eager": eager}, buckets, repeats, row["notes"]),
            "batches": len(buckets),
            "padding_factor": round(sum(x[0].shape[0] * x[0].shape[1] for x in buckets) / row["notes"], 3)}
        row["offline_padded_one_batch_notes_per_s"]["torchscript_counting_padding"] = (
            row["offline_padded_one_batch_notes_per_s"]["torchscript"] * padded / row["notes"])
    if "step" in meta["methods"]:
        row["live_push_per_chord_ms"] = live_latency_ms(path, pieces)
        x = max(inputs, key=lambda x: x[0].shape[1])
        n = min(600, x[0].shape[1])
        row["online_step_ms"] = {}
        for name, fn in (("torchscript", module), ("eager", eager)):
            p50, p99 = step_latency_ms(fn, x, n)
            row["online_step_ms"][name] = {"p50": p50, "p99": p99}
    return row


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="bach")
    p.add_argument("--models", nargs="*", help="exported .pt files (default: the shipped ones "
                   "whose ensemble matches the data)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds (best and median ratio kept)")
    p.add_argument("--json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    pieces = ds.load(args.data, "test")
    ens = ds.ensemble_of(args.data)
    paths = [Path(m) for m in args.models] if args.models else [
        f for f in sorted(SHIPPED.glob("*.pt")) if load_scripted(f)[1].get("ensemble") == ens]
    info = run_info()
    rows = [bench(path, pieces, args.repeats) for path in paths]
    out = {**info, "load_avg_end": [round(x, 2) for x in os.getloadavg()], "rows": rows}
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
