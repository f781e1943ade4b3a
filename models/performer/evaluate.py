"""Held-out evaluation of the alignment model beside two baselines, and its verified export.

    python -m models.performer.evaluate --data bach-soprano,bach --checkpoint runs/align/best.pt
    python -m models.performer.evaluate --data bach-soprano,bach --checkpoint runs/align/best.pt \\
        --export models/pretrained/performer-align.pt

Onset timing error: |predicted - performed onset| in ms over every note of the split's whole pieces,
both measured from the piece's first note (as ``features`` anchors them). Baselines: the score's
timing at the piece's tempo, and that timing plus the training set's mean onset deviation. The
export runs only when the model beats both on the mean and the median error; it writes TorchScript
with ``metadata.json`` (task ``perform_align``), reloads the file and checks it against eager.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from bridge.protocol import PROTOCOL_VERSION
from models.format import FORMAT_VERSION, WEIGHTS_DTYPE, load_scripted, save_scripted, validate
from models.performer.align_model import AlignConfig, Aligner, n_parameters
from models.performer.expression import DYNAMIC_NAMES, MARK_NAMES
from models.performer.features import FLOAT_FEATURES, N_FLOATS, TARGETS
from models.performer.render import PERFORMERS

TASK = "perform_align"
# the row models.format.TASK_KEYS takes for this task
TASK_KEYS = {TASK: ("performers", "features", "targets", "model")}


def _errors_ms(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    err = np.abs(pred - target) * 1000
    return {"onset_error_ms/mean": float(err.mean()), "onset_error_ms/median": float(np.median(err))}


@torch.no_grad()
def evaluate(model, pieces: list, train_pieces: list, max_notes: int = 1024) -> dict[str, dict]:
    """Onset errors (ms) and duration-ratio RMSE of the model and the baselines on ``pieces``."""
    from models.performer.train_align import batch_of

    mean_offset = float(np.mean(np.concatenate([batch_of([p], max_notes)["target"][0, :, 0].numpy()
                                                for p in train_pieces])))
    slopes = performer_slopes(train_pieces, max_notes)
    pred, truth, dur_pred, dur_truth, fitted = [], [], [], [], []
    for piece in pieces:
        fitted.append(slopes.get(piece.performer, 0.0) * _score_seconds(piece.notes[:max_notes], piece.qpm))
        b = batch_of([piece], max_notes)
        out = model(b["ints"], b["floats"], b["performer"])[0].numpy()
        pred.append(out[:, 0])
        dur_pred.append(out[:, 1])
        truth.append(b["target"][0, :, 0].numpy())
        dur_truth.append(b["target"][0, :, 1].numpy())
    pred, truth, fitted = np.concatenate(pred), np.concatenate(truth), np.concatenate(fitted)
    dur_pred, dur_truth = np.concatenate(dur_pred), np.concatenate(dur_truth)
    return {
        "score timing at the piece's tempo": {**_errors_ms(np.zeros_like(truth), truth),
                                              "log_duration_rmse": float(np.sqrt(np.mean(dur_truth ** 2)))},
        "score timing + mean offset": _errors_ms(np.full_like(truth, mean_offset), truth),
        "score timing at the performer's mean tempo (fitted on train)": _errors_ms(fitted, truth),
        "model": {**_errors_ms(pred, truth),
                  "log_duration_rmse": float(np.sqrt(np.mean((dur_pred - dur_truth) ** 2)))},
        "notes": {"count": int(len(truth)), "pieces": len(pieces), "train_mean_offset_s": mean_offset},
    }


def _score_seconds(notes: np.ndarray, qpm: float) -> np.ndarray:
    return (notes["onset_beats"] - notes["onset_beats"][0]) * 60.0 / qpm


def performer_slopes(pieces: list, max_notes: int = 1024) -> dict[int, float]:
    """Per performer, the least-squares slope of onset deviation on score seconds: a steady tempo
    fitted to the training set (a stronger baseline than the two the export is gated on)."""
    from models.performer.features import targets

    by = {}
    for p in pieces:
        x, y = _score_seconds(p.notes[:max_notes], p.qpm), targets(p.notes[:max_notes])[:, 0]
        sxx, sxy = by.get(p.performer, (0.0, 0.0))
        by[p.performer] = (sxx + float(x @ x), sxy + float(x @ y))
    return {k: sxy / sxx if sxx else 0.0 for k, (sxx, sxy) in by.items()}


# the baselines the export must beat (the brief's); others are reported beside them
GATE = ("score timing at the piece's tempo", "score timing + mean offset")


def beats_baselines(result: dict) -> bool:
    model = result["model"]
    return all(model[k] < result[name][k] for name in GATE
               for k in ("onset_error_ms/mean", "onset_error_ms/median"))


def align_metadata(mcfg: AlignConfig, name: str, metrics: dict | None = None, version: str = "1.0.0") -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "protocol_version": PROTOCOL_VERSION,  # information only (see models.format.REQUIRED_KEYS)
        "task": TASK,
        "name": name,
        "version": version,
        "performers": [p.name for p in PERFORMERS],
        "features": [f for f, _ in FLOAT_FEATURES],
        "dynamics": list(DYNAMIC_NAMES),
        "marks": list(MARK_NAMES),
        "targets": list(TARGETS),
        "model": mcfg.to_dict(),
        "inputs": ["ints (1,N,3) int64: pitch, dynamic level, hairpin + 1",
                   f"floats (1,N,{N_FLOATS}) float32: features", "performer (1,) int64"],
        "outputs": ["(1,N,2) float32: onset deviation (s from the first note), log duration ratio"],
        "methods": ["forward"],
        "metrics": metrics or {},
    }


def _example(n: int, seed: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    ints = torch.stack([torch.randint(40, 90, (1, n), generator=gen),
                        torch.randint(0, 8, (1, n), generator=gen),
                        torch.randint(0, 3, (1, n), generator=gen)], dim=-1)
    return ints, torch.rand(1, n, N_FLOATS, generator=gen), torch.tensor([1])


def export_aligner(model: Aligner, path: str | Path, metadata: dict, atol: float = 1e-4) -> Path:
    """TorchScript with metadata; reloaded and checked against eager on 1, 37 and 300 notes."""
    problem = validate(metadata) or ", ".join(k for k in TASK_KEYS[TASK] if k not in metadata)
    if problem:
        raise ValueError(f"alignment metadata is not valid: {problem}")
    return script_and_verify(model, path, metadata, {f"{n} notes": _example(n, n) for n in (1, 37, 300)},
                             "alignment", atol)


def script_and_verify(model, path: str | Path, metadata: dict, examples: dict[str, tuple], what: str,
                      atol: float = 1e-4, half: bool = False) -> Path:
    """Script ``model`` (after ``prepare_for_export``) to TorchScript with ``metadata.json``,
    reload the file, and check its metadata and its output on each example against eager.
    ``half`` stores the weights as float16 (``models.format.WEIGHTS_DTYPE``; the loader widens
    them back): ``model`` itself is then rounded to those weights, so eager and the file agree."""
    path = Path(path)
    if path.suffix != ".pt":
        raise ValueError(f"the {what} model exports to TorchScript (.pt), got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.prepare_for_export()
    if half:
        metadata = {**metadata, WEIGHTS_DTYPE: "float16"}
        model.half()
    loaded = save_scripted(model, path, metadata)
    if half:
        model.float()  # float32 compute on the rounded weights: what the loader gives
    with torch.no_grad():
        for label, x in examples.items():
            err = float((model(*x) - loaded(*x)).abs().max())
            if not err <= atol:
                raise RuntimeError(f"exported model differs from eager on {label}: max abs error {err:.3g}")
    return path


@torch.no_grad()
def speed(model, n_notes: int = 300, repeats: int = 20) -> float:
    """Notes per second, batch 1, one thread."""
    torch.set_num_threads(1)
    x = _example(n_notes, 0)
    model(*x)
    t0 = time.perf_counter()
    for _ in range(repeats):
        model(*x)
    return n_notes * repeats / (time.perf_counter() - t0)


def marking_margins(presets: tuple[str, ...] = ("piano", "strings", "organ")) -> dict[str, dict]:
    """How far apart the realised markings sound in FluidSynth renders (the reference a neural
    renderer is held to): RMS dB of f over p, and the sounding share of staccato against tenuto,
    on 8 notes at 90 qpm played by each FluidR3_GM preset's performer."""
    from models.performer import expression as ex
    from models.performer import render

    def play(level: int, marks: int, performer: int) -> np.ndarray:
        n = np.zeros(8, ex.MARKED_DTYPE)
        n["pitch"], n["onset_beats"], n["duration_beats"] = 60 + np.arange(8) % 5, np.arange(8), 1.0
        n["dynamic"], n["marks"] = level, marks
        return render.render(*ex.realise(n, 90.0, ex.Style.of(performer), 0), performer)

    def rms_db(a: np.ndarray) -> float:
        return float(20 * np.log10(np.sqrt(np.mean(a ** 2)) + 1e-12))

    def sounding_s(a: np.ndarray) -> float:  # time above -26 dB of the peak
        return float((np.abs(a) > 0.05 * np.abs(a).max()).sum() / render.SAMPLE_RATE_HZ)

    out = {}
    for preset in presets:
        pid = render.PERFORMER_IDS[f"FluidR3_GM:{preset}"]
        forte, piano = ex.DYNAMIC_NAMES.index("f"), ex.DYNAMIC_NAMES.index("p")
        out[preset] = {"f_over_p_db": round(rms_db(play(forte, 0, pid)) - rms_db(play(piano, 0, pid)), 1),
                       "staccato_s": round(sounding_s(play(ex.DEFAULT_DYNAMIC, ex.STACCATO, pid)), 2),
                       "tenuto_s": round(sounding_s(play(ex.DEFAULT_DYNAMIC, ex.TENUTO, pid)), 2)}
    return out


