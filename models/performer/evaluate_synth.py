"""Held-out evaluation of the synthesis model against its piano-roll baseline, and its verified
export.

    python -m models.performer.evaluate_synth --data bach --synth runs/synth/best.pt \\
        --baseline runs/synth-roll/best.pt --plot docs/performer-synth-example.png
    python -m models.performer.evaluate_synth --data bach --synth runs/synth/best.pt \\
        --baseline runs/synth-roll/best.pt --export models/pretrained/performer-synth.pt --half

Log-mel MSE: the mean over every frame and mel bin of whole held-out pieces of (predicted -
FluidSynth render's log-mel)^2, natural-log magnitudes (``render.log_mel``), both models with the
style latent z = 0 and the notes at their performed (aligned) times, synthesised in overlapping
windows as trained (``synth_model.synthesise``). Dong et al. report 0.700 vs 0.892 (violin) and
0.436 vs 0.722 (piano) for Deep Performer vs a piano-roll HiFi-GAN; ``margin`` sets our ratio
beside theirs. The export runs only when ours beats the baseline; it writes TorchScript with
``metadata.json`` (task ``perform_synth``: performers, mel settings, window), reloads it and
checks it against eager.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from bridge.protocol import PROTOCOL_VERSION
from models.format import FORMAT_VERSION, load_scripted, validate
from models.performer import render
from models.performer.evaluate import script_and_verify
from models.performer.expression import DYNAMIC_NAMES, MARK_NAMES
from models.performer.features import FLOAT_FEATURES
from models.performer.render import HOP, PERFORMERS, SAMPLE_RATE_HZ
from models.performer.synth_model import NOTE_FLOATS, n_parameters, synthesise

SYNTH_TASK = "perform_synth"
SYNTH_TASK_KEYS = {SYNTH_TASK: ("performers", "mel", "window", "model")}
# Dong et al. 2022, Table 1: log-mel MSE of Deep Performer and of the piano-roll HiFi-GAN baseline
PAPER_MSE = {"violin": (0.700, 0.892), "piano": (0.436, 0.722)}


def mel_settings() -> dict:
    return {"sample_rate_hz": render.SAMPLE_RATE_HZ, "n_fft": render.N_FFT, "hop": render.HOP,
            "win": render.WIN, "n_mels": render.N_MELS, "fmin_hz": render.FMIN_HZ, "fmax_hz": render.FMAX_HZ,
            "log": "natural log of the mel magnitude", "log_floor": render.LOG_FLOOR,
            "mel_scale": "slaney, area-normalised", "center": True}


def synth_metadata(mcfg, name: str, metrics: dict | None = None, window: int = 256, context: int = 32,
                   version: str = "1.0.0", trained_performers: list[int] | None = None) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "protocol_version": PROTOCOL_VERSION,  # information only (see models.format.REQUIRED_KEYS)
        "task": SYNTH_TASK,
        "name": name,
        "version": version,
        "performers": [p.name for p in PERFORMERS],
        "sample_rate_hz": render.SAMPLE_RATE_HZ,
        "hop": render.HOP,
        "mel": mel_settings(),
        "window": {"frames": window, "context_frames": context},
        "features": [f for f, _ in FLOAT_FEATURES] + ["performed_velocity/127", "log performed duration_s"],
        "dynamics": list(DYNAMIC_NAMES),
        "marks": list(MARK_NAMES),
        "model": mcfg.to_dict(),
        "inputs": ["ints (B,N,3) int64: pitch, dynamic level, hairpin + 1",
                   f"floats (B,N,{NOTE_FLOATS}) float32: features",
                   "onsets, offsets (B,N) float32: performed times in frames from the window's start",
                   "padding (B,N) bool", "performer (B,) int64", f"z (B,{mcfg.latent_dim}) float32",
                   "n_frames int"],
        "outputs": [f"(B,{mcfg.n_mels},n_frames) float32: natural-log mel magnitudes"],
        "methods": ["forward", "latent_dim"],
        "metrics": metrics or {},
        # the performers the training data held: the others' embeddings never moved from their init
        "trained_performers": [PERFORMERS[i].name for i in sorted(trained_performers or [])],
    }


def _example(n_notes: int, n_frames: int, seed: int, latent_dim: int) -> tuple:
    gen = torch.Generator().manual_seed(seed)
    ints = torch.stack([torch.randint(40, 90, (1, n_notes), generator=gen),
                        torch.randint(0, 8, (1, n_notes), generator=gen),
                        torch.randint(0, 3, (1, n_notes), generator=gen)], dim=-1)
    onsets = torch.rand(1, n_notes, generator=gen) * n_frames
    return (ints, torch.rand(1, n_notes, NOTE_FLOATS, generator=gen), onsets, onsets + 20,
            torch.zeros(1, n_notes, dtype=torch.bool), torch.tensor([1]), torch.zeros(1, latent_dim),
            n_frames)


def export_synth(model, path: str | Path, metadata: dict, atol: float = 1e-4, half: bool = False) -> Path:
    """TorchScript with metadata; reloaded and checked against eager on three windows. ``half``
    stores float16 weights (half the file; ``model`` is rounded to them in place)."""
    problem = validate(metadata) or ", ".join(k for k in SYNTH_TASK_KEYS[SYNTH_TASK] if k not in metadata)
    if problem:
        raise ValueError(f"synthesis metadata is not valid: {problem}")
    examples = {f"{n} notes, {t} frames": _example(n, t, n, model.cfg.latent_dim)
                for n, t in ((1, 8), (12, 100), (40, 256))}
    return script_and_verify(model, path, metadata, examples, "synthesis", atol, half=half)


def mean_mel_by_performer(pieces: list) -> dict[int, np.ndarray]:
    """Per performer, the training set's mean log-mel frame (n_mels,): the constant predictor."""
    sums: dict[int, np.ndarray] = {}
    counts: dict[int, int] = {}
    for p in pieces:
        sums[p.performer] = sums.get(p.performer, 0) + p.mel.astype(np.float64).sum(axis=1)
        counts[p.performer] = counts.get(p.performer, 0) + p.mel.shape[1]
    return {k: (v / counts[k]).astype(np.float32) for k, v in sums.items()}


