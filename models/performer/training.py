"""What the Performer's training commands share (``train_align``, ``train_synth``): the options
parser over a ``TrainConfig`` dataclass, the learning-rate schedule, the set loader, checkpoints
with the model and training configs beside the weights, and the loop (progress bar, TensorBoard,
validation on an interval, ``best.pt``/``last.pt``, ``history.json``, a wall-clock budget, resume).

A command supplies its own config dataclass (with at least ``data``, ``out``, ``steps``,
``minutes``, ``lr``, ``warmup_steps``, ``decay_every``, ``eval_every``, ``seed``, ``threads``), its
model, a batch sampler, ``train_step`` and ``validate``; ``run`` drives them.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from models.data import performance as pdata


@dataclass
class State:
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    step: int = 0
    best_loss: float = math.inf
    seconds: float = 0.0  # training time before this run (resumed runs add to it)


def get_lr(step: int, cfg) -> float:
    """Linear warm-up over ``cfg.warmup_steps``, then the rate halves every ``cfg.decay_every``."""
    return cfg.lr * min(1.0, (step + 1) / max(cfg.warmup_steps, 1)) * 0.5 ** (step / cfg.decay_every)


def load_sets(data: str, split: str, with_mel: bool = False) -> list[pdata.PerformancePiece]:
    """The pieces of one split of comma-separated performance sets (names or folders)."""
    return [p for name in data.split(",") if name for p in pdata.load(name, split, with_mel=with_mel)]


def optimise(state: State, loss: torch.Tensor, cfg, clip: float = 1.0) -> float:
    """One Adam step at the scheduled rate, gradients clipped; returns the gradient norm."""
    for g in state.optimizer.param_groups:
        g["lr"] = get_lr(state.step, cfg)
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(state.model.parameters(), clip)
    state.optimizer.step()
    state.step += 1
    return float(grad_norm)


def save(state: State, model_config: dict, cfg, path: Path) -> None:
    torch.save({"config": model_config, "train_config": dataclasses.asdict(cfg),
                "model": state.model.state_dict(), "optimizer": state.optimizer.state_dict(),
                "step": state.step, "best_loss": state.best_loss, "seconds": state.seconds}, path)


def load_checkpoint(path: str | Path, config_cls: type,
                    model_cls: type) -> tuple[torch.nn.Module, object, dict]:
    """A model in eval mode, its config (rebuilt from the checkpoint alone) and the checkpoint."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    mcfg = config_cls.from_dict(ckpt["config"])
    model = model_cls(mcfg)
    model.load_state_dict(ckpt["model"])
    return model.eval(), mcfg, ckpt


def init_weights(path: str | Path, model: torch.nn.Module, task: str) -> dict[str, torch.Tensor]:
    """``model``'s weights from ``path`` (``--init``): a checkpoint of its trainer (``best.pt``,
    ``last.pt``) or an exported model file of ``task`` (``models/pretrained/...``), checked to fit."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--init {path}: no such file; give a checkpoint or an exported {task} model")
    try:
        with warnings.catch_warnings():  # torch.load names a TorchScript file before it fails on it
            warnings.simplefilter("ignore")
            weights = torch.load(path, map_location="cpu", weights_only=False)["model"]
    except Exception:  # not a checkpoint: an exported (TorchScript) model
        from models.format import load_scripted

        try:
            module, meta = load_scripted(path)
        except Exception as exc:
            raise ValueError(f"--init {path} is neither a checkpoint nor a model file: {exc}") from None
        if meta.get("task") != task:
            raise ValueError(f"--init {path} is a {meta.get('task')} model, not a {task} model") from None
        weights = module.state_dict()
    own = model.state_dict()
    misfit = [k for k in own if k not in weights or weights[k].shape != own[k].shape]
    if misfit:
        raise ValueError(f"--init {path} does not fit this model ({len(misfit)} tensors differ, first "
                         f"{misfit[0]}); train with the sizes it was trained with")
    return {k: weights[k].float() for k in own}


def parse_config(config_cls: type, argv: list[str] | None, doc: str | None) -> tuple[object, bool]:
    """``config_cls`` from ``--config FILE`` (JSON of its fields) and one flag per field, which
    override the file; and whether ``--resume`` was given."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="JSON file of TrainConfig fields; flags override it")
    for f in dataclasses.fields(config_cls):
        typ = {"int": int, "float": float, "str": str}[str(f.type)]
        p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=typ, default=None,
                       help=f"(default {f.default})")
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    args = vars(p.parse_args(argv))
    resume = args.pop("resume")
    config = args.pop("config")
    base = json.loads(Path(config).read_text()) if config else {}
    base.update({k: v for k, v in args.items() if v is not None})
    return config_cls(**base), resume


