"""Output levels of `deep-musician perform` (embedded, the SoundFont performer), raw and levelled:
RMS dBFS, integrated loudness (pyloudnorm, EBU R128) and true peak (4x oversampled), and what the
levelling's first pass costs (time to the first chunk, total wall time). Prints JSON; with --out
writes it beside RESULTS.md with its command and commit.

    python benchmarks/perform_levels.py --out benchmarks/perform_levels.json
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.cli.perform import performance_chunks  # noqa: E402

PIECES = {  # name -> a score file
    "folk tune (ryansMammoth/7thRegimentReel.abc, 1 part)": "ryansMammoth/7thRegimentReel.abc",
    "Bach chorale BWV 66.6 (4 parts)": "bach/bwv66.6.mxl",
    "examples/piano.mid": str(ROOT / "examples" / "piano.mid"),
}


def read(name: str):
    from bridge.scorefile import read_score

    if not Path(name).exists():
        from music21 import corpus

        name = str(corpus.getWork(name))
    return read_score(name)


def measure(score, loudness: float | None, sample_rate_hz: int) -> dict:
    import pyloudnorm
    from scipy.signal import resample_poly

    args = argparse.Namespace(engine=None, loudness=loudness)
    t0 = time.perf_counter()
    chunks, first = [], None
    for _, chunk in performance_chunks(score, args, sample_rate_hz):
        first = first if first is not None else time.perf_counter() - t0
        chunks.append(chunk)
    wall = time.perf_counter() - t0
    audio = np.concatenate(chunks, 1).astype(np.float64)
    return {"seconds": round(audio.shape[1] / sample_rate_hz, 2),
            "rms_dbfs": round(10 * math.log10(np.mean(audio ** 2)), 1),
            "lufs": round(pyloudnorm.Meter(sample_rate_hz).integrated_loudness(audio.T), 2),
            "true_peak_dbtp": round(20 * math.log10(np.abs(resample_poly(audio, 4, 1, axis=1)).max()), 2),
            "first_chunk_ms": round(first * 1000, 1), "wall_s": round(wall, 3)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sample-rate", type=int, default=48_000, help="(default %(default)s)")
    p.add_argument("--out", help="write the JSON here too")
    args = p.parse_args(argv)
    results = {}
    for name, path in PIECES.items():
        score = read(path)
        results[name] = {"raw": measure(score, None, args.sample_rate),
                         "levelled (-18 LUFS)": measure(score, -18.0, args.sample_rate)}
        print(name, results[name], file=sys.stderr)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()
    command = "python benchmarks/perform_levels.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report = {"command": command, "commit": commit, "sample_rate_hz": args.sample_rate, "results": results}
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
