"""Evaluate a trained vocoder on held-out audio beside a non-neural inversion, and export it.

    python -m models.performer.vocoder_eval --checkpoint runs/vocoder/best.pt --data bach \
        --out benchmarks/performer_vocoder.json
    python -m models.performer.vocoder_eval --checkpoint runs/vocoder/best.pt --data bach \
        --export models/pretrained/performer-vocoder.pt

Clips: the loudest ``seconds`` of each of the first ``clips`` files of the test split
(``train_vocoder.valid_clips``). Each clip's log-mel is inverted by the vocoder and by Griffin-Lim
(the mel pseudo-inverted to a linear magnitude, then ``gl_iters`` iterations of fast Griffin-Lim,
momentum 0.99), and the audio is compared with the original: mel L1 and log-mel MSE of the
resynthesis' own log-mel against the clip's, and the multi-resolution STFT distance
(``vocoder_gan.stft_distance``). Speed is the real-time factor on one thread, eager and TorchScript.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from models.format import quiet_jit
from models.performer.griffin_lim import GriffinLim
from models.performer.train_vocoder import audio_files, load_checkpoint, valid_clips
from models.performer.vocoder import (  # noqa: F401  (TASK, VERSION, export_vocoder: this module's names too)
    TASK,
    VERSION,
    MelSpectrogram,
    Vocoder,
    export_vocoder,
    n_parameters,
    vocoder_metadata,
)
from models.performer.vocoder_gan import stft_distance

NAME = "performer-vocoder"


@torch.no_grad()
def griffin_lim(mel: torch.Tensor, n_iter: int = 60, momentum: float = 0.99) -> torch.Tensor:
    """(B, n_mels, T) log-mel -> (B, (T - 1) * hop) audio: ``models.performer.griffin_lim``, the
    filters' pseudo-inverse (clamped at 0) and fast Griffin-Lim (Perraudin et al. 2013)."""
    return GriffinLim(n_iter, momentum)(mel)


@torch.no_grad()
def resynthesis_metrics(audio: torch.Tensor, clips: torch.Tensor, mel_fn: MelSpectrogram) -> dict[str, float]:
    mel, got = mel_fn(clips), mel_fn(audio)
    return {
        "mel_l1": round(float((got - mel).abs().mean()), 4),
        "log_mel_mse": round(float(((got - mel) ** 2).mean()), 4),
        "stft_distance": round(float(stft_distance(audio, clips)), 4),
    }


@torch.no_grad()
def real_time_factor(model, mel: torch.Tensor, sample_rate_hz: int, repeats: int = 5) -> tuple[float, float]:
    """(wall-clock, CPU-time) real-time factors of ``model(mel)``, median of ``repeats`` after a
    warm-up call, on the calling thread's torch settings (set one thread first). On a shared
    machine the CPU time of the one thread is the steadier figure."""
    model(mel)
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        audio = model(mel)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    seconds = audio.shape[-1] / sample_rate_hz
    return round(seconds / statistics.median(wall), 1), round(seconds / statistics.median(cpu), 1)


def evaluate(
    model: Vocoder, data: str, clips: int = 16, seconds: float = 4.0, gl_iters: int = 60, split: str = "test"
) -> dict:
    cfg = model.cfg
    files = audio_files(data, split)
    if not files:
        raise ValueError(f"performance data {data!r} has no {split} audio; build it first")
    audio = valid_clips(files, clips, seconds, cfg.hop, cfg.sample_rate_hz)
    mel_fn = MelSpectrogram(cfg.sample_rate_hz, cfg.n_fft, cfg.hop, cfg.n_mels)
    mel = mel_fn(audio)
    model.eval()
    with torch.no_grad():
        vocoded = torch.cat([model(m[None]) for m in mel])
    return {
        "data": data,
        "split": split,
        "clips": len(audio),
        "seconds_per_clip": audio.shape[1] / cfg.sample_rate_hz,
        "files": [f.stem for f in files[:clips]],
        "vocoder": resynthesis_metrics(vocoded, audio, mel_fn),
        f"griffin_lim_{gl_iters}": resynthesis_metrics(griffin_lim(mel, gl_iters), audio, mel_fn),
    }


def speed(model: Vocoder, seconds: float = 10.0, repeats: int = 5) -> dict:
    torch.set_num_threads(1)
    cfg = model.cfg
    mel = torch.randn(1, cfg.n_mels, int(seconds * cfg.sample_rate_hz / cfg.hop) + 1) - 4.0
    if hasattr(model, "prepare_for_export"):
        model = model.prepare_for_export()
    with quiet_jit():
        frozen = torch.jit.freeze(torch.jit.script(model))
        eager, scripted = (
            real_time_factor(model, mel, cfg.sample_rate_hz, repeats),
            real_time_factor(frozen, mel, cfg.sample_rate_hz, repeats),
        )
    return {
        "threads": 1,
        "seconds_per_call": seconds,
        "eager_rtf_wall": eager[0],
        "eager_rtf_cpu": eager[1],
        "torchscript_rtf_wall": scripted[0],
        "torchscript_rtf_cpu": scripted[1],
    }


def metadata_for(model: Vocoder, extra: dict | None = None) -> dict:
    cfg = model.cfg
    own = vocoder_metadata(NAME, n_parameters(model), cfg.to_dict(), cfg.sample_rate_hz, cfg.hop, cfg.n_fft,
                           cfg.n_mels)
    return {**own, **(extra or {})}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a train_vocoder checkpoint (best.pt or last.pt)")
    p.add_argument("--data", default="bach", help="set(s) whose test audio is used (default %(default)s)")
    p.add_argument("--clips", type=int, default=16, help="(default %(default)s)")
    p.add_argument("--seconds", type=float, default=4.0, help="per clip (default %(default)s)")
    p.add_argument("--gl-iters", type=int, default=60, help="Griffin-Lim iterations (default %(default)s)")
    p.add_argument("--out", help="write the JSON report here too")
    p.add_argument("--export", help="write the TorchScript model file here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    model, _, ckpt = load_checkpoint(args.checkpoint)
    import subprocess
    import sys

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    report = {
        "command": "python -m models.performer.vocoder_eval "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "commit": commit,
        "checkpoint": args.checkpoint,
        "step": ckpt["step"],
        "train_seconds": round(ckpt["seconds"], 1),
        "parameters": n_parameters(model),
    }
    for name in args.data.split(","):
        report[name] = evaluate(model, name, args.clips, args.seconds, args.gl_iters)
    report["speed"] = speed(model)
    if args.export:
        meta = metadata_for(model, {"trained_on": ckpt["train_config"]["data"], "train_steps": ckpt["step"]})
        report["export"] = str(export_vocoder(model, args.export, meta))
        report["export_bytes"] = Path(args.export).stat().st_size
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
