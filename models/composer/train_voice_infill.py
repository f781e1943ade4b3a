"""Train the bidirectional voice-infill model (models.composer.voice_infill) on the bach chorales.

    python -m models.composer.train_voice_infill --config models/configs/composer-voice-infill.json \
        --out runs/voice-infill --export models/pretrained/composer-voice-infill.pt

Random crops of ``crop_frames`` 16th-note frames of the train split's four-voice chorales, each
transposed by a random shift that keeps every voice in its range. Masking per crop: 1-3 whole voices
hidden (over the crop, over a span of it, or a random share of their cells), or hidden with their
rhythm kept (``keep_rhythm`` filling); the loss is pitch cross-entropy plus onset BCE on the hidden
cells only. Validation: the same losses on fixed masks of the valid split, and the note F1 of filling
each hidden voice of a few valid chorales. The resolved config goes to ``<out>/config.json``;
``best.pt``/``last.pt`` hold the model config beside the weights; ``--resume`` continues from
``last.pt``; ``--export`` writes the best checkpoint as the model file. TensorBoard logs go to
``<out>/tb``.
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

from models.composer.train import get_lr  # the composer's schedule: warm-up, then cosine
from models.composer.voice_infill import (
    ONSET_MASK,
    VOICES,
    VoiceInfillConfig,
    VoiceInfiller,
    VoiceInfillNet,
    export_infiller,
    infill_metadata,
    metre_frames,
    to_frames,
)
from models.tensorboard import tensorboard_writer


@dataclass
class TrainConfig:
    data: str = "bach"
    out: str = "runs/voice-infill"
    minutes: float = 0.0  # wall-clock budget; 0 = until max_steps
    max_steps: int = 3000
    batch_size: int = 16
    crop_frames: int = 128
    lr: float = 2e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    weight_decay: float = 0.01
    d_model: int = 128
    n_blocks: int = 10
    dropout: float = 0.1
    transpose_low: int = -5
    transpose_high: int = 6
    eval_every: int = 250
    eval_pieces: int = 12  # valid chorales whose voices are filled for the F1 check
    limit_train: int = 0
    limit_valid: int = 0
    seed: int = 0
    threads: int = 1


@dataclass
class State:
    model: VoiceInfillNet
    optimizer: torch.optim.Optimizer
    step: int = 0
    best_f1: float = -1.0
    elapsed_s: float = 0.0


# data

def chorales(split: str, limit: int = 0, data: str = "bach") -> list:
    """The split's chorales with all four voices, reduced to them (as compose_eval's held_out)."""
    from models.composer.data import load_pieces, select_tracks

    pieces = [p for p in select_tracks(load_pieces(data, split), list(VOICES))
              if list(p.instruments) == list(VOICES)]
    return pieces[:limit or None]


def meter_of(piece) -> tuple[int, int]:
    return int(piece.meters[0]["numerator"]), int(piece.meters[0]["denominator"])


class Frames:
    """Each piece as frames once: pitch, onset (V, T), bar_pos, bar_frames (T,), and its shifts."""

    def __init__(self, pieces: list, mcfg: VoiceInfillConfig, shifts: range) -> None:
        from models.data.instruments import INSTRUMENTS

        self.items = []
        for p in pieces:
            T = -(-int((p.notes["time"] + p.notes["duration"]).max()) // 6)
            pitch, onset = to_frames([p.notes[p.track == v] for v in range(4)], T, mcfg)
            pos, bar = metre_frames(T, p.bar_starts, meter_of(p))
            ok = []
            for s in shifts:
                good = True
                for v, name in enumerate(VOICES):
                    sounding = p.notes["pitch"][p.track == v].astype(int)
                    if not len(sounding):
                        continue
                    lo = min(INSTRUMENTS[name].low, sounding.min(), )
                    hi = max(INSTRUMENTS[name].high, sounding.max())
                    good &= (sounding.min() + s >= max(lo, mcfg.pitch_low)
                             and sounding.max() + s <= min(hi, mcfg.pitch_high))
                if good:
                    ok.append(s)
            self.items.append((pitch, onset, pos, bar, ok or [0]))
        self.cfg = mcfg

    def batch(self, n: int, crop: int, rng: random.Random) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        P = np.full((n, 4, crop), cfg.rest, np.int64)
        On = np.zeros((n, 4, crop), np.int64)
        pos = np.zeros((n, crop), np.int64)
        bar = np.full((n, crop), 16, np.int64)
        real = np.zeros((n, 1, crop), bool)
        for b in range(n):
            pitch, onset, ppos, pbar, shifts = self.items[rng.randrange(len(self.items))]
            T = pitch.shape[1]
            start = rng.randrange(0, max(1, T - crop + 1))
            sl = slice(start, start + crop)
            L = len(ppos[sl])
            s = rng.choice(shifts)
            p = pitch[:, sl]
            P[b, :, :L] = np.where(p == cfg.rest, cfg.rest, p + s)
            On[b, :, :L], pos[b, :L], bar[b, :L], real[b, 0, :L] = onset[:, sl], ppos[sl], pbar[sl], True
        inp_p, inp_o, hide_p, hide_o = mask_batch(P, On, real, cfg, rng)
        return {"pitch": torch.from_numpy(inp_p), "onset": torch.from_numpy(inp_o),
                "bar_pos": torch.from_numpy(pos), "bar_frames": torch.from_numpy(bar),
                "target_pitch": torch.from_numpy(P), "target_onset": torch.from_numpy(On),
                "loss_pitch": torch.from_numpy(hide_p), "loss_onset": torch.from_numpy(hide_o)}


def mask_batch(P: np.ndarray, On: np.ndarray, real: np.ndarray, cfg: VoiceInfillConfig,
               rng: random.Random) -> tuple[np.ndarray, ...]:
    """Inputs with hidden cells and where the loss counts: per crop 1-3 voices hidden over the whole
    crop (45%), over a span (20%), a random share of their cells (20%), or their pitches only, the
    rhythm kept (15%)."""
    n, V, T = P.shape
    hidden = np.zeros((n, V, T), bool)
    rhythm = np.zeros(n, bool)
    for b in range(n):
        k = rng.choices((1, 2, 3), (0.5, 0.3, 0.2))[0]
        vs = rng.sample(range(V), k)
        r = rng.random()
        if r < 0.45:
            hidden[b, vs] = True
        elif r < 0.65:
            length = rng.randint(8, T)
            s = rng.randrange(0, T - length + 1)
            hidden[b, vs, s:s + length] = True
        elif r < 0.85:
            share = rng.uniform(0.1, 1.0)
            hidden[b, vs] = np.random.default_rng(rng.randrange(1 << 30)).random((k, T)) < share
        else:
            hidden[b, vs] = True
            rhythm[b] = True
    hidden &= real
    sounding = P != cfg.rest
    keep = rhythm[:, None, None]
    hide_p = hidden & (~keep | sounding)
    hide_o = hidden & ~keep
    inp_p = np.where(hide_p, cfg.mask, P)
    inp_o = np.where(hide_o, ONSET_MASK, On)
    return inp_p, inp_o, hide_p, hide_o & sounding


def losses(model: VoiceInfillNet, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    logits, onsets = model(batch["pitch"], batch["onset"], batch["bar_pos"], batch["bar_frames"])
    mp, mo = batch["loss_pitch"], batch["loss_onset"]
    ce = F.cross_entropy(logits[mp], batch["target_pitch"][mp]) if mp.any() else logits.sum() * 0
    bce = (F.binary_cross_entropy_with_logits(onsets[mo], batch["target_onset"][mo].float())
           if mo.any() else onsets.sum() * 0)
    return {"loss/pitch": ce, "loss/onset": bce, "loss": ce + bce}


def train_step(state: State, batch: dict[str, torch.Tensor], cfg: TrainConfig) -> dict[str, float]:
    state.model.train()
    lr = get_lr(state.step, cfg)
    for g in state.optimizer.param_groups:
        g["lr"] = lr
    out = losses(state.model, batch)
    state.optimizer.zero_grad(set_to_none=True)
    out["loss"].backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(state.model.parameters(), 1.0)
    state.optimizer.step()
    state.step += 1
    return {k: float(v.detach()) for k, v in out.items()} | {"grad_norm": float(grad_norm), "lr": lr}


def infill_f1(infiller: VoiceInfiller, pieces: list, passes: int = 1, temperature: float = 0.0,
              top_p: float = 1.0, seed: int = 0, keep_rhythm: bool = False) -> dict[str, float]:
    """Hide each voice of each piece in turn, fill it, note F1 (onset and pitch) against it: mean per
    voice and overall, as benchmarks.compose_eval's infill section scores (seed + the piece's index)."""
    from models.composer.metrics import note_f1

    scores = {v: [] for v in VOICES}
    for i, p in enumerate(pieces):
        T = -(-int((p.notes["time"] + p.notes["duration"]).max()) // 6)
        voices = [p.notes[p.track == v] for v in range(4)]
        for h, name in enumerate(VOICES):
            hidden = np.zeros((4, T), bool)
            hidden[h] = True
            given = [n if v != h or keep_rhythm else n[:0] for v, n in enumerate(voices)]
            out = infiller.fill(given, hidden, p.bar_starts, meter_of(p), passes, temperature, top_p,
                                seed + i, keep_rhythm=keep_rhythm)
            scores[name].append(note_f1(voices[h], out[h])["f1"])
    res = {f"f1/{v}": float(np.mean(s)) for v, s in scores.items()}
    res["f1"] = float(np.mean([x for s in scores.values() for x in s]))
    return res


# checkpoints

def save(state: State, cfg: TrainConfig, path: Path, metrics: dict | None = None) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"config": state.model.cfg.to_dict(), "train_config": dataclasses.asdict(cfg),
                "model": state.model.state_dict(), "optimizer": state.optimizer.state_dict(),
                "step": state.step, "best_f1": state.best_f1, "elapsed_s": state.elapsed_s,
                "metrics": metrics or {}}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> tuple[VoiceInfillNet, dict]:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model = VoiceInfillNet(VoiceInfillConfig.from_dict(ckpt["config"]))
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    from tqdm import tqdm

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    train_set = chorales("train", cfg.limit_train, cfg.data)
    valid_set = chorales("valid", cfg.limit_valid, cfg.data)
    if not train_set or not valid_set:
        raise ValueError(f"dataset {cfg.data!r} needs train and valid chorales with soprano, alto, tenor "
                         f"and bass; got {len(train_set)} and {len(valid_set)}")
    mcfg = VoiceInfillConfig(d_model=cfg.d_model, n_blocks=cfg.n_blocks, dropout=cfg.dropout)
    model = VoiceInfillNet(mcfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    state = State(model, optimizer)
    if resume and (out / "last.pt").exists():
        ckpt = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state.step, state.best_f1, state.elapsed_s = ckpt["step"], ckpt["best_f1"], ckpt["elapsed_s"]
        rng.seed(cfg.seed * 1000 + state.step)
    frames = Frames(train_set, mcfg, range(cfg.transpose_low, cfg.transpose_high + 1))
    valid_frames = Frames(valid_set, mcfg, range(0, 1))
    valid_batches = [valid_frames.batch(cfg.batch_size, cfg.crop_frames, random.Random(k)) for k in range(4)]
    resolved = {"train": dataclasses.asdict(cfg), "model": mcfg.to_dict()}
    (out / "config.json").write_text(json.dumps(resolved, indent=1))
    writer = tensorboard_writer(out)
    history: list[dict] = []
    bar = tqdm(total=cfg.max_steps, initial=state.step, desc=f"train {out.name}", disable=not progress)
    t0 = time.time() - state.elapsed_s
    metrics: dict = {}
    while True:
        stop = state.step >= cfg.max_steps or (cfg.minutes > 0 and time.time() - t0 > 60 * cfg.minutes)
        if (stop or state.step % cfg.eval_every == 0) and state.step > 0:
            state.elapsed_s = time.time() - t0
            model.eval()
            with torch.no_grad():
                vl = {k: float(np.mean([float(losses(model, b)[k]) for b in valid_batches]))
                      for k in ("loss/pitch", "loss/onset")}
            metrics = {**{f"valid/{k}": v for k, v in vl.items()},
                       **{f"valid/{k}": v for k, v in infill_f1(VoiceInfiller(model, mcfg),
                                                                 valid_set[:cfg.eval_pieces]).items()}}
            history.append({"step": state.step, "seconds": state.elapsed_s, **metrics})
            if writer:
                for k, v in metrics.items():
                    writer.add_scalar(k, v, state.step)
            bar.set_postfix(f1=f"{metrics['valid/f1']:.3f}", ce=f"{vl['loss/pitch']:.3f}")
            if metrics["valid/f1"] > state.best_f1:
                state.best_f1 = metrics["valid/f1"]
                save(state, cfg, out / "best.pt", metrics)
            save(state, cfg, out / "last.pt", metrics)
            (out / "history.json").write_text(json.dumps(history, indent=1))
        if stop:
            break
        logs = train_step(state, frames.batch(cfg.batch_size, cfg.crop_frames, rng), cfg)
        if not math.isfinite(logs["loss"]):
            raise FloatingPointError(f"loss became {logs['loss']} at step {state.step}")
        bar.update(1)
        if writer and state.step % 10 == 0:
            for k, v in logs.items():
                writer.add_scalar(f"train/{k}", v, state.step)
    bar.close()
    if writer:
        writer.close()
    return {"best_valid_f1": state.best_f1, "steps": state.step, "seconds": time.time() - t0,
            "n_params": sum(p.numel() for p in model.parameters()), "valid": metrics}


def export(checkpoint: str | Path, path: str | Path, name: str | None = None) -> Path:
    """The checkpoint as the model file (TorchScript with metadata), verified against eager mode."""
    model, ckpt = load_checkpoint(checkpoint)
    meta = infill_metadata(model.cfg, name or Path(path).stem, ckpt.get("metrics", {}),
                           data=ckpt["train_config"]["data"])
    return export_infiller(model, path, meta)


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, bool, str | None]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="JSON file of TrainConfig fields; flags override it")
    for f in dataclasses.fields(TrainConfig):
        typ = {"int": int, "float": float, "str": str}[str(f.type)]
        p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=typ, default=None,
                       help=f"(default {f.default})")
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    p.add_argument("--export", metavar="FILE.pt", help="after training, write best.pt as this model file")
    args = vars(p.parse_args(argv))
    resume, target, config = args.pop("resume"), args.pop("export"), args.pop("config")
    base = json.loads(Path(config).read_text()) if config else {}
    unknown = set(base) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        p.error(f"{config} has unknown fields {', '.join(sorted(unknown))}; remove them")
    base.update({k: v for k, v in args.items() if v is not None})
    if target and not target.endswith(".pt"):
        p.error(f"--export writes TorchScript; name the file with .pt, got {target!r}")
    return TrainConfig(**base), resume, target


def main(argv: list[str] | None = None) -> None:
    cfg, resume, target = parse_args(argv)
    result = train(cfg, resume=resume)
    if target:
        path = export(Path(cfg.out) / "best.pt", target)
        result["exported"] = f"{path} ({path.stat().st_size / 1e6:.2f} MB)"
    print(json.dumps(result))


if __name__ == "__main__":
    main()
