"""Train the synthesis model, or its piano-roll baseline, on built performance sets.

    python -m models.performer.train_synth --data bach --minutes 33 --out runs/synth
    python -m models.performer.train_synth --data bach --conditioning pianoroll --out runs/synth-roll
    python -m models.performer.train_synth --data bach --init models/pretrained/performer-synth.pt \
        --lr 5e-4 --out runs/synth-more                       # warm start from the shipped model

Random windows of ``crop`` mel frames (frame i centred on sample i * HOP), with the notes that sound
in them at their performed (aligned) times; MSE on the natural-log mel plus ``kl_weight`` times the
KL of the style latent's posterior against N(0, I), plus ``flux_weight`` times the MSE of the
frame-to-frame change (``flux_mse``: sharper onsets than MSE alone asks for). Adam with a linear
warm-up and a step-decayed rate. Validation: the MSE on fixed windows of the valid split with z = 0
(the prior's mean, as at inference), every ``eval_every`` steps, with target and predicted
spectrograms in TensorBoard (``<out>/tb``), and both as audio through the phase-gradient vocoder (it
has no weights). ``best.pt`` keeps the lowest validation MSE and ``last.pt`` the latest
(``--resume`` continues from it), each with the model and training configs beside the weights; the
resolved config is also ``<out>/config.json``. The loop is ``models.performer.training``'s.
"""
from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.data import performance as pdata
from models.performer import render, training
from models.performer.phase_gradient import PhaseGradient
from models.performer.synth_model import SynthConfig, Synthesizer, collate, window_inputs
from models.performer.training import State, get_lr, load_sets, optimise, parse_config, run


@dataclass
class TrainConfig:
    data: str = "bach"  # comma-separated set names or folders
    out: str = "runs/synth"
    conditioning: str = "notes"  # or "pianoroll": the baseline
    steps: int = 100_000
    minutes: float = 0.0  # wall-clock budget; 0 = none
    batch_size: int = 8
    crop: int = 256  # frames (2.97 s)
    lr: float = 1e-3
    warmup_steps: int = 200
    decay_every: int = 1000  # the rate halves every this many steps
    eval_every: int = 100
    valid_windows: int = 48
    kl_weight: float = 0.02
    flux_weight: float = 0.0  # weight of the MSE of frame-to-frame changes (onsets and decays); 0 = off
    d_model: int = 128
    encoder_layers: int = 3
    decoder_layers: int = 4
    n_heads: int = 2
    d_ff: int = 256
    kernel_size: int = 3
    dropout: float = 0.1
    latent_dim: int = 8
    seed: int = 0
    threads: int = 1
    init: str = ""  # warm start: weights from a checkpoint of this trainer or an exported synthesis model


def model_config(cfg: TrainConfig) -> SynthConfig:
    return SynthConfig(conditioning=cfg.conditioning, d_model=cfg.d_model, encoder_layers=cfg.encoder_layers,
                       decoder_layers=cfg.decoder_layers, n_heads=cfg.n_heads, d_ff=cfg.d_ff,
                       kernel_size=cfg.kernel_size, dropout=cfg.dropout, latent_dim=cfg.latent_dim)


def windows(pieces: list[pdata.PerformancePiece], crop: int, rng: random.Random,
            count: int) -> list[tuple[pdata.PerformancePiece, int]]:
    """``count`` (piece, start frame) pairs drawn uniformly."""
    chosen = []
    for _ in range(count):
        piece = rng.choice(pieces)
        chosen.append((piece, rng.randrange(0, max(1, piece.mel.shape[1] - crop + 1))))
    return chosen


def batch_of(chosen: list[tuple[pdata.PerformancePiece, int]], crop: int) -> dict[str, torch.Tensor]:
    """Model inputs and the target mel (B, n_mels, crop) of windows; short pieces are padded with
    their quietest value (and masked out of the loss)."""
    batch = collate([window_inputs(p.notes, p.qpm, start, crop) for p, start in chosen])
    mel = np.zeros((len(chosen), chosen[0][0].mel.shape[0], crop), np.float32)
    mask = np.zeros((len(chosen), 1, crop), np.float32)
    for b, (p, start) in enumerate(chosen):
        part = p.mel[:, start:start + crop].astype(np.float32)
        mel[b], mask[b, :, :part.shape[1]] = part.min(), 1.0
        mel[b, :, :part.shape[1]] = part
    batch.update(mel=torch.from_numpy(mel), mask=torch.from_numpy(mask),
                 performer=torch.tensor([p.performer for p, _ in chosen]))
    return batch


