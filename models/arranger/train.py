"""Train an arranger (part separation) model.

    python -m models.arranger.train --data bach --arch lstm --online --out runs/bach-online

Defaults follow the Arranger paper: batch 16, 500-note crops, Adam 1e-3, random transposition
-5..+6 semitones, early stopping on the validation accuracy. The resolved config is written to
``<out>/config.json``; ``best.pt`` holds the best checkpoint (config beside the weights), ``last.pt``
the latest (``--resume`` continues from it); TensorBoard logs go to ``<out>/tb``.
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

from models.arranger import decoding
from models.arranger.features import (
    INT_FEATURES,
    VOICE_FEATURES,
    FeatureConfig,
    entries_from_labels,
    entry_hints,
    note_features,
    pitch_hints_from_labels,
    voice_states,
)
from models.arranger.incremental import decode_stepwise
from models.arranger.inference import log_probs
from models.arranger.metrics import Scores
from models.arranger.model import Arranger, ArrangerConfig
from models.data import corpus as ds

IGNORE = -100


@dataclass
class TrainConfig:
    data: str = "bach"
    arch: str = "lstm"
    online: bool = True
    out: str = "runs/arranger"
    steps: int = 20000
    batch_size: int = 16
    crop: int = 500
    lr: float = 1e-3
    warmup_steps: int = 200
    transpose_low: int = -5
    transpose_high: int = 6
    eval_every: int = 250
    patience: int = 8  # evaluations without improvement before stopping
    d_model: int = 128
    n_layers: int = 3
    dropout: float = 0.2
    entry_hints: bool = False
    pitch_hints: bool = False
    voice_state: bool = False  # online LSTM fed its own past choices (teacher-forced in training)
    chord_context: bool = False  # chord size and rank at the note's onset (causal in time)
    voice_noise: float = 0.1  # share of past labels corrupted in the voice state (exposure bias)
    use_duration: bool = True
    seed: int = 0
    threads: int = 1
    limit_valid: int = 0  # 0 = every validation piece


@dataclass
class State:
    model: Arranger
    optimizer: torch.optim.Optimizer
    step: int = 0
    best_accuracy: float = -1.0
    bad_evals: int = 0


def get_lr(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then the paper's constant rate."""
    return cfg.lr * min(1.0, (step + 1) / max(cfg.warmup_steps, 1))


def model_config(cfg: TrainConfig, n_parts: int) -> ArrangerConfig:
    return ArrangerConfig(
        n_parts=n_parts, arch=cfg.arch, causal=cfg.online, n_layers=cfg.n_layers,
        d_model=cfg.d_model, n_heads=8 if cfg.d_model % 8 == 0 else 1, d_ff=2 * cfg.d_model,
        dropout=cfg.dropout,
        features=FeatureConfig(use_duration=cfg.use_duration, use_entry_hints=cfg.entry_hints,
                               use_pitch_hints=cfg.pitch_hints, use_voice_state=cfg.voice_state,
                               use_chord_context=cfg.chord_context),
    )


def piece_hints(piece: ds.Piece, n_parts: int, shift: int = 0) -> tuple[np.ndarray, np.ndarray]:
    entries = entries_from_labels(piece.notes, piece.labels, n_parts)
    ph = pitch_hints_from_labels(piece.notes, piece.labels, n_parts)
    ph = np.where(ph > 0, np.clip(ph + shift / 127.0, 0, 1), 0).astype(np.float32)
    return entries, ph


