"""Train the vocoder (``models.performer.vocoder``) on a built performance set's audio.

    python -m models.performer.train_vocoder --data bach --minutes 40 --out runs/vocoder
    python -m models.performer.train_vocoder --data bach --minutes 40 --out runs/vocoder --resume

Random crops of ``segment_samples`` from the set's train audio (crops quieter than ``min_rms_db``
are drawn again: the renders end in a second of release), a random gain of ±``gain_db``, and the
crop's log-mel computed as ``render.log_mel`` does. The generator's loss is mel L1 (× ``mel_weight``)
and the multi-resolution STFT distance (× ``stft_weight``; the mel stops at 8 kHz) alone until
``gan_start_step``, then adds the least-squares GAN loss of the multi-period and
multi-resolution discriminators and feature matching (× ``fm_weight``) (``vocoder_gan``). AdamW,
β = (0.8, 0.99), a linear warm-up then cosine decay over ``steps``. Validation resynthesises fixed
clips of the valid audio every ``eval_every`` steps (mel L1, log-mel MSE, multi-resolution STFT
distance); ``best.pt`` keeps the lowest mel L1, ``last.pt`` the latest, each with the model and
training configs beside the weights (``--resume`` continues from ``last.pt``); the resolved config
is ``<out>/config.json``; TensorBoard (``<out>/tb``) gets the losses and audio of the clips.
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
from models.performer import training
from models.performer.vocoder import MelSpectrogram, Vocoder, VocoderConfig
from models.performer.vocoder_gan import (
    Discriminators,
    discriminator_loss,
    feature_loss,
    generator_loss,
    stft_distance,
)


@dataclass
class TrainConfig:
    data: str = "bach"  # comma-separated set names or folders
    out: str = "runs/vocoder"
    generator: str = "vocos"
    dim: int = 192
    intermediate_dim: int = 576
    n_layers: int = 6
    steps: int = 20_000  # the schedule's length; training may stop earlier at `minutes`
    minutes: float = 0.0  # wall-clock budget; 0 = none
    batch_size: int = 8
    segment_samples: int = 8192  # 32 hops: 0.37 s
    lr: float = 5e-4
    warmup_steps: int = 200
    gan_start_step: int = 1000
    mel_weight: float = 45.0
    fm_weight: float = 2.0
    stft_weight: float = (
        2.5  # the multi-resolution STFT distance: constrains what the mel leaves out (> 8 kHz)
    )
    period_channels: str = "8,32,64,128,128"  # a quarter of HiFi-GAN's widths: one CPU thread trains it
    resolution_channels: int = 16
    gain_db: float = 6.0
    min_rms_db: float = -60.0
    eval_every: int = 250
    valid_clips: int = 8
    valid_seconds: float = 3.0
    seed: int = 0
    threads: int = 1
    init: str = ""  # warm start: generator weights from a checkpoint of this trainer or an exported vocoder


@dataclass
class State:
    generator: Vocoder
    discriminators: Discriminators
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    step: int = 0
    best_loss: float = math.inf
    seconds: float = 0.0  # training time before this run (resumed runs add to it)


def get_lr(step: int, cfg: TrainConfig) -> float:
    warm = min(1.0, (step + 1) / max(cfg.warmup_steps, 1))
    return cfg.lr * warm * 0.5 * (1 + math.cos(math.pi * min(step, cfg.steps) / max(cfg.steps, 1)))


def audio_files(data: str, split: str) -> list[Path]:
    """The WAV files of a split of one or more built sets."""
    files = []
    for name in data.split(","):
        if name:
            root = pdata.resolve(name)
            files += [
                root / "audio" / f"{row['key']}.wav"
                for row in json.loads((root / "index.json").read_text())
                if row["split"] == split
            ]
    return [f for f in files if f.exists()]


def read_wav(path: Path) -> np.ndarray:
    """Mono float32 in [-1, 1) (16-bit files as the builder writes them; float files as they are)."""
    from scipy.io import wavfile

    _, audio = wavfile.read(path, mmap=True)
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    return audio.astype(np.float32) / 32768.0 if audio.dtype == np.int16 else np.asarray(audio, np.float32)


class Crops:
    """Random loud-enough crops of a list of files, memory-mapped."""

    def __init__(
        self, files: list[Path], segment: int, min_rms_db: float, gain_db: float, rng: random.Random
    ):
        self.files, self.segment, self.rng, self.gain_db = files, segment, rng, gain_db
        self.min_rms = 10 ** (min_rms_db / 20)
        self._cache: dict[Path, np.ndarray] = {}

    def _audio(self, path: Path) -> np.ndarray:
        if path not in self._cache:
            from scipy.io import wavfile

            self._cache[path] = wavfile.read(path, mmap=True)[1]
        return self._cache[path]

    def one(self) -> np.ndarray:
        for _ in range(20):
            raw = self._audio(self.rng.choice(self.files))
            if len(raw) < self.segment:
                continue
            start = self.rng.randrange(0, len(raw) - self.segment + 1)
            clip = raw[start : start + self.segment].astype(np.float32) / 32768.0
            if np.sqrt(np.mean(clip**2)) >= self.min_rms:
                break
        gain = 10 ** (self.rng.uniform(-self.gain_db, self.gain_db) / 20)
        return np.clip(clip * gain, -1.0, 1.0)

    def batch(self, n: int) -> torch.Tensor:
        return torch.from_numpy(np.stack([self.one() for _ in range(n)]))  # (B, segment)


def valid_clips(files: list[Path], n: int, seconds: float, hop: int, sample_rate_hz: int) -> torch.Tensor:
    """(n, samples) fixed clips: the loudest window of `seconds` (a whole number of hops) in each of
    the first n files."""
    length = int(seconds * sample_rate_hz) // hop * hop
    clips = []
    for path in files[:n]:
        audio = read_wav(path)
        if len(audio) < length:
            audio = np.pad(audio, (0, length - len(audio)))
        energy = np.convolve(audio[::hop] ** 2, np.ones(length // hop), mode="valid")
        start = int(np.argmax(energy)) * hop
        clips.append(audio[start : start + length])
    return torch.from_numpy(np.stack(clips))


def model_config(cfg: TrainConfig) -> VocoderConfig:
    return VocoderConfig(
        generator=cfg.generator, dim=cfg.dim, intermediate_dim=cfg.intermediate_dim, n_layers=cfg.n_layers
    )


def train_step(
    state: State, audio: torch.Tensor, mel_fn: MelSpectrogram, cfg: TrainConfig
) -> dict[str, float]:
    state.generator.train()
    lr = get_lr(state.step, cfg)
    for opt in (state.opt_g, state.opt_d):
        for g in opt.param_groups:
            g["lr"] = lr
    mel = mel_fn(audio)  # (B, n_mels, T)
    fake = state.generator(mel)  # (B, segment)
    logs = {}
    gan = state.step >= cfg.gan_start_step
    if gan:
        d_loss = discriminator_loss(state.discriminators(audio), state.discriminators(fake.detach()))
        state.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        torch.nn.utils.clip_grad_norm_(state.discriminators.parameters(), 1000.0)
        state.opt_d.step()
        logs["loss/disc"] = d_loss.item()
    mel_loss = torch.nn.functional.l1_loss(mel_fn(fake), mel)
    stft_loss = stft_distance(fake, audio)
    loss = cfg.mel_weight * mel_loss + cfg.stft_weight * stft_loss
    if gan:
        real_out, fake_out = state.discriminators(audio), state.discriminators(fake)
        adv, fm = generator_loss(fake_out), feature_loss(real_out, fake_out)
        loss = loss + adv + cfg.fm_weight * fm
        logs["loss/adv"], logs["loss/fm"] = adv.item(), fm.item()
    state.opt_g.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(state.generator.parameters(), 1000.0)
    state.opt_g.step()
    state.step += 1
    return {
        "loss/total": loss.item(),
        "loss/mel": mel_loss.item(),
        "loss/stft": stft_loss.item(),
        "grad_norm": float(grad_norm),
        "lr": lr,
        **logs,
    }


@torch.no_grad()
def validate(
    model: Vocoder, clips: torch.Tensor, mel_fn: MelSpectrogram
) -> tuple[dict[str, float], torch.Tensor]:
    """Resynthesis of the clips from their mels: mel L1, log-mel MSE, multi-resolution STFT distance."""
    model.eval()
    mel = mel_fn(clips)
    fake = model(mel)
    fake_mel = mel_fn(fake)
    return (
        {
            "mel_l1": float((fake_mel - mel).abs().mean()),
            "log_mel_mse": float(((fake_mel - mel) ** 2).mean()),
            "stft_distance": float(stft_distance(fake, clips)),
        },
        fake,
    )


def save(state: State, mcfg: VocoderConfig, cfg: TrainConfig, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "config": mcfg.to_dict(),
            "train_config": dataclasses.asdict(cfg),
            "model": state.generator.state_dict(),
            "discriminators": state.discriminators.state_dict(),
            "opt_g": state.opt_g.state_dict(),
            "opt_d": state.opt_d.state_dict(),
            "step": state.step,
            "best_loss": state.best_loss,
            "seconds": state.seconds,
        },
        tmp,
    )
    tmp.replace(path)  # a run killed while saving keeps its previous checkpoint


def load_checkpoint(path: str | Path) -> tuple[Vocoder, VocoderConfig, dict]:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    mcfg = VocoderConfig.from_dict(ckpt["config"])
    model = Vocoder(mcfg)
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
    train_files, valid_files = audio_files(cfg.data, "train"), audio_files(cfg.data, "valid")
    if not train_files or not valid_files:
        raise ValueError(
            f"performance data {cfg.data!r} needs train and valid audio; found {len(train_files)} "
            f"and {len(valid_files)} files (build the set with `python -m models.data.performance build`)"
        )
    mcfg = model_config(cfg)
    generator = Vocoder(mcfg)
    discs = Discriminators(tuple(int(c) for c in cfg.period_channels.split(",")), cfg.resolution_channels)
    state = State(
        generator,
        discs,
        torch.optim.AdamW(generator.parameters(), cfg.lr, betas=(0.8, 0.99)),
        torch.optim.AdamW(discs.parameters(), cfg.lr, betas=(0.8, 0.99)),
    )
    if resume and (out / "last.pt").exists():
        ckpt = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
        generator.load_state_dict(ckpt["model"])
        discs.load_state_dict(ckpt["discriminators"])
        state.opt_g.load_state_dict(ckpt["opt_g"])
        state.opt_d.load_state_dict(ckpt["opt_d"])
        state.step, state.best_loss, state.seconds = ckpt["step"], ckpt["best_loss"], ckpt["seconds"]
        rng.seed(cfg.seed + state.step)  # a fresh but reproducible crop stream
    elif cfg.init:
        generator.load_state_dict(training.init_weights(cfg.init, generator, "perform_vocoder"))
    (out / "config.json").write_text(
        json.dumps({"train": dataclasses.asdict(cfg), "model": mcfg.to_dict()}, indent=1)
    )
    mel_fn = MelSpectrogram(mcfg.sample_rate_hz, mcfg.n_fft, mcfg.hop, mcfg.n_mels)
    crops = Crops(train_files, cfg.segment_samples, cfg.min_rms_db, cfg.gain_db, rng)
    clips = valid_clips(valid_files, cfg.valid_clips, cfg.valid_seconds, mcfg.hop, mcfg.sample_rate_hz)
    writer = SummaryWriter(str(out / "tb"))
    if state.step == 0:
        for i, clip in enumerate(clips[:3]):
            writer.add_audio(f"valid/real_{i}", clip[None], 0, mcfg.sample_rate_hz)
    history_file = out / "history.json"
    history = json.loads(history_file.read_text()) if resume and history_file.exists() else []
    bar = tqdm(total=cfg.steps, initial=state.step, desc=f"train {out.name}", disable=not progress)
    t0, seconds0 = time.time(), state.seconds
    valid: dict[str, float] = {}
    while state.step < cfg.steps:
        logs = train_step(state, crops.batch(cfg.batch_size), mel_fn, cfg)
        state.seconds = seconds0 + time.time() - t0
        bar.update(1)
        if not math.isfinite(logs["loss/total"]):
            raise FloatingPointError(f"loss became {logs['loss/total']} at step {state.step}")
        for k, v in logs.items():
            writer.add_scalar(f"train/{k}", v, state.step)
        out_of_time = cfg.minutes > 0 and time.time() - t0 > cfg.minutes * 60
        if state.step % cfg.eval_every == 0 or state.step == cfg.steps or out_of_time:
            valid, fake = validate(generator, clips, mel_fn)
            for k, v in valid.items():
                writer.add_scalar(f"valid/{k}", v, state.step)
            for i, clip in enumerate(fake[:3]):
                writer.add_audio(
                    f"valid/generated_{i}", clip[None].clamp(-1, 1), state.step, mcfg.sample_rate_hz
                )
            history.append(
                {
                    "step": state.step,
                    "seconds": round(state.seconds, 1),
                    "train_mel_l1": logs["loss/mel"],
                    **{f"valid_{k}": v for k, v in valid.items()},
                }
            )
            bar.set_postfix(mel=f"{logs['loss/mel']:.3f}", valid=f"{valid['mel_l1']:.3f}")
            if valid["mel_l1"] < state.best_loss:
                state.best_loss = valid["mel_l1"]
                save(state, mcfg, cfg, out / "best.pt")
            save(state, mcfg, cfg, out / "last.pt")
            history_file.write_text(json.dumps(history, indent=1))
        if out_of_time:
            break
    bar.close()
    writer.close()
    return {
        "best_valid_mel_l1": state.best_loss,
        "steps": state.step,
        "train_seconds": round(state.seconds, 1),
        "train_files": len(train_files),
        "valid_files": len(valid_files),
        **{f"last_valid_{k}": v for k, v in valid.items()},
    }


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, bool]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="JSON file of TrainConfig fields; flags override it")
    for f in dataclasses.fields(TrainConfig):
        typ = {"int": int, "float": float, "str": str}[str(f.type)]
        p.add_argument(
            f"--{f.name.replace('_', '-')}",
            dest=f.name,
            type=typ,
            default=None,
            help=f"(default {f.default})",
        )
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    args = vars(p.parse_args(argv))
    resume, config = args.pop("resume"), args.pop("config")
    base = json.loads(Path(config).read_text()) if config else {}
    base.update({k: v for k, v in args.items() if v is not None})
    return TrainConfig(**base), resume


def main(argv: list[str] | None = None) -> None:
    cfg, resume = parse_args(argv)
    print(json.dumps(train(cfg, resume=resume)))


if __name__ == "__main__":
    main()