def predict(model: Synthesizer, batch: dict[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
    return model(batch["ints"], batch["floats"], batch["onsets"], batch["offsets"], batch["padding"],
                 batch["performer"], z, batch["mel"].shape[2])


def masked_mse(pred: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    err = (pred - batch["mel"]) ** 2 * batch["mask"]
    return err.sum() / (batch["mask"].sum() * pred.shape[1])


def flux_mse(pred: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """MSE of the frame-to-frame change of the log-mel (the spectral flux that marks an onset),
    over pairs of frames both inside the mask. Plain MSE rewards a blurred onset that is right on
    average; this term asks for the rise itself."""
    mask = batch["mask"][:, :, 1:] * batch["mask"][:, :, :-1]
    err = (pred.diff(dim=2) - batch["mel"].diff(dim=2)) ** 2 * mask
    return err.sum() / (mask.sum().clamp(min=1.0) * pred.shape[1])


def losses(model: Synthesizer, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    mu, logvar = model.encode_style(batch["mel"])
    z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
    kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(dim=1).mean()
    pred = predict(model, batch, z)
    return {"loss/mel": masked_mse(pred, batch), "loss/kl": kl, "loss/flux": flux_mse(pred, batch)}


def train_step(state: State, batch: dict[str, torch.Tensor], cfg: TrainConfig) -> dict[str, float]:
    state.model.train()
    parts = losses(state.model, batch)
    loss = parts["loss/mel"] + cfg.kl_weight * parts["loss/kl"] + cfg.flux_weight * parts["loss/flux"]
    grad_norm = optimise(state, loss, cfg)
    return {"loss/total": loss.item(), **{k: v.item() for k, v in parts.items()}, "grad_norm": grad_norm,
            "lr": get_lr(state.step, cfg)}


@torch.no_grad()
def validate(model: Synthesizer, batches: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """Mel MSE with z = 0 over fixed windows (``loss/total`` picks the best checkpoint)."""
    model.eval()
    total = frames = 0.0
    for b in batches:
        z = torch.zeros(len(b["performer"]), model.cfg.latent_dim)
        n = float(b["mask"].sum())
        total += masked_mse(predict(model, b, z), b).item() * n
        frames += n
    mse = total / max(frames, 1.0)
    return {"loss/total": mse, "loss/mel": mse}


def spectrogram_image(target: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """(1, 2 n_mels, T) image in [0, 1]: target above prediction, low frequencies at the bottom."""
    both = torch.cat([target.flip(0), pred.flip(0)], dim=0)
    lo, hi = float(target.min()), float(target.max())
    return ((both - lo) / max(hi - lo, 1e-6)).clamp(0, 1)[None]


def peak_normalised(audio: torch.Tensor) -> torch.Tensor:
    """(1, n) audio -> (1, n) at a peak of 0.9 (TensorBoard's player clips at 1)."""
    return audio * (0.9 / audio.abs().max().clamp(min=1e-9))


def load_checkpoint(path: str | Path) -> tuple[Synthesizer, SynthConfig, dict]:
    return training.load_checkpoint(path, SynthConfig, Synthesizer)


def load_with_mel(data: str, split: str) -> list[pdata.PerformancePiece]:
    """Pieces with their mel kept as float16 (half the memory; windows are cast back)."""
    pieces = load_sets(data, split, with_mel=True)
    for p in pieces:
        p.mel = p.mel.astype(np.float16)
    return pieces


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    mcfg = model_config(cfg)
    train_set, valid_set = load_with_mel(cfg.data, "train"), load_with_mel(cfg.data, "valid")
    if not train_set or not valid_set:
        raise ValueError(f"performance data {cfg.data!r} needs train and valid pieces; got "
                         f"{len(train_set)} and {len(valid_set)} (build more with --limit, or all)")
    fixed = windows(valid_set, cfg.crop, random.Random(1234), cfg.valid_windows)
    valid_batches = [batch_of(fixed[i:i + cfg.batch_size], cfg.crop)
                     for i in range(0, len(fixed), cfg.batch_size)]
    example = batch_of(fixed[:1], cfg.crop)

    vocoder = PhaseGradient()  # no weights: the predicted mel as audio, beside the target's
    logged: set[str] = set()

    def on_eval(writer, model, step: int) -> None:
        with torch.no_grad():
            pred = predict(model.eval(), example, torch.zeros(1, mcfg.latent_dim))
            heard = {"valid/predicted_audio": pred} if "target" in logged else \
                {"valid/target_audio": example["mel"], "valid/predicted_audio": pred}
            for tag, mel in heard.items():
                writer.add_audio(tag, peak_normalised(vocoder(mel)), step, render.SAMPLE_RATE_HZ)
        logged.add("target")
        writer.add_image("valid/mel_target_above_prediction", spectrogram_image(example["mel"][0], pred[0]),
                         step)

    state = run(cfg, Synthesizer(mcfg), mcfg.to_dict(),
                lambda rng: batch_of(windows(train_set, cfg.crop, rng, cfg.batch_size), cfg.crop),
                lambda state, batch: train_step(state, batch, cfg),
                lambda model: validate(model, valid_batches),
                resume=resume, progress=progress, on_eval=on_eval, task="perform_synth")
    return {"best_valid_mse": state.best_loss, "steps": state.step, "train_seconds": state.seconds,
            "train_pieces": len(train_set), "valid_pieces": len(valid_set), "conditioning": cfg.conditioning}


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, bool]:
    cfg, resume = parse_config(TrainConfig, argv, __doc__)
    model_config(cfg)  # the model's options validate themselves before any data is read
    return cfg, resume


def main(argv: list[str] | None = None) -> None:
    try:
        cfg, resume = parse_args(argv)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(json.dumps(train(cfg, resume=resume)))


if __name__ == "__main__":
    main()