def make_batch(pieces: list[ds.Piece], cfg: TrainConfig, mcfg: ArrangerConfig,
               rng: random.Random) -> dict[str, torch.Tensor]:
    fcfg, P = mcfg.features, mcfg.n_parts
    chosen = [rng.choice(pieces) for _ in range(cfg.batch_size)]
    T = min(cfg.crop, max(len(p.labels) for p in chosen))
    if mcfg.arch == "lstm" and not mcfg.causal:
        # a BiLSTM's backward pass would start in padding; packing fixes that but runs ~4x slower
        # on CPU, so crop the whole batch to its shortest piece instead
        T = min(cfg.crop, min(len(p.labels) for p in chosen))
    B = len(chosen)
    out = {"ints": np.zeros((B, T, len(INT_FEATURES)), np.int64)}
    out["labels"] = np.full((B, T), IGNORE, np.int64)
    out["entry_hints"] = np.zeros((B, T, P), np.float32)
    out["pitch_hints"] = np.zeros((B, P), np.float32)
    out["voice_state"] = np.zeros((B, T, P * VOICE_FEATURES), np.float32)
    lengths = np.zeros(B, np.int64)
    for b, piece in enumerate(chosen):
        n = len(piece.labels)
        start = rng.randrange(0, max(1, n - T + 1))
        notes = piece.notes[start:start + T].copy()
        shift = rng.randint(cfg.transpose_low, cfg.transpose_high)
        notes["pitch"] = np.clip(notes["pitch"].astype(np.int64) + shift, 0, 127)
        f = note_features(notes, fcfg)
        L = len(notes)
        lengths[b] = L
        out["ints"][b, :L] = f
        out["labels"][b, :L] = piece.labels[start:start + L]
        entries, ph = piece_hints(piece, P, shift)
        out["entry_hints"][b, :L] = entry_hints(notes, entries)
        out["pitch_hints"][b] = ph
        if fcfg.use_voice_state:  # intervals and timing only: unchanged by transposition
            variants = _voice_cache(piece, P, fcfg.resolution, cfg.voice_noise, cfg.seed)
            out["voice_state"][b, :L] = variants[rng.randrange(len(variants))][start:start + L]
    batch = {k: torch.from_numpy(v) for k, v in out.items()}
    batch["lengths"] = torch.from_numpy(lengths)
    return batch


_VOICE_CACHE: dict[str, list[np.ndarray]] = {}
VOICE_VARIANTS = 4


def _voice_cache(piece: ds.Piece, n_parts: int, resolution: int, noise: float,
                 seed: int) -> list[np.ndarray]:
    """Voice states from the true labels and from copies with ``noise`` of them swapped for a
    random other part: at inference the model sees its own mistakes, so it must not trust its
    past choices blindly."""
    if piece.name not in _VOICE_CACHE:
        gen = np.random.default_rng([seed, len(piece.labels)])
        variants = [voice_states(piece.notes, piece.labels, n_parts, resolution)]
        for _ in range(VOICE_VARIANTS - 1 if noise > 0 else 0):
            labels = piece.labels.copy()
            flip = gen.random(len(labels)) < noise
            labels[flip] = (labels[flip] + gen.integers(1, n_parts, int(flip.sum()))) % n_parts
            variants.append(voice_states(piece.notes, labels, n_parts, resolution))
        _VOICE_CACHE[piece.name] = variants
    return _VOICE_CACHE[piece.name]


def forward_train(model: Arranger, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    args = [batch[k] for k in ("ints", "entry_hints", "pitch_hints", "voice_state")]
    T = batch["ints"].shape[1]
    padding = torch.arange(T)[None, :] >= batch["lengths"][:, None]
    return model(*args, padding_mask=padding)


def train_step(state: State, batch: dict[str, torch.Tensor], cfg: TrainConfig) -> dict[str, float]:
    state.model.train()
    for g in state.optimizer.param_groups:
        g["lr"] = get_lr(state.step, cfg)
    logits = forward_train(state.model, batch)
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(),
                                             ignore_index=IGNORE)
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(state.model.parameters(), 1.0)
    state.optimizer.step()
    state.step += 1
    return {"loss/ce": loss.item(), "grad_norm": float(grad_norm), "lr": get_lr(state.step, cfg)}


def evaluate(module, pieces: list[ds.Piece], mcfg: ArrangerConfig,
             decoders: tuple[str, ...] = ("argmax",), hints: bool = True) -> dict[str, dict]:
    """The paper's protocol (first 2000 notes of each piece, micro-averaged) per decoder."""
    from models.arranger.metrics import EVAL_NOTES

    if hasattr(module, "eval"):
        module.eval()
    scores = {d: Scores(mcfg.n_parts) for d in decoders}
    for piece in pieces:
        notes, labels = piece.notes[:EVAL_NOTES], piece.labels[:EVAL_NOTES]
        entries, ph = piece_hints(piece, mcfg.n_parts) if hints else (None, None)
        if mcfg.features.use_voice_state:  # its own past choices are part of its input
            for d in decoders:
                pred = decode_stepwise(module, notes, mcfg.features, mcfg.n_parts, entries, ph,
                                       constrained=d != "argmax")
                scores[d].add(pred, labels)
            continue
        logp = log_probs(module, notes, mcfg.features, mcfg.n_parts, entries, ph)
        for d in decoders:
            scores[d].add(decoding.DECODERS[d](notes, logp), labels)
    return {d: s.summary() for d, s in scores.items()}