def evaluate_synth(models: dict, pieces: list, train_pieces: list, window: int = 256,
                   context: int = 32, progress: bool = True) -> dict[str, dict]:
    """Log-mel MSE (mean over every frame and mel bin of the whole pieces) of each model, with
    z = 0, against the FluidSynth render's log-mel; overall and by performer preset. The
    training set's mean frame per performer is the floor any model must beat."""
    from tqdm import tqdm

    means = mean_mel_by_performer(train_pieces)
    names = ["mean frame of the performer (train)", *models]
    err = {n: {} for n in names}  # name -> preset -> [sum of squares, count]
    for piece in tqdm(pieces, desc="synthesise test pieces", disable=not progress):
        target = piece.mel.astype(np.float32)
        preds = {"mean frame of the performer (train)": np.broadcast_to(
            means.get(piece.performer, target.mean(axis=1))[:, None], target.shape)}
        for name, model in models.items():
            preds[name] = synthesise(model, piece.notes, piece.qpm, piece.performer, target.shape[1],
                                     window=window, context=context)
        preset = PERFORMERS[piece.performer].name.split(":")[1]
        for name, pred in preds.items():
            for key in ("all", preset):
                acc = err[name].setdefault(key, [0.0, 0])
                acc[0] += float(((pred - target) ** 2).sum())
                acc[1] += target.size
    result = {name: {f"log_mel_mse/{k}": round(s / n, 4) for k, (s, n) in sorted(v.items())}
              for name, v in err.items()}
    result["data"] = {"pieces": len(pieces), "frames": int(sum(p.mel.shape[1] for p in pieces)),
                      "window_frames": window, "context_frames": context}
    return result


def margin(ours: float, baseline: float) -> dict[str, float]:
    """Our MSE against the baseline's beside the paper's, as a ratio (lower is better)."""
    return {"ratio": round(ours / baseline, 3),
            **{f"paper_ratio_{k}": round(a / b, 3) for k, (a, b) in PAPER_MSE.items()}}


@torch.no_grad()
def synth_speed(model, n_frames: int = 256, n_notes: int = 30, repeats: int = 10) -> float:
    """Real-time factor (audio seconds per compute second) of one window, batch 1, one thread."""
    torch.set_num_threads(1)
    x = _example(n_notes, n_frames, 0, int(model.latent_dim()))
    model(*x)
    t0 = time.perf_counter()
    for _ in range(repeats):
        model(*x)
    return n_frames * HOP / SAMPLE_RATE_HZ * repeats / (time.perf_counter() - t0)


