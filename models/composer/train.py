"""Train a composer decoder on one tokenisation of a multitrack set.

    python -m models.composer.train --data bach --rep ours --minutes 10 --out runs/composer-ours
    torchrun --nproc_per_node 2 -m models.composer.train --data bach --rep ours --out runs/ddp
    python -m models.composer.train --config models/configs/composer-small.json --device cuda --bf16

Random crops of ``block_size + 1`` tokens from the train split, transposed by a random shift that
keeps every note in its instrument's range; the loss and the validation NLL skip condition tokens
(instruments, meter, key, chords: the request gives them). Validation reports NLL per note (see
``models.composer.tokens``). The resolved config goes to ``<out>/config.json``; ``best.pt`` and
``last.pt`` hold the model config and the tokenizer config beside the weights; ``--resume``
continues from ``last.pt``. TensorBoard logs go to ``<out>/tb`` when tensorboard is installed.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.composer.data import (
    IGNORE,
    Sequences,
    data_instruments,
    evaluate,
    load_pieces,
    select_tracks,
    without_conditions,
)
from models.composer.model import Composer, ComposerConfig
from models.composer.representations import OursTokenizer, make_tokenizer
from models.composer.tokens import TokenizerConfig, chord_qualities, instrument_table
from models.tensorboard import tensorboard_writer


@dataclass
class TrainConfig:
    data: str = "bach"
    rep: str = "ours"
    out: str = "runs/composer"
    minutes: float = 0.0  # wall-clock budget; 0 = until max_steps
    max_steps: int = 2000
    batch_size: int = 16
    block_size: int = 256
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    weight_decay: float = 0.1
    d_model: int = 192
    n_layers: int = 4
    n_heads: int = 4
    dropout: float = 0.1
    instruments: str = ""  # comma-separated: keep these tracks (the first of each name); "" = all
    conditions: bool = True  # keys and chords as condition tokens (ours); off = meter only
    factorised: bool = True  # ours only: pitch + instrument factor tables (see model docstring)
    repeat_conditions: bool = False  # ours only: meter and key at every bar (models.composer.tokens)
    density: bool = False  # ours only: a DENSITY token after each TRACK (models.composer.tokens)
    # condition augmentation, per training crop: the piece without its chords (so a request without
    # chords is not unlike every training bar), or with one chord per bar, the one sounding at the bar
    # start (so "C G Am F" does not read as a half-note texture: in chorales the chord changes per beat)
    chord_dropout: float = 0.0
    chord_thinning: float = 0.0
    # ours only: the share of crops with a random subset of the tracks written last in each bar (so
    # infilling writes the filled voice after every given one); above 0 the tokenizer says so
    track_reorder: float = 0.0
    # ours only: pitch-class and chord-quality factor tables (OursTokenizer.factors)
    harmony_factors: bool = False
    # ours only: pitch tokens keep a row of their own per instrument (off: the pitch parameters are
    # shared by every instrument; the per-instrument study)
    own_pitch_rows: bool = True
    # ours only: a whole decoder per instrument, nothing shared (models.composer.separate; the
    # per-instrument study: trains and evaluates, is not exported), each separate_width wide (0: half)
    separate_decoders: bool = False
    separate_width: int = 0
    transpose_low: int = -5
    transpose_high: int = 6
    eval_every: int = 200
    limit_train: int = 0  # 0 = every training piece
    limit_valid: int = 0  # 0 = every validation piece
    seed: int = 0
    threads: int = 1  # 2 threads ran 14x slower than 1 on the shared 2-core CPU
    device: str = "cpu"
    bf16: bool = False  # autocast to bfloat16 (for CUDA runs; untested on this CPU machine)


@dataclass
class State:
    model: torch.nn.Module  # the DDP wrapper under torchrun
    optimizer: torch.optim.Optimizer
    step: int = 0
    best_nll: float = float("inf")
    elapsed_s: float = 0.0


# model and schedule

def get_lr(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine from lr to min_lr over max_steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    frac = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * frac))


def build_model(cfg: TrainConfig, tcfg: TokenizerConfig) -> tuple[Composer, ComposerConfig]:
    tok = make_tokenizer(tcfg)
    factors = tok.factors(cfg.harmony_factors) if isinstance(tok, OursTokenizer) and cfg.factorised else {}
    ids = torch.from_numpy(np.stack(list(factors.values()))) if factors else None
    mcfg = ComposerConfig(vocab_size=len(tok), block_size=cfg.block_size, n_layers=cfg.n_layers,
                          n_heads=cfg.n_heads, d_model=cfg.d_model, dropout=cfg.dropout,
                          factor_sizes=tuple(int(v.max()) + 1 for v in factors.values()),
                          own_pitch_rows=cfg.own_pitch_rows)
    if cfg.separate_decoders:
        from models.composer.separate import SeparateDecoders, track_of_tokens

        return SeparateDecoders(mcfg, ids, track_of_tokens(tok), cfg.separate_width), mcfg
    return Composer(mcfg, ids), mcfg


def save(state: State, mcfg: ComposerConfig, tcfg: TokenizerConfig, cfg: TrainConfig, path: Path,
         metrics: dict | None = None) -> None:
    model = getattr(state.model, "module", state.model)
    tmp = path.with_suffix(".tmp")
    torch.save({"config": mcfg.to_dict(), "tokenizer": tcfg.to_dict(),
                "train_config": dataclasses.asdict(cfg), "model": model.state_dict(),
                "optimizer": state.optimizer.state_dict(), "step": state.step,
                "best_nll": state.best_nll, "elapsed_s": state.elapsed_s, "metrics": metrics or {},
                "chord_qualities": list(chord_qualities())}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> tuple[Composer, ComposerConfig, TokenizerConfig, dict]:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if ckpt.get("train_config", {}).get("separate_decoders"):
        raise ValueError(f"{path} holds separate decoders per instrument (train --separate-decoders), "
                         "a study model with no KV-cache step: it is not loaded or exported; "
                         "train without the flag")
    mcfg = ComposerConfig.from_dict(ckpt["config"])
    model = Composer(mcfg)
    model.load_state_dict(ckpt["model"])
    return model.eval(), mcfg, TokenizerConfig.from_dict(ckpt["tokenizer"]), ckpt


def train_step(state: State, batch: tuple[torch.Tensor, torch.Tensor], cfg: TrainConfig) -> dict[str, float]:
    state.model.train()
    lr = get_lr(state.step, cfg)
    for g in state.optimizer.param_groups:
        g["lr"] = lr
    x, y = (t.to(cfg.device) for t in batch)
    with torch.autocast(device_type=torch.device(cfg.device).type, dtype=torch.bfloat16, enabled=cfg.bf16):
        logits = state.model(x)
    loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=IGNORE)
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(state.model.parameters(), 1.0)
    state.optimizer.step()
    state.step += 1
    return {"loss/ce": loss.item(), "grad_norm": float(grad_norm), "lr": lr}


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    from tqdm import tqdm

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank = 0
    if distributed:
        import torch.distributed as dist

        dist.init_process_group("nccl" if cfg.device.startswith("cuda") else "gloo")
        rank = dist.get_rank()
        if cfg.device.startswith("cuda"):
            cfg = dataclasses.replace(cfg, device=f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed * 1000 + rank)  # each rank its own batches
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    train_set = load_pieces(cfg.data, "train", cfg.limit_train)
    valid_set = load_pieces(cfg.data, "valid", cfg.limit_valid)
    if not train_set or not valid_set:
        raise ValueError(f"dataset {cfg.data!r} needs train and valid pieces; got "
                         f"{len(train_set)} and {len(valid_set)}")
    if cfg.instruments:
        names = [n.strip() for n in cfg.instruments.split(",") if n.strip()]
        train_set, valid_set = select_tracks(train_set, names), select_tracks(valid_set, names)
    if not cfg.conditions:
        train_set, valid_set = without_conditions(train_set), without_conditions(valid_set)
    ours = cfg.rep == "ours"
    tcfg = TokenizerConfig.for_instruments(cfg.rep, data_instruments(train_set + valid_set),
                                           ours and cfg.repeat_conditions, ours and cfg.density,
                                           ours and cfg.track_reorder > 0)
    tok = make_tokenizer(tcfg)
    model, mcfg = build_model(cfg, tcfg)
    model.to(cfg.device)
    # weight decay on matrices, not on embeddings, norms and biases
    decays = {n: p.dim() >= 2 and "tok" not in n and "factors" not in n for n, p in model.named_parameters()}
    decay = [p for n, p in model.named_parameters() if decays[n]]
    other = [p for n, p in model.named_parameters() if not decays[n]]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": other, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
    state = State(model, optimizer)
    if resume and (out / "last.pt").exists():
        ckpt = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state.step, state.best_nll, state.elapsed_s = ckpt["step"], ckpt["best_nll"], ckpt["elapsed_s"]
        rng.seed(cfg.seed * 1000 + rank + state.step)
    if distributed:
        from torch.nn.parallel import DistributedDataParallel

        state.model = DistributedDataParallel(model)
    train_seqs = Sequences(train_set, tok, range(cfg.transpose_low, cfg.transpose_high + 1),
                           cfg.chord_dropout, cfg.chord_thinning, cfg.track_reorder if ours else 0.0)
    valid_seqs = Sequences(valid_set, tok)
    if rank == 0:
        resolved = {"train": dataclasses.asdict(cfg), "model": mcfg.to_dict(), "tokenizer": tcfg.to_dict()}
        (out / "config.json").write_text(json.dumps(resolved, indent=1))
    writer = tensorboard_writer(out, rank == 0)
    history: list[dict] = []
    bar = tqdm(total=cfg.max_steps, initial=state.step, desc=f"train {out.name}",
               disable=not progress or rank != 0)
    t0 = time.time() - state.elapsed_s
    metrics: dict = {}
    while True:
        stop = state.step >= cfg.max_steps or (cfg.minutes > 0 and time.time() - t0 > 60 * cfg.minutes)
        if distributed:  # every rank stops at the same step, or the next all-reduce hangs
            flag = torch.tensor([float(stop)], device=cfg.device)
            torch.distributed.all_reduce(flag)
            stop = bool(flag.item() > 0)
        last = stop or (state.step > 0 and state.step % cfg.eval_every == 0)
        if last and rank == 0 and state.step > 0:
            state.elapsed_s = time.time() - t0
            metrics = evaluate(model, valid_seqs, cfg.device)
            history.append({"step": state.step, "seconds": state.elapsed_s, **metrics})
            if writer:
                writer.add_scalar("valid/nll_per_note", metrics["nll_per_note"], state.step)
            bar.set_postfix(valid_nll=f"{metrics['nll_per_note']:.3f}")
            if metrics["nll_per_note"] < state.best_nll:
                state.best_nll = metrics["nll_per_note"]
                save(state, mcfg, tcfg, cfg, out / "best.pt", metrics)
            save(state, mcfg, tcfg, cfg, out / "last.pt", metrics)
            (out / "history.json").write_text(json.dumps(history, indent=1))
        if stop:
            break
        logs = train_step(state, train_seqs.batch(cfg.batch_size, cfg.block_size, rng), cfg)
        if not math.isfinite(logs["loss/ce"]):
            raise FloatingPointError(f"loss became {logs['loss/ce']} at step {state.step}")
        bar.update(1)
        if writer and state.step % 10 == 0:
            for k, v in logs.items():
                writer.add_scalar(f"train/{k}", v, state.step)
    bar.close()
    if writer:
        writer.close()
    if distributed:
        torch.distributed.destroy_process_group()
    return {"best_nll_per_note": state.best_nll, "steps": state.step, "seconds": time.time() - t0,
            "n_params": sum(p.numel() for p in model.parameters()), "rank": rank, "valid": metrics}


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, bool]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="JSON file of TrainConfig fields; flags override it")
    for f in dataclasses.fields(TrainConfig):
        flag = f"--{f.name.replace('_', '-')}"
        if f.type in ("bool", bool):
            p.add_argument(flag, dest=f.name, default=None, action=argparse.BooleanOptionalAction,
                           help=f"(default {f.default})")
        else:
            typ = {"int": int, "float": float, "str": str}[str(f.type)]
            p.add_argument(flag, dest=f.name, type=typ, default=None, help=f"(default {f.default})")
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    args = vars(p.parse_args(argv))
    resume = args.pop("resume")
    config = args.pop("config")
    base = json.loads(Path(config).read_text()) if config else {}
    base.update({k: v for k, v in args.items() if v is not None})
    cfg = TrainConfig(**base)
    if cfg.rep not in ("mmt", "remi", "ours"):
        p.error(f"--rep must be mmt, remi or ours, got {cfg.rep!r}")
    return cfg, resume


def main(argv: list[str] | None = None) -> None:
    cfg, resume = parse_args(argv)
    result = train(cfg, resume=resume)
    if result["rank"] == 0:
        print(json.dumps(result))


if __name__ == "__main__":
    main()


__all__ = ["TrainConfig", "instrument_table", "load_checkpoint", "train"]