def save(state: State, mcfg: ArrangerConfig, cfg: TrainConfig, path: Path) -> None:
    torch.save({"config": mcfg.to_dict(), "train_config": dataclasses.asdict(cfg),
                "model": state.model.state_dict(), "optimizer": state.optimizer.state_dict(),
                "step": state.step, "best_accuracy": state.best_accuracy,
                "bad_evals": state.bad_evals}, path)


def load_checkpoint(path: str | Path) -> tuple[Arranger, ArrangerConfig, dict]:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    mcfg = ArrangerConfig.from_dict(ckpt["config"])
    model = Arranger(mcfg)
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
    train_set, valid_set = ds.load(cfg.data, "train"), ds.load(cfg.data, "valid")
    if not train_set or not valid_set:
        raise ValueError(f"dataset {cfg.data!r} needs train and valid pieces; got "
                         f"{len(train_set)} and {len(valid_set)}")
    if cfg.limit_valid:
        valid_set = valid_set[:cfg.limit_valid]
    n_parts = int(max(p.labels.max() for p in train_set + valid_set)) + 1
    mcfg = model_config(cfg, n_parts)
    model = Arranger(mcfg)
    state = State(model, torch.optim.Adam(model.parameters(), lr=cfg.lr))
    if resume and (out / "last.pt").exists():
        ckpt = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
        model.load_state_dict(ckpt["model"])
        state.optimizer.load_state_dict(ckpt["optimizer"])
        state.step, state.best_accuracy = ckpt["step"], ckpt["best_accuracy"]
        state.bad_evals = ckpt["bad_evals"]
        for _ in range(state.step):  # keep the batch stream where it was
            rng.random()
    (out / "config.json").write_text(json.dumps({"train": dataclasses.asdict(cfg),
                                                 "model": mcfg.to_dict()}, indent=1))
    writer = SummaryWriter(str(out / "tb"))
    history = []
    bar = tqdm(total=cfg.steps, initial=state.step, desc=f"train {out.name}", disable=not progress)
    t0 = time.time()
    while state.step < cfg.steps:
        logs = train_step(state, make_batch(train_set, cfg, mcfg, rng), cfg)
        bar.update(1)
        if not math.isfinite(logs["loss/ce"]):
            raise FloatingPointError(f"loss became {logs['loss/ce']} at step {state.step}")
        for k, v in logs.items():
            writer.add_scalar(f"train/{k}", v, state.step)
        if state.step % cfg.eval_every == 0 or state.step == cfg.steps:
            acc = evaluate(model, valid_set, mcfg)["argmax"]["accuracy"]
            writer.add_scalar("valid/accuracy", acc, state.step)
            history.append({"step": state.step, "loss": logs["loss/ce"], "valid_accuracy": acc,
                            "seconds": time.time() - t0})
            bar.set_postfix(loss=f"{logs['loss/ce']:.3f}", valid=f"{acc:.4f}")
            if acc > state.best_accuracy:
                state.best_accuracy, state.bad_evals = acc, 0
                save(state, mcfg, cfg, out / "best.pt")
            else:
                state.bad_evals += 1
            save(state, mcfg, cfg, out / "last.pt")
            (out / "history.json").write_text(json.dumps(history, indent=1))
            if state.bad_evals >= cfg.patience:
                break
    bar.close()
    writer.close()
    return {"best_valid_accuracy": state.best_accuracy, "steps": state.step, "history": history}


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, bool]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="JSON file of TrainConfig fields; flags override it")
    for f in dataclasses.fields(TrainConfig):
        if f.type in ("bool", bool):
            p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, default=None,
                           action=argparse.BooleanOptionalAction, help=f"(default {f.default})")
        else:
            typ = {"int": int, "float": float, "str": str}[str(f.type)]
            p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=typ, default=None,
                           help=f"(default {f.default})")
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    args = vars(p.parse_args(argv))
    resume = args.pop("resume")
    base = json.loads(Path(args.pop("config")).read_text()) if args.get("config") else {}
    args.pop("config", None)
    base.update({k: v for k, v in args.items() if v is not None})
    return TrainConfig(**base), resume


def main(argv: list[str] | None = None) -> None:
    cfg, resume = parse_args(argv)
    result = train(cfg, resume=resume)
    print(json.dumps({k: v for k, v in result.items() if k != "history"}))


if __name__ == "__main__":
    main()
