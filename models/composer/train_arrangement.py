"""Train the arrangement VAE or its autoregressive baseline on bar x track summaries
(``models.composer.arrangement``), and export a trained VAE.

    python -m models.composer.train_arrangement --model vae --minutes 9 --out runs/arrangement-vae
    python -m models.composer.train_arrangement --model ar --minutes 9 --out runs/arrangement-ar
    python -m models.composer.train_arrangement --export runs/arrangement-vae/best.pt \
        models/pretrained/composer-arrangement.pt

Data: the train split of the ``bach`` and ``quartets`` multitrack sets (``--data``), each piece a
summary grid; a batch is random windows of up to ``max_bars`` bars. Validation: every bar of the
valid split in non-overlapping windows, NLL per present cell (nats; the VAE's is the negative ELBO:
reconstruction + KL, an upper bound). The resolved config goes to ``<out>/config.json``; ``best.pt``
and ``last.pt`` hold the model config beside the weights (``torch.load(weights_only=True)``);
``--resume`` continues from ``last.pt``; TensorBoard logs go to ``<out>/tb``. After training a VAE,
the named directions are found on the train windows and stored in the checkpoints.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.composer.arrangement import (
    MODELS,
    ArrangementConfig,
    Summary,
    collate,
    data_slots,
    summarise,
    windows,
)
from models.composer.arrangement_plan import find_directions
from models.tensorboard import tensorboard_writer


@dataclass
class TrainConfig:
    model: str = "vae"  # vae | ar
    data: str = "bach,quartets"
    out: str = "runs/arrangement"
    minutes: float = 0.0  # wall-clock budget; 0 = until max_steps
    max_steps: int = 3000
    batch_size: int = 32
    max_bars: int = 32
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    z_dim: int = 16
    dropout: float = 0.1
    lr: float = 2e-3
    min_lr: float = 2e-4
    warmup_steps: int = 50
    weight_decay: float = 0.01
    kl_weight: float = 0.5  # beta: below 1 keeps more of the summaries in z
    kl_warmup_steps: int = 300  # KL weight ramps from 0 (against posterior collapse)
    free_bits: float = 0.0  # nats per latent dimension the KL term never pushes below (0 = off)
    decoder: str = "parallel"  # the VAE's decoder: parallel (z -> all bars) | ar (bar by bar, causal)
    eval_every: int = 200
    limit_train: int = 0
    limit_valid: int = 0
    seed: int = 0
    threads: int = 1

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"TrainConfig.model must be one of {', '.join(MODELS)}, got {self.model!r}")


@dataclass
class State:
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    step: int = 0
    best: float = math.inf


def get_lr(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    frac = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * frac))


def kl_weight(step: int, cfg: TrainConfig) -> float:
    return cfg.kl_weight * min(1.0, step / max(1, cfg.kl_warmup_steps))


def load_summaries(sets: str, split: str, slots: list[str] | None = None, limit: int = 0):
    """(slots, summaries) of the named sets' split; ``slots`` None = those of every split of the sets
    (the vocabulary only: names, not statistics)."""
    from models.composer.data import load_pieces

    names = [s for s in sets.split(",") if s]
    if slots is None:
        splits = ("train", "valid", "test")
        slots = data_slots([p for n in names for sp in splits for p in load_pieces(n, sp)])
    pieces = [p for n in names for p in load_pieces(n, split, limit)]
    return slots, [summarise(p, slots) for p in pieces]


def sample_windows(items: list[Summary], n: int, max_bars: int, rng: random.Random) -> list[Summary]:
    out = []
    for _ in range(n):
        s = items[rng.randrange(len(items))]
        start = rng.randrange(max(1, s.n_bars - max_bars + 1))
        out.append(Summary(s.grid[start:start + max_bars], s.present, s.meter, s.name))
    return out


@torch.no_grad()
def evaluate(model: torch.nn.Module, items: list[Summary], kl_w: float = 1.0) -> dict[str, float]:
    """NLL per present cell and per window over every bar of ``items`` (windows of max_bars); the VAE's
    with z = mu for the reconstruction terms and the KL added (the negative ELBO without sampling)."""
    model.eval()
    max_bars = model.cfg.max_bars
    wins = [w for s in items for w in windows(s, max_bars)]
    totals = {"presence": 0.0, "cells": 0.0, "kl": 0.0}
    cells = 0
    for i in range(0, len(wins), 64):
        b = collate(wins[i:i + 64], max_bars)
        t = model.loss(b, sample=False)
        totals["presence"] += float(t["nll/presence"].sum())
        totals["cells"] += float(t["nll/cells"].sum())
        totals["kl"] += float(t["kl"].sum())
        cells += int((b["bar_mask"][:, :, None] & (b["present"][:, None] > 0)).sum())
    total = totals["presence"] + totals["cells"] + kl_w * totals["kl"]
    return {"nll_per_cell": total / max(cells, 1), "cells_nll_per_cell": totals["cells"] / max(cells, 1),
            "presence_nll_per_window": totals["presence"] / max(len(wins), 1),
            "kl_per_window": totals["kl"] / max(len(wins), 1), "windows": len(wins), "cells": cells}


def save(state: State, mcfg: ArrangementConfig, cfg: TrainConfig, path: Path,
         extra: dict | None = None) -> None:
    torch.save({"model_kind": cfg.model, "config": mcfg.to_dict(), "train": dataclasses.asdict(cfg),
                "model": state.model.state_dict(), "optimizer": state.optimizer.state_dict(),
                "step": state.step, "best": state.best, **(extra or {})}, path)


def train_step(state: State, batch: dict[str, torch.Tensor], cfg: TrainConfig) -> dict[str, float]:
    state.model.train()
    lr = get_lr(state.step, cfg)
    for g in state.optimizer.param_groups:
        g["lr"] = lr
    terms = state.model.loss(batch, kl_weight(state.step, cfg), free_bits=cfg.free_bits)
    state.optimizer.zero_grad(set_to_none=True)
    terms["loss"].backward()
    torch.nn.utils.clip_grad_norm_(state.model.parameters(), 1.0)
    state.optimizer.step()
    state.step += 1
    return {"loss": terms["loss"].item(), "nll/presence": terms["nll/presence"].mean().item(),
            "nll/cells": terms["nll/cells"].mean().item(), "kl": terms["kl"].mean().item(), "lr": lr}


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    from tqdm import tqdm

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
    slots, train_items = load_summaries(cfg.data, "train", limit=cfg.limit_train)
    _, valid_items = load_summaries(cfg.data, "valid", slots, cfg.limit_valid)
    mcfg = ArrangementConfig(tuple(slots), cfg.max_bars, cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.z_dim,
                             cfg.dropout, cfg.decoder if cfg.model == "vae" else "parallel")
    model = MODELS[cfg.model](mcfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    state = State(model, opt)
    if resume and (out / "last.pt").exists():
        ckpt = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        state.step, state.best = int(ckpt["step"]), float(ckpt["best"])
    rng = random.Random(cfg.seed * 1_000_003 + state.step)  # a resumed run draws new windows
    writer = tensorboard_writer(out)
    n_params = sum(p.numel() for p in model.parameters())
    bar = tqdm(total=cfg.max_steps, initial=state.step, desc=f"train {cfg.model} {out.name}",
               disable=not progress)
    t0, metrics, logs = time.monotonic(), {}, {}
    while state.step < cfg.max_steps:
        if cfg.minutes and time.monotonic() - t0 > cfg.minutes * 60:
            break
        batch = collate(sample_windows(train_items, cfg.batch_size, cfg.max_bars, rng), cfg.max_bars)
        logs = train_step(state, batch, cfg)
        bar.update(1)
        bar.set_postfix(loss=f"{logs['loss']:.2f}", kl=f"{logs['kl']:.2f}")
        if writer and state.step % 10 == 0:
            for k, v in logs.items():
                writer.add_scalar(f"train/{k}", v, state.step)
        if state.step % cfg.eval_every == 0 or state.step == cfg.max_steps:
            metrics = evaluate(model, valid_items)
            if writer:
                for k, v in metrics.items():
                    writer.add_scalar(f"valid/{k}", v, state.step)
            if metrics["nll_per_cell"] < state.best:
                state.best = metrics["nll_per_cell"]
                save(state, mcfg, cfg, out / "best.pt")
            save(state, mcfg, cfg, out / "last.pt")
    bar.close()
    metrics = evaluate(model, valid_items)
    if metrics["nll_per_cell"] < state.best:
        state.best = metrics["nll_per_cell"]
        save(state, mcfg, cfg, out / "best.pt")
    save(state, mcfg, cfg, out / "last.pt")
    if writer:
        writer.close()
    minutes = (time.monotonic() - t0) / 60
    if cfg.model == "vae":  # the directions of the best weights, stored in both checkpoints
        best = torch.load(out / "best.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(best["model"])
        train_windows = [w for s in train_items for w in windows(s, cfg.max_bars)]
        directions = find_directions(model, train_windows)
        for name in ("best.pt", "last.pt"):
            ckpt = torch.load(out / name, map_location="cpu", weights_only=True)
            ckpt["directions"] = directions
            torch.save(ckpt, out / name)
    result = {"step": state.step, "best_valid_nll_per_cell": state.best, "valid": metrics,
              "parameters": n_params, "minutes": minutes}
    (out / "result.json").write_text(json.dumps(result, indent=2))
    return result


# export

def export(checkpoint: str | Path, path: str | Path, metrics: dict | None = None) -> dict:
    """A VAE checkpoint as TorchScript with ``metadata.json`` (task ``compose_arrange``), reloaded and
    checked against eager mode."""
    from bridge.protocol import PROTOCOL_VERSION
    from models.format import FORMAT_VERSION, METADATA_FILE, load_scripted, quiet_jit

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if ckpt["model_kind"] != "vae":
        raise ValueError(f"{checkpoint} is the {ckpt['model_kind']} baseline; export a --model vae "
                         "checkpoint")
    mcfg = ArrangementConfig.from_dict(ckpt["config"])
    model = MODELS["vae"](mcfg)
    model.load_state_dict(ckpt["model"])
    model.eval()
    meta = {"format_version": FORMAT_VERSION, "protocol_version": PROTOCOL_VERSION, "task": "compose_arrange",
            "name": Path(path).stem, "version": "1.0.0", "config": mcfg.to_dict(),
            "slots": list(mcfg.slots), "directions": ckpt.get("directions", {}), "methods": ["encode"],
            "model": {"parameters": sum(p.numel() for p in model.parameters()), "step": ckpt["step"]},
            "metrics": metrics or {}}
    with quiet_jit():
        scripted = torch.jit.script(model)
        scripted.save(str(path), _extra_files={METADATA_FILE: json.dumps(meta)})
    module, _ = load_scripted(path)
    z = torch.randn(2, mcfg.z_dim)
    grid = torch.randint(0, 2, (2, 8, len(mcfg.slots), 4))
    args = (z, torch.tensor([5, 5]), torch.tensor([8, 3]), torch.ones(2, len(mcfg.slots)), grid)
    with torch.no_grad():
        for a, b in zip(model(*args), module(*args)):
            if not torch.allclose(a, b, atol=1e-5):
                raise RuntimeError(f"the exported {path} differs from eager mode; do not ship it")
    return meta


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, bool, list[str] | None]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="a JSON file of TrainConfig fields; flags override it")
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    p.add_argument("--export", nargs=2, metavar=("CHECKPOINT", "OUT_PT"), help="export a VAE checkpoint")
    for f in dataclasses.fields(TrainConfig):
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=None)
    args = vars(p.parse_args(argv))
    resume, config, exp = args.pop("resume"), args.pop("config"), args.pop("export")
    base = json.loads(Path(config).read_text()) if config else {}
    cfg = TrainConfig(**{**base, **{k: v for k, v in args.items() if v is not None}})
    return cfg, resume, exp


def main(argv: list[str] | None = None) -> None:
    cfg, resume, exp = parse_args(argv)
    if exp:
        meta = export(*exp)
        print(json.dumps({k: meta[k] for k in ("name", "task", "model")}))
        return
    print(json.dumps(train(cfg, resume=resume), indent=2))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
