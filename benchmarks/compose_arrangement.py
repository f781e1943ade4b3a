"""The arrangement VAE against its autoregressive baseline on held-out pieces, and how well its latent
controls what it is named for (models.composer.arrangement).

    python benchmarks/compose_arrangement.py --vae runs/arrangement-vae/best.pt \
        --ar runs/arrangement-ar/best.pt --out benchmarks/compose_arrangement.json

Held out: the test split of bach + quartets, every bar, in windows of the model's ``max_bars``.
NLL is per present cell (the cells of the instruments a window has) and counts the instrument set's
NLL too; the VAE's is bounded from above by the negative ELBO (z = mu, KL added) and estimated by
importance sampling (K samples from the encoder); the baseline's is exact. Accuracies are argmax per
cell (the VAE from z = mu: reconstruction; the baseline teacher-forced: next bar from the true bars
before it). Instrument-set accuracy: the whole set right (presence > 0.5).
Directions: from the prior's z for each seed, plan at z and at z + k * direction(name) with the same
seed, and count the seeds where the planned statistic rose (sampled plans) and where the decoder's
expectation rose. Interpolation: along 11 points between two prior settings, the decoder's expected
statistics; smoothness = |end - start| / the path's total variation (1 = monotone), and the largest
single step as a share of the path.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.composer.arrangement import (  # noqa: E402
    FEATURES,
    MODELS,
    N_CLASSES,
    RHYTHM_LEVELS,
    ArrangementConfig,
    _cell_nll,
    _presence_nll,
    collate,
    windows,
)
from models.composer.arrangement_plan import Arranger, log_mean_exp  # noqa: E402
from models.composer.train_arrangement import load_summaries  # noqa: E402


def load_model(path: str):
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model = MODELS[ckpt["model_kind"]](ArrangementConfig.from_dict(ckpt["config"]))
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt


def accuracy(cells: torch.Tensor, b: dict, acc: dict) -> None:
    keep = b["bar_mask"][:, :, None] & (b["present"][:, None] > 0)
    start = 0
    for f, c in enumerate(N_CLASSES):
        pred = cells[..., start:start + c].argmax(-1)
        acc.setdefault(FEATURES[f], [0, 0])
        acc[FEATURES[f]][0] += int(((pred == b["grid"][..., f]) & keep).sum())
        acc[FEATURES[f]][1] += int(keep.sum())
        start += c


@torch.no_grad()
def held_out(vae, ar, items, k_samples: int, seed: int) -> dict:
    torch.manual_seed(seed)
    max_bars = vae.cfg.max_bars
    wins = [w for s in items for w in windows(s, max_bars)]
    out = {"windows": len(wins), "pieces": len(items)}
    cells_n = 0
    sums = {"vae_recon": 0.0, "vae_elbo": 0.0, "vae_iw": 0.0, "ar": 0.0, "ar_cells": 0.0, "vae_cells": 0.0}
    acc_vae, acc_ar = {}, {}
    set_ok = {"vae_recon": 0, "vae_prior": 0, "ar": 0}
    for i in range(0, len(wins), 32):
        b = collate(wins[i:i + 32], max_bars)
        T = b["grid"].shape[1]
        cells_n += int((b["bar_mask"][:, :, None] & (b["present"][:, None] > 0)).sum())
        t = vae.loss(b, sample=False)
        sums["vae_recon"] += float((t["nll/presence"] + t["nll/cells"]).sum())
        sums["vae_cells"] += float(t["nll/cells"].sum())
        sums["vae_elbo"] += float((t["nll/presence"] + t["nll/cells"] + t["kl"]).sum())
        mu, logvar = t["mu"], t["logvar"]
        presence, cells = vae(mu, b["meter"], b["n_bars"], b["present"], b["grid"])
        accuracy(cells[:, :T], b, acc_vae)
        set_ok["vae_recon"] += int(((presence > 0).float() == b["present"]).all(1).sum())
        prior_presence, _ = vae(torch.zeros_like(mu), b["meter"], b["n_bars"], b["present"], b["grid"])
        set_ok["vae_prior"] += int(((prior_presence > 0).float() == b["present"]).all(1).sum())
        # importance-sampled log p(x) = log mean_k p(x|z_k) p(z_k) / q(z_k|x)
        logw = []
        std = (0.5 * logvar).exp()
        for _ in range(k_samples):
            z = mu + torch.randn_like(mu) * std
            pr, ce = vae(z, b["meter"], b["n_bars"], b["present"], b["grid"])
            log_px = -(_presence_nll(pr, b["present"]) + _cell_nll(ce[:, :T], b["grid"], b["bar_mask"],
                                                                    b["present"]))
            log_pz = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(1)
            log_qz = -0.5 * (((z - mu) / std).pow(2) + logvar + math.log(2 * math.pi)).sum(1)
            logw.append(log_px + log_pz - log_qz)
        sums["vae_iw"] += float(-log_mean_exp(torch.stack(logw), 0).sum())
        ta = ar.loss(b)
        sums["ar"] += float((ta["nll/presence"] + ta["nll/cells"]).sum())
        sums["ar_cells"] += float(ta["nll/cells"].sum())
        apres, acells = ar(b["grid"], b["meter"], b["n_bars"], b["present"])
        accuracy(acells, b, acc_ar)
        set_ok["ar"] += int(((apres > 0).float() == b["present"]).all(1).sum())
    out["present_cells"] = cells_n
    out["nll_per_cell"] = {
        "vae_reconstruction_z_mu": sums["vae_recon"] / cells_n,
        "vae_negative_elbo": sums["vae_elbo"] / cells_n,
        f"vae_importance_sampled_k{k_samples}": sums["vae_iw"] / cells_n,
        "ar_exact": sums["ar"] / cells_n}
    out["cells_only_nll_per_cell"] = {"vae_reconstruction_z_mu": sums["vae_cells"] / cells_n,
                                      "ar_teacher_forced": sums["ar_cells"] / cells_n}
    out["cell_accuracy"] = {"vae_reconstruction": {k: v[0] / v[1] for k, v in acc_vae.items()},
                            "ar_next_bar": {k: v[0] / v[1] for k, v in acc_ar.items()}}
    out["instrument_set_accuracy"] = {k: v / len(wins) for k, v in set_ok.items()}
    return out


def plan_stat(plan, name: str) -> float:
    if name == "instruments":
        return float(len(plan.instruments))
    table = {"density": plan.density_bucket, "polyphony": plan.polyphony, "rhythm": plan.rhythm,
             "register": plan.register}[name]
    if name == "rhythm":
        return float(np.mean([RHYTHM_LEVELS.index(r) for v in table.values() for r in v]))
    if name == "register":  # MIDI pitch over the sounding bars (0 marks a silent one)
        return float(np.mean([x for v in table.values() for x in v if x] or [0]))
    return float(np.mean([x for v in table.values() for x in v]))


def directions(arr: Arranger, seeds: int, k: float, bars: int) -> dict:
    out = {}
    for name in arr.directions:
        d = arr.direction(name)
        rose_plan, rose_exp, deltas, exp_deltas = 0, 0, [], []
        for seed in range(seeds):
            z = arr.sample_z(10_000 + seed)
            a = plan_stat(arr.plan(bars, (4, 4), seed=seed, z=z), name)
            b = plan_stat(arr.plan(bars, (4, 4), seed=seed, z=z + k * d), name)
            ea, eb = arr.expected(z, bars)[name], arr.expected(z + k * d, bars)[name]
            rose_plan += b > a
            rose_exp += eb > ea
            deltas.append(b - a)
            exp_deltas.append(eb - ea)
        out[name] = {"k": k, "seeds": seeds, "planned_rose_share": rose_plan / seeds,
                     "expected_rose_share": rose_exp / seeds, "planned_mean_change": float(np.mean(deltas)),
                     "expected_mean_change": float(np.mean(exp_deltas))}
    return out


def interpolation(arr: Arranger, pairs: int, bars: int) -> dict:
    stats = {}
    for p in range(pairs):
        za, zb = arr.sample_z(20_000 + 2 * p), arr.sample_z(20_001 + 2 * p)
        path = [arr.expected(arr.interpolate(za, zb, t), bars) for t in np.linspace(0, 1, 11)]
        ends = [arr.expected(za, bars), arr.expected(zb, bars)]
        for name in path[0]:
            v = np.array([x[name] for x in path])
            tv = np.abs(np.diff(v)).sum()
            s = stats.setdefault(name, {"monotonicity": [], "largest_step_share": [], "endpoints_equal": []})
            s["monotonicity"].append(abs(v[-1] - v[0]) / tv if tv > 1e-9 else 1.0)
            s["largest_step_share"].append(np.abs(np.diff(v)).max() / tv if tv > 1e-9 else 0.0)
            s["endpoints_equal"].append(v[0] == ends[0][name] and v[-1] == ends[1][name])
    return {name: {"pairs": pairs, "points": 11, "monotonicity_mean": float(np.mean(s["monotonicity"])),
                   "largest_step_share_mean": float(np.mean(s["largest_step_share"])),
                   "endpoints_equal_share": float(np.mean(s["endpoints_equal"]))}
            for name, s in stats.items()}


def speed(arr: Arranger, bars: int, repeats: int = 20) -> dict:
    times = []
    for seed in range(repeats):
        t0 = time.perf_counter()
        arr.plan(bars, (4, 4), seed=seed)
        times.append(time.perf_counter() - t0)
    return {"bars": bars, "repeats": repeats, "median_plan_ms": 1000 * float(np.median(times))}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vae", required=True)
    p.add_argument("--ar", required=True)
    p.add_argument("--shipped", help="the exported VAE to time (default: the --vae checkpoint)")
    p.add_argument("--data", default="bach,quartets")
    p.add_argument("--k-samples", type=int, default=32)
    p.add_argument("--seeds", type=int, default=100)
    p.add_argument("--k", type=float, default=2.0)
    p.add_argument("--pairs", type=int, default=30)
    p.add_argument("--bars", type=int, default=8)
    p.add_argument("--out", default="benchmarks/compose_arrangement.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    vae, vck = load_model(args.vae)
    ar, ack = load_model(args.ar)
    _, items = load_summaries(args.data, "test", list(vae.cfg.slots))
    arr = Arranger.load(args.shipped or args.vae)
    result = {
        "command": " ".join(["python", "benchmarks/compose_arrangement.py", *(argv or sys.argv[1:])]),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True).stdout.strip(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} thread, shared CPU",
        "split": "test", "data": args.data,
        "models": {"vae": {"checkpoint": args.vae, "step": vck["step"],
                           "parameters": sum(q.numel() for q in vae.parameters())},
                   "ar": {"checkpoint": args.ar, "step": ack["step"],
                          "parameters": sum(q.numel() for q in ar.parameters())}},
        "held_out": held_out(vae, ar, items, args.k_samples, 0),
        "directions": directions(arr, args.seeds, args.k, args.bars),
        "interpolation": interpolation(arr, args.pairs, args.bars),
        "speed": speed(arr, args.bars),
    }
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
