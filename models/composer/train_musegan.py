"""Train the MuseGAN hybrid baseline (``models.composer.musegan``) on a multitrack set's chorales.

    python -m models.composer.train_musegan --data bach --minutes 30 --out runs/musegan
    python -m models.composer.train_musegan --out runs/musegan --resume

Data: the train split's pieces with soprano, alto, tenor and bass (reduced to those four tracks)
whose first meter is 4/4; every window of ``bars`` consecutive whole 4/4 bars (``hop_bars`` apart),
in every transposition from ``transpose_low`` to ``transpose_high`` semitones that keeps each voice
in its instrument's range (``models.data.multitrack.augmentations``) and every note inside the
model's pitch rows. WGAN-GP: ``n_critic`` critic steps per generator step, gradient penalty weight
``gp_weight``, Adam (lr 1e-3, betas 0.5/0.9, as MuseGAN). ``<out>/config.json`` holds the
resolved config; ``<out>/last.pt`` the model config beside the weights, the optimiser states and
the step; ``--resume`` continues from it. TensorBoard logs go to ``<out>/tb`` when installed.
Bad options or data: one sentence on stderr, exit 2, nothing written.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.composer.data import load_pieces, select_tracks
from models.composer.musegan import (
    VOICES,
    MuseGAN,
    MuseGANConfig,
    gradient_penalty,
    load,
    notes_to_roll,
    save,
)
from models.data.multitrack import augmentations
from models.tensorboard import tensorboard_writer

MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(MuseGANConfig))


@dataclass
class MuseGANTrainConfig:
    data: str = "bach"
    out: str = "runs/musegan"
    minutes: float = 0.0  # wall-clock budget; 0 = until max_steps
    max_steps: int = 20000  # generator steps
    batch_size: int = 16  # with 32-channel nets: ~0.26 s CPU per generator step here
    n_critic: int = 5
    lr: float = 1e-3
    gp_weight: float = 10.0
    transpose_low: int = -5
    transpose_high: int = 6
    hop_bars: int = 1
    limit_train: int = 0  # 0 = every training piece
    save_every: int = 200
    seed: int = 0
    threads: int = 1
    # the model (MuseGANConfig)
    tracks: int = 4
    bars: int = 4
    steps_per_bar: int = 16
    low_pitch: int = 34
    n_pitches: int = 48
    z_dim: int = 32
    g_channels: int = 32
    d_channels: int = 32

    def __post_init__(self):
        checks = [("minutes", self.minutes >= 0, "0 or more"),
                  ("max_steps", self.max_steps >= 1, "at least 1"),
                  ("batch_size", self.batch_size >= 2, "at least 2"),
                  ("n_critic", self.n_critic >= 1, "at least 1"),
                  ("lr", self.lr > 0, "positive"), ("gp_weight", self.gp_weight >= 0, "0 or more"),
                  ("transpose_low", self.transpose_low <= 0 <= self.transpose_high,
                   "at most 0 with transpose_high at least 0"),
                  ("hop_bars", self.hop_bars >= 1, "at least 1"),
                  ("save_every", self.save_every >= 1, "at least 1"),
                  ("threads", self.threads >= 1, "at least 1"),
                  ("tracks", self.tracks == len(VOICES), f"{len(VOICES)} (soprano, alto, tenor, bass)")]
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"--{name.replace('_', '-')} must be {allowed}, got {getattr(self, name)}")
        self.model_config()  # validates the model fields

    def model_config(self) -> MuseGANConfig:
        return MuseGANConfig(**{k: getattr(self, k) for k in MODEL_FIELDS})


@dataclass
class State:
    model: MuseGAN
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    step: int = 0
    elapsed_s: float = 0.0


# data

def chorales(pieces: list) -> list:
    """Pieces with all four voices, reduced to them, whose first meter is 4/4."""
    return [p for p in select_tracks(pieces, list(VOICES)) if list(p.instruments) == list(VOICES)
            and (int(p.meters[0]["numerator"]), int(p.meters[0]["denominator"])) == (4, 4)]


def phrases(pieces: list, cfg: MuseGANConfig, shifts=range(1), hop_bars: int = 1) -> np.ndarray:
    """(N, tracks, bars, steps, pitches / 8) uint8: the bool rolls of every window of ``cfg.bars``
    consecutive whole 4/4 bars of each piece and transposition, packed along pitch (np.packbits);
    windows with a note outside the pitch rows, or silent ones, are left out."""
    bar_ticks = cfg.step_ticks * cfg.steps_per_bar
    out = []
    for piece in pieces:
        starts = piece.bar_starts
        end = int((piece.notes["time"] + piece.notes["duration"]).max()) if len(piece.notes) else 0
        lengths = np.diff(np.append(starts, max(end, starts[-1] if len(starts) else 0)))
        for moved in augmentations(piece, shifts):
            for i in range(0, len(starts) - cfg.bars + 1, hop_bars):
                if not (lengths[i:i + cfg.bars] == bar_ticks).all():
                    continue  # a pickup, a meter change or the piece's end inside the window
                roll = notes_to_roll(moved.notes, moved.track, cfg, start=int(starts[i]))
                if roll is None or not roll.any():
                    continue
                out.append(np.packbits(roll.reshape(cfg.tracks, cfg.bars, cfg.steps_per_bar, -1), axis=-1))
    if not out:
        raise ValueError("no 4-bar 4/4 phrase of soprano, alto, tenor and bass in the training pieces; "
                         "train on a set of four-voice chorales (--data bach)")
    return np.stack(out)


def batch(data: np.ndarray, size: int, rng: np.random.Generator, cfg: MuseGANConfig) -> torch.Tensor:
    rows = np.unpackbits(data[rng.integers(0, len(data), size)], axis=-1, count=cfg.n_pitches)
    return torch.from_numpy(rows.astype(np.float32))  # (B, T, bars, steps, P)


# training

def train_step(state: State, data: np.ndarray, rng: np.random.Generator,
               cfg: MuseGANTrainConfig) -> dict[str, float]:
    """``n_critic`` critic updates on fresh real and fake batches, then one generator update."""
    g, d, mcfg = state.model.generator, state.model.discriminator, state.model.cfg
    g.train()
    for _ in range(cfg.n_critic):
        real = batch(data, cfg.batch_size, rng, mcfg)
        with torch.no_grad():
            fake = g(**g.sample_latents(cfg.batch_size))
        w = d(real).mean() - d(fake).mean()
        gp = gradient_penalty(d, real, fake)
        loss_d = -w + cfg.gp_weight * gp
        state.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        state.opt_d.step()
    fake = g(**g.sample_latents(cfg.batch_size))
    loss_g = -d(fake).mean()
    state.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    state.opt_g.step()
    state.step += 1
    return {"loss/d": loss_d.item(), "loss/g": loss_g.item(), "wasserstein": w.item(), "gp": gp.item(),
            "fake/density": fake.detach().mean().item()}


def _save(state: State, cfg: MuseGANTrainConfig, path: Path, logs: dict) -> None:
    save(state.model, path, train_config=dataclasses.asdict(cfg), opt_g=state.opt_g.state_dict(),
         opt_d=state.opt_d.state_dict(), step=state.step, elapsed_s=state.elapsed_s, logs=logs)


def train(cfg: MuseGANTrainConfig, resume: bool = False, progress: bool = True) -> dict:
    from tqdm import tqdm

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    mcfg = cfg.model_config()
    pieces = chorales(load_pieces(cfg.data, "train", cfg.limit_train))
    data = phrases(pieces, mcfg, range(cfg.transpose_low, cfg.transpose_high + 1), cfg.hop_bars)
    out = Path(cfg.out)
    last = out / "last.pt"
    model = MuseGAN(mcfg)
    betas = (0.5, 0.9)
    state = State(model, torch.optim.Adam(model.generator.parameters(), cfg.lr, betas=betas),
                  torch.optim.Adam(model.discriminator.parameters(), cfg.lr, betas=betas))
    if resume and last.exists():
        loaded, ckpt = load(last)
        if ckpt["config"] != mcfg.to_dict():
            raise ValueError(f"{last} holds a model of another shape ({ckpt['config']}); resume with the "
                             "same model options or train into a new --out")
        model.load_state_dict(loaded.state_dict())
        state.opt_g.load_state_dict(ckpt["opt_g"])
        state.opt_d.load_state_dict(ckpt["opt_d"])
        state.step, state.elapsed_s = ckpt["step"], ckpt["elapsed_s"]
    rng = np.random.default_rng(cfg.seed * 1_000_003 + state.step)
    torch.manual_seed(cfg.seed * 1_000_003 + state.step)
    out.mkdir(parents=True, exist_ok=True)
    saved = {"train": dataclasses.asdict(cfg), "model": mcfg.to_dict(), "phrases": len(data),
             "pieces": len(pieces)}
    (out / "config.json").write_text(json.dumps(saved, indent=1) + "\n")
    writer = tensorboard_writer(out)
    bar = tqdm(total=cfg.max_steps, initial=state.step, desc=f"musegan {out.name}", disable=not progress)
    t0 = time.time() - state.elapsed_s
    logs: dict = {}
    while state.step < cfg.max_steps and not (cfg.minutes > 0 and time.time() - t0 > 60 * cfg.minutes):
        logs = train_step(state, data, rng, cfg)
        if not all(math.isfinite(v) for v in logs.values()):
            raise FloatingPointError(f"a loss became non-finite at step {state.step}: {logs}")
        bar.update(1)
        if state.step % 10 == 0:
            bar.set_postfix(w=f"{logs['wasserstein']:.3f}", density=f"{logs['fake/density']:.3f}")
            if writer:
                for k, v in logs.items():
                    writer.add_scalar(f"train/{k}", v, state.step)
        if state.step % cfg.save_every == 0:
            state.elapsed_s = time.time() - t0
            _save(state, cfg, last, logs)
    state.elapsed_s = time.time() - t0
    _save(state, cfg, last, logs)
    bar.close()
    if writer:
        writer.close()
    return {"steps": state.step, "seconds": state.elapsed_s, "phrases": len(data), "pieces": len(pieces),
            "n_params": {"generator": sum(p.numel() for p in model.generator.parameters()),
                         "discriminator": sum(p.numel() for p in model.discriminator.parameters())},
            "last": logs, "checkpoint": str(last)}


def parse_args(argv: list[str] | None = None) -> tuple[MuseGANTrainConfig, bool]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="JSON file of MuseGANTrainConfig fields; flags override it")
    for f in dataclasses.fields(MuseGANTrainConfig):
        typ = {"int": int, "float": float, "str": str}[str(f.type)]
        p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=typ, default=None,
                       help=f"(default {f.default})")
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    args = vars(p.parse_args(argv))
    resume, config = args.pop("resume"), args.pop("config")
    try:
        base = json.loads(Path(config).read_text()) if config else {}
    except (OSError, ValueError) as e:
        p.exit(2, f"error: --config {config} is not a readable JSON file ({e}); "
               "give a JSON object of fields\n")
    unknown = set(base) - {f.name for f in dataclasses.fields(MuseGANTrainConfig)}
    if unknown:
        p.exit(2, f"error: --config {config} has unknown fields {sorted(unknown)}; "
               "see --help for the fields\n")
    base.update({k: v for k, v in args.items() if v is not None})
    try:
        return MuseGANTrainConfig(**base), resume
    except ValueError as e:
        p.exit(2, f"error: {e}\n")


def main(argv: list[str] | None = None) -> None:
    cfg, resume = parse_args(argv)
    try:
        result = train(cfg, resume=resume)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print(json.dumps(result))


if __name__ == "__main__":
    main()


__all__ = ["MuseGANTrainConfig", "chorales", "phrases", "train"]
