"""The DTW aligner (models.data.audio_align) against the alignment target it should recover: the
held-out (test split) shards of a built performance set, each a score performed with rubato, jitter
and articulation and rendered by FluidSynth, so every note's performed onset is known. Per
performer: onset error of the score's own times, of the score scaled linearly to the performance,
of DTW alone and of DTW with onset snapping (median, mean, share within 50 ms), and seconds per
minute of audio. Prints JSON.

    python -m benchmarks.perform_dtw --set bach [--limit 0] [--json benchmarks/perform_dtw.json]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

METHODS = ("score_time", "linear", "dtw", "dtw_snap")


def summary(errors: list[np.ndarray]) -> dict:
    e = np.abs(np.concatenate(errors)) if errors else np.zeros(0)
    return {"notes": int(len(e)), "median_ms": round(float(np.median(e)) * 1000, 1),
            "mean_ms": round(float(np.mean(e)) * 1000, 1), "within_50ms": round(float(np.mean(e < 0.05)), 3)}


def main() -> None:
    import soundfile

    from benchmarks.protocol_rtt import run_info
    from models.data import audio_align
    from models.data.performance import set_dir
    from models.performer.render import PERFORMERS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--set", default="bach", help="a built performance set (default %(default)s)")
    p.add_argument("--limit", type=int, default=0, help="only the first N test shards (0: all)")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    root = set_dir(args.set)
    rows = [r for r in json.loads((root / "index.json").read_text()) if r["split"] == "test"]
    rows = rows[:args.limit or None]
    errors: dict[str, dict[str, list]] = {}
    seconds = {"audio": 0.0, "dtw": 0.0, "snap": 0.0}
    for row in tqdm(rows, desc="align"):
        notes = np.load(root / "shards" / f"{row['key']}.npz")["notes"]
        audio, sr = soundfile.read(str(root / "audio" / f"{row['key']}.wav"), dtype="float32")
        target, score = notes["onset_s"], notes["score_onset_s"]
        t = time.perf_counter()
        warp = audio_align.align(score, notes["score_duration_s"], notes["pitch"], audio, sr)
        dtw = warp(score)
        seconds["dtw"] += time.perf_counter() - t
        t = time.perf_counter()
        snapped = audio_align.snap_to_onsets(dtw, audio, sr)
        seconds["snap"] += time.perf_counter() - t
        seconds["audio"] += len(audio) / sr
        scale = target.max() / max(score.max(), 1e-9)
        found = {"score_time": score, "linear": score * scale, "dtw": dtw, "dtw_snap": snapped}
        mine = errors.setdefault(PERFORMERS[row["performer"]].name, {m: [] for m in METHODS})
        for method in METHODS:
            mine[method].append(found[method] - target)
    minutes = seconds["audio"] / 60
    out = {**run_info(), "set": args.set, "shards": len(rows), "audio_minutes": round(minutes, 1),
           "seconds_per_audio_minute": {k: round(seconds[k] / minutes, 2) for k in ("dtw", "snap")},
           "performers": {name: {m: summary(e[m]) for m in METHODS} for name, e in errors.items()},
           "all": {m: summary([x for e in errors.values() for x in e[m]]) for m in METHODS}}
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