def main(argv: list[str] | None = None) -> None:
    from models.performer.train_align import load_checkpoint, load_sets

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="comma-separated performance sets")
    p.add_argument("--checkpoint", help="best.pt written by models.performer.train_align")
    p.add_argument("--markings", action="store_true",
                   help="only measure how audible the realised markings are in FluidSynth renders")
    p.add_argument("--split", default="test", choices=("train", "valid", "test"),
                   help="(default %(default)s)")
    p.add_argument("--export", help="write TorchScript here if the model beats both baselines")
    p.add_argument("--name", help="model name (default: the export's stem)")
    args = p.parse_args(argv)
    if args.markings:
        print(json.dumps(marking_margins(), indent=1))
        return
    if not args.data or not args.checkpoint:
        p.error("--data and --checkpoint are required (unless --markings)")
    model, mcfg, ckpt = load_checkpoint(args.checkpoint)
    pieces = load_sets(args.data, args.split)
    if not pieces:
        raise SystemExit(f"no {args.split} pieces in {args.data}")
    result = evaluate(model, pieces, load_sets(args.data, "train"))
    result["training"] = {"steps": ckpt["step"], "seconds": round(ckpt["seconds"], 1),
                          "data": args.data, "parameters": n_parameters(model)}
    if args.export:
        if not beats_baselines(result):
            raise SystemExit("not exported: the model does not beat both baselines\n"
                             + json.dumps(result, indent=1))
        out = export_aligner(model, args.export, align_metadata(mcfg, args.name or Path(args.export).stem,
                                                               {args.split: result}))
        loaded, _ = load_scripted(out)
        result["export"] = {"path": str(out), "size_mb": round(out.stat().st_size / 1e6, 2),
                            "notes_per_s_torchscript": round(speed(loaded)),
                            "notes_per_s_eager": round(speed(model))}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