def plot_example(piece, mels: dict[str, np.ndarray], path: str | Path, seconds: float = 8.0) -> Path:
    """Stacked spectrograms (first ``seconds`` of a piece) of the target and each prediction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = int(seconds * SAMPLE_RATE_HZ / HOP)
    target = next(iter(mels.values()))[:, :frames]
    fig, axes = plt.subplots(len(mels), 1, figsize=(10, 2.2 * len(mels)), sharex=True)
    for ax, (name, mel) in zip(axes, mels.items(), strict=True):
        shown = mel[:, :frames]
        ax.imshow(shown, origin="lower", aspect="auto", vmin=float(target.min()), vmax=float(target.max()),
                  extent=(0, shown.shape[1] * HOP / SAMPLE_RATE_HZ, 0, shown.shape[0]))
        ax.set_ylabel("mel bin")
        ax.set_title(name, fontsize=9)
    axes[-1].set_xlabel(f"seconds ({piece.name}, {PERFORMERS[piece.performer].name})")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def run(args: argparse.Namespace) -> None:
    from models.performer.train_synth import load_checkpoint as load_synth
    from models.performer.train_synth import load_with_mel

    ours, mcfg, ckpt = load_synth(args.synth)
    baseline, _, base_ckpt = load_synth(args.baseline)
    pieces = load_with_mel(args.data, args.split)
    if args.limit:
        pieces = pieces[:args.limit]
    if not pieces:
        raise SystemExit(f"no {args.split} pieces in {args.data}")
    train_pieces = load_with_mel(args.data, "train")
    result = evaluate_synth({"synthesis (ours)": ours, "piano-roll baseline": baseline}, pieces, train_pieces)
    result["margin"] = margin(result["synthesis (ours)"]["log_mel_mse/all"],
                              result["piano-roll baseline"]["log_mel_mse/all"])
    trained = (("synthesis (ours)", ours, ckpt), ("piano-roll baseline", baseline, base_ckpt))
    result["training"] = {name: {"steps": c["step"], "seconds": round(c["seconds"], 1),
                                 "parameters": n_parameters(m),  # its own run's data (not the split's)
                                 "data": c.get("train_config", {}).get("data", args.data),
                                 "init": c.get("train_config", {}).get("init", "")}
                          for name, m, c in trained}
    if args.plot:
        piece = pieces[0]
        mels = {"FluidSynth render (target)": piece.mel.astype(np.float32)}
        for name, model in (("synthesis (ours)", ours), ("piano-roll baseline", baseline)):
            mels[name] = synthesise(model, piece.notes, piece.qpm, piece.performer, piece.mel.shape[1])
        result["plot"] = str(plot_example(piece, mels, args.plot))
    if args.export:
        if not result["margin"]["ratio"] < 1.0:
            raise SystemExit("not exported: the synthesis model does not beat the piano-roll baseline\n"
                             + json.dumps(result, indent=1))
        metadata = synth_metadata(mcfg, args.name or Path(args.export).stem, {args.split: result},
                                  trained_performers=sorted({p.performer for p in train_pieces}))
        out = export_synth(ours, args.export, metadata, half=args.half)
        loaded, _ = load_scripted(out)
        result["export"] = {"path": str(out), "size_mb": round(out.stat().st_size / 1e6, 2),
                            "realtime_x_torchscript": round(synth_speed(loaded), 1),
                            "realtime_x_eager": round(synth_speed(ours), 1)}
    print(json.dumps(result, indent=1))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="comma-separated performance sets")
    p.add_argument("--synth", required=True, help="best.pt of train_synth (conditioning notes)")
    p.add_argument("--baseline", required=True, help="best.pt of train_synth --conditioning pianoroll")
    p.add_argument("--split", default="test", choices=("train", "valid", "test"),
                   help="(default %(default)s)")
    p.add_argument("--limit", type=int, help="only the first N pieces of the split")
    p.add_argument("--plot", help="write target / ours / baseline spectrograms of the split's first piece")
    p.add_argument("--export", help="write TorchScript here if ours beats the baseline")
    p.add_argument("--name", help="model name (default: the export's stem)")
    p.add_argument("--half", action="store_true",
                   help="store the export's weights as float16 (half the file; loaded as float32)")
    run(p.parse_args(argv))


if __name__ == "__main__":
    main()