def run(cfg, model: torch.nn.Module, model_config: dict, sample: Callable[[random.Random], dict],
        train_step: Callable[[State, dict], dict[str, float]], validate: Callable[[torch.nn.Module], dict],
        resume: bool = False, progress: bool = True, on_eval: Callable | None = None,
        task: str = "") -> State:
    """Train ``model`` until ``cfg.steps`` or ``cfg.minutes``; a fresh run with ``cfg.init`` starts
    from that file's weights (``init_weights``, ``task`` its model task). ``sample(rng)`` draws a batch,
    ``validate(model)`` returns metrics with ``loss/total`` (lower is better, picks ``best.pt``),
    ``on_eval(writer, model, step)`` may log images. Writes ``<out>/config.json`` first."""
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(cfg.seed)
    state = State(model, torch.optim.Adam(model.parameters(), lr=cfg.lr))
    if resume and (out / "last.pt").exists():
        ckpt = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
        model.load_state_dict(ckpt["model"])
        state.optimizer.load_state_dict(ckpt["optimizer"])
        state.step, state.best_loss, state.seconds = ckpt["step"], ckpt["best_loss"], ckpt["seconds"]
        rng.seed(cfg.seed + state.step)  # a fresh but reproducible batch stream
    elif getattr(cfg, "init", ""):
        model.load_state_dict(init_weights(cfg.init, model, task))
    (out / "config.json").write_text(json.dumps({"train": dataclasses.asdict(cfg), "model": model_config},
                                                indent=1))
    writer = SummaryWriter(str(out / "tb"))
    history_file = out / "history.json"
    history = json.loads(history_file.read_text()) if resume and history_file.exists() else []
    bar = tqdm(total=cfg.steps, initial=state.step, desc=f"train {out.name}", disable=not progress)
    t0, seconds0 = time.time(), state.seconds
    while state.step < cfg.steps:
        logs = train_step(state, sample(rng))
        state.seconds = seconds0 + time.time() - t0
        bar.update(1)
        if not math.isfinite(logs["loss/total"]):
            raise FloatingPointError(f"loss became {logs['loss/total']} at step {state.step}")
        for k, v in logs.items():
            writer.add_scalar(f"train/{k}", v, state.step)
        out_of_time = cfg.minutes > 0 and time.time() - t0 > cfg.minutes * 60
        if state.step % cfg.eval_every == 0 or state.step == cfg.steps or out_of_time:
            valid = validate(model)
            for k, v in valid.items():
                writer.add_scalar(f"valid/{k}", v, state.step)
            if on_eval is not None:
                on_eval(writer, model, state.step)
            history.append({"step": state.step, "train_loss": logs["loss/total"], "seconds": state.seconds,
                            **{f"valid_{k}": v for k, v in valid.items()}})
            bar.set_postfix(loss=f"{logs['loss/total']:.4f}", valid=f"{valid['loss/total']:.4f}")
            if valid["loss/total"] < state.best_loss:
                state.best_loss = valid["loss/total"]
                save(state, model_config, cfg, out / "best.pt")
            save(state, model_config, cfg, out / "last.pt")
            history_file.write_text(json.dumps(history, indent=1))
        if out_of_time:
            break
    bar.close()
    writer.close()
    return state
