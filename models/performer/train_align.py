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

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.data import performance as pdata
from models.performer import training
from models.performer.align_model import AlignConfig, Aligner
from models.performer.features import N_FLOATS, features, targets
from models.performer.training import State, get_lr, load_sets, optimise, parse_config, run


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
    parts = losses(state.model, batch)
    loss = parts["loss/onset"] + parts["loss/duration"]
    grad_norm = optimise(state, loss, cfg)
    return {"loss/total": loss.item(), **{k: v.item() for k, v in parts.items()},
            "grad_norm": grad_norm, "lr": get_lr(state.step, cfg)}


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


def load_checkpoint(path: str | Path) -> tuple[Aligner, AlignConfig, dict]:
    return training.load_checkpoint(path, AlignConfig, Aligner)


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    train_set, valid_set = load_sets(cfg.data, "train"), load_sets(cfg.data, "valid")
    if not train_set or not valid_set:
        raise ValueError(f"performance data {cfg.data!r} needs train and valid pieces; got "
                         f"{len(train_set)} and {len(valid_set)} (build more with --limit, or all)")
    mcfg = model_config(cfg)
    state = run(cfg, Aligner(mcfg), mcfg.to_dict(),
                lambda rng: batch_of([rng.choice(train_set) for _ in range(cfg.batch_size)], cfg.crop, rng,
                                     cfg.transpose),
                lambda state, batch: train_step(state, batch, cfg), lambda model: validate(model, valid_set),
                resume=resume, progress=progress)
    return {"best_valid_loss": state.best_loss, "steps": state.step, "train_seconds": state.seconds,
            "train_pieces": len(train_set), "valid_pieces": len(valid_set)}


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, bool]:
    return parse_config(TrainConfig, argv, __doc__)


def main(argv: list[str] | None = None) -> None:
    cfg, resume = parse_args(argv)
    print(json.dumps(train(cfg, resume=resume)))


if __name__ == "__main__":
    main()
