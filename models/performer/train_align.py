"""Train the alignment model on one or more built performance sets.

    python -m models.performer.train_align --data bach-soprano,bach --minutes 10 --out runs/align

Crops of up to ``crop`` notes (each anchored at its first note, see ``features``), Adam with a
linear warm-up and a step-decayed rate, MSE on the onset deviation (s) and the log-duration ratio.
Validation runs on whole pieces every ``eval_every`` steps; ``best.pt`` keeps the lowest validation
loss and ``last.pt`` the latest (``--resume`` continues from it), each with the model config and the
training config beside the weights; the resolved config is also ``<out>/config.json``.
TensorBoard logs go to ``<out>/tb``. Training stops at ``steps`` or after ``minutes``.
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

from models.data import performance as pdata
from models.performer.align_model import AlignConfig, Aligner
from models.performer.features import N_FLOATS, features, targets


@dataclass
class TrainConfig:
    data: str = "bach-soprano"  # comma-separated set names or folders
    out: str = "runs/align"
    steps: int = 100_000
    minutes: float = 0.0  # wall-clock budget; 0 = none
    batch_size: int = 16
    crop: int = 256
    lr: float = 1e-3
    warmup_steps: int = 100
    decay_every: int = 1000  # the rate halves every this many steps
    eval_every: int = 100
    d_model: int = 128
    n_layers: int = 3
    n_heads: int = 2
    d_ff: int = 256
    dropout: float = 0.1
    transpose: int = 5  # random transposition of -N..+N semitones
    seed: int = 0
    threads: int = 1


@dataclass
class State:
    model: Aligner
    optimizer: torch.optim.Optimizer
    step: int = 0
    best_loss: float = math.inf
    seconds: float = 0.0  # training time before this run (resumed runs add to it)


def get_lr(step: int, cfg: TrainConfig) -> float:
    return cfg.lr * min(1.0, (step + 1) / max(cfg.warmup_steps, 1)) * 0.5 ** (step / cfg.decay_every)


def load_sets(data: str, split: str) -> list[pdata.PerformancePiece]:
    return [p for name in data.split(",") if name for p in pdata.load(name, split)]


def batch_of(pieces: list[pdata.PerformancePiece], crop: int, rng: random.Random | None = None,
             transpose: int = 0) -> dict[str, torch.Tensor]:
    """Padded tensors of crops (random with ``rng``, else each piece's first ``crop`` notes)."""
    chosen = []
    for piece in pieces:
        start = rng.randrange(0, max(1, len(piece.notes) - crop + 1)) if rng else 0
        notes = piece.notes[start:start + crop].copy()
        if rng and transpose:
            shift = rng.randint(-transpose, transpose)
            notes["pitch"] = np.clip(notes["pitch"].astype(np.int64) + shift, 0, 127)
        chosen.append((notes, piece))
    T = max(len(n) for n, _ in chosen)
    B = len(chosen)
    ints = np.zeros((B, T, 3), np.int64)
    floats = np.zeros((B, T, N_FLOATS), np.float32)
    target = np.zeros((B, T, 2), np.float32)
    lengths = np.zeros(B, np.int64)
    for b, (notes, piece) in enumerate(chosen):
        L = len(notes)
        ints[b, :L], floats[b, :L] = features(notes, piece.qpm)
        target[b, :L], lengths[b] = targets(notes), L
    padding = torch.arange(T)[None, :] >= torch.from_numpy(lengths)[:, None]
    return {"ints": torch.from_numpy(ints), "floats": torch.from_numpy(floats),
            "performer": torch.tensor([p.performer for _, p in chosen]), "target": torch.from_numpy(target),
            "padding": padding}


def losses(model: Aligner, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    pred = model(batch["ints"], batch["floats"], batch["performer"], batch["padding"])  # (B, T, 2)
    keep = ~batch["padding"]
    err = (pred - batch["target"])[keep] ** 2  # (N, 2)
    return {"loss/onset": err[:, 0].mean(), "loss/duration": err[:, 1].mean()}


def train_step(state: State, batch: dict[str, torch.Tensor], cfg: TrainConfig) -> dict[str, float]:
    state.model.train()
    for g in state.optimizer.param_groups:
        g["lr"] = get_lr(state.step, cfg)
    parts = losses(state.model, batch)
    loss = parts["loss/onset"] + parts["loss/duration"]
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(state.model.parameters(), 1.0)
    state.optimizer.step()
    state.step += 1
    return {"loss/total": loss.item(), **{k: v.item() for k, v in parts.items()},
            "grad_norm": float(grad_norm), "lr": get_lr(state.step, cfg)}


@torch.no_grad()
def validate(model: Aligner, pieces: list[pdata.PerformancePiece], max_notes: int = 1024) -> dict[str, float]:
    """Whole-piece losses and the onset error (ms) on ``pieces``, one piece at a time."""
    model.eval()
    onset = duration = 0.0
    errors = []
    for piece in pieces:
        b = batch_of([piece], max_notes)
        parts = losses(model, b)
        onset += parts["loss/onset"].item()
        duration += parts["loss/duration"].item()
        pred = model(b["ints"], b["floats"], b["performer"])[0, :, 0]
        errors.append((pred - b["target"][0, :, 0]).abs().numpy() * 1000)
    n = max(len(pieces), 1)
    errors = np.concatenate(errors) if errors else np.zeros(1)
    return {"loss/onset": onset / n, "loss/duration": duration / n, "loss/total": (onset + duration) / n,
            "onset_error_ms/mean": float(errors.mean()), "onset_error_ms/median": float(np.median(errors))}


def model_config(cfg: TrainConfig) -> AlignConfig:
    return AlignConfig(d_model=cfg.d_model, n_layers=cfg.n_layers, n_heads=cfg.n_heads, d_ff=cfg.d_ff,
                       dropout=cfg.dropout)


def save(state: State, mcfg: AlignConfig, cfg: TrainConfig, path: Path) -> None:
    torch.save({"config": mcfg.to_dict(), "train_config": dataclasses.asdict(cfg),
                "model": state.model.state_dict(), "optimizer": state.optimizer.state_dict(),
                "step": state.step, "best_loss": state.best_loss, "seconds": state.seconds}, path)


def load_checkpoint(path: str | Path) -> tuple[Aligner, AlignConfig, dict]:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    mcfg = AlignConfig.from_dict(ckpt["config"])
    model = Aligner(mcfg)
    model.load_state_dict(ckpt["model"])
    return model.eval(), mcfg, ckpt


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    train_set, valid_set = load_sets(cfg.data, "train"), load_sets(cfg.data, "valid")
    if not train_set or not valid_set:
        raise ValueError(f"performance data {cfg.data!r} needs train and valid pieces; got "
                         f"{len(train_set)} and {len(valid_set)} (build more with --limit, or all)")
    mcfg = model_config(cfg)
    model = Aligner(mcfg)
    state = State(model, torch.optim.Adam(model.parameters(), lr=cfg.lr))
    if resume and (out / "last.pt").exists():
        ckpt = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
        model.load_state_dict(ckpt["model"])
        state.optimizer.load_state_dict(ckpt["optimizer"])
        state.step, state.best_loss, state.seconds = ckpt["step"], ckpt["best_loss"], ckpt["seconds"]
        rng.seed(cfg.seed + state.step)  # a fresh but reproducible batch stream
    (out / "config.json").write_text(json.dumps({"train": dataclasses.asdict(cfg), "model": mcfg.to_dict()},
                                                indent=1))
    writer = SummaryWriter(str(out / "tb"))
    history_file = out / "history.json"
    history = json.loads(history_file.read_text()) if resume and history_file.exists() else []
    bar = tqdm(total=cfg.steps, initial=state.step, desc=f"train {out.name}", disable=not progress)
    t0, seconds0 = time.time(), state.seconds
    while state.step < cfg.steps:
        batch = batch_of([rng.choice(train_set) for _ in range(cfg.batch_size)], cfg.crop, rng, cfg.transpose)
        logs = train_step(state, batch, cfg)
        state.seconds = seconds0 + time.time() - t0
        bar.update(1)
        if not math.isfinite(logs["loss/total"]):
            raise FloatingPointError(f"loss became {logs['loss/total']} at step {state.step}")
        for k, v in logs.items():
            writer.add_scalar(f"train/{k}", v, state.step)
        out_of_time = cfg.minutes > 0 and time.time() - t0 > cfg.minutes * 60
        if state.step % cfg.eval_every == 0 or state.step == cfg.steps or out_of_time:
            valid = validate(model, valid_set)
            for k, v in valid.items():
                writer.add_scalar(f"valid/{k}", v, state.step)
            history.append({"step": state.step, "train_loss": logs["loss/total"], "seconds": state.seconds,
                            **{f"valid_{k}": v for k, v in valid.items()}})
            bar.set_postfix(loss=f"{logs['loss/total']:.4f}", valid=f"{valid['loss/total']:.4f}",
                            ms=f"{valid['onset_error_ms/mean']:.0f}")
            if valid["loss/total"] < state.best_loss:
                state.best_loss = valid["loss/total"]
                save(state, mcfg, cfg, out / "best.pt")
            save(state, mcfg, cfg, out / "last.pt")
            (out / "history.json").write_text(json.dumps(history, indent=1))
        if out_of_time:
            break
    bar.close()
    writer.close()
    return {"best_valid_loss": state.best_loss, "steps": state.step, "train_seconds": state.seconds,
            "train_pieces": len(train_set), "valid_pieces": len(valid_set)}


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, bool]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="JSON file of TrainConfig fields; flags override it")
    for f in dataclasses.fields(TrainConfig):
        typ = {"int": int, "float": float, "str": str}[str(f.type)]
        p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=typ, default=None,
                       help=f"(default {f.default})")
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    args = vars(p.parse_args(argv))
    resume = args.pop("resume")
    config = args.pop("config")
    base = json.loads(Path(config).read_text()) if config else {}
    base.update({k: v for k, v in args.items() if v is not None})
    return TrainConfig(**base), resume


def main(argv: list[str] | None = None) -> None:
    cfg, resume = parse_args(argv)
    print(json.dumps(train(cfg, resume=resume)))


if __name__ == "__main__":
    main()
