"""What a one-shot command costs from the outside: the cold start of `deep-musician arrange
examples/piano.mid -o x.mid` (a fresh interpreter per run) against the floor of importing torch,
and the peak RSS of `deep-musician perform` on an hour of music. Prints JSON.

    python -m benchmarks.cli_startup --runs 7 [--base DIR] [--perform-minutes 60]

--base DIR is another checkout to compare with in the same run, interleaved (e.g. the commit before,
unpacked with `git archive REV | tar -x -C DIR`). Each command runs with PYTHONPATH set to its
checkout from a folder outside both, so an installed copy is not picked up.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIANO = ROOT / "examples" / "piano.mid"


def timed(cmd: list[str], tree: Path, cwd: str) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MB) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env={**os.environ, "PYTHONPATH": str(tree)}, check=True, capture_output=True)
    wall_s = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall_s, cpu_s, after.ru_maxrss / 1024  # ru_maxrss of children: the largest so far


def hour_of_music(path: Path, minutes: float) -> int:
    """examples/piano.mid repeated bar-aligned to `minutes` of music; returns the number of notes."""
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from bridge.midi import read_midi, write_midi
    from bridge.score import Score, Track, tick_to_seconds

    piano = read_midi(PIANO)
    track = piano.tracks[0]
    bar = 4 * piano.resolution
    span = -(-int((track.notes["time"] + track.notes["duration"]).max()) // bar) * bar
    repeats = int(np.ceil(minutes * 60 / float(tick_to_seconds(piano, np.array([span]))[0])))
    notes = np.concatenate([track.notes for _ in range(repeats)])
    notes["time"] += np.repeat(np.arange(repeats) * span, len(track.notes))
    write_midi(Score(piano.resolution, [Track(track.name, track.program, notes=notes)], piano.tempos[:1],
                     piano.meters[:1], piano.keys[:1]), path)
    return len(notes)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--base", type=Path, help="another checkout, measured interleaved with this one")
    p.add_argument("--perform-minutes", type=float, default=0, help="also: peak RSS of perform (0: skip)")
    args = p.parse_args()
    trees = {"this": ROOT, **({"base": args.base} if args.base else {})}
    out: dict = {"load_average_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        cmds = {name: ([sys.executable, "-m", "engine.cli", "arrange", str(PIANO), "-o", f"{tmp}/x.mid",
                        "--force"], tree) for name, tree in trees.items()}
        cmds["floor: import torch"] = ([sys.executable, "-c", "import torch, os; os._exit(0)"], Path(tmp))
        runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in cmds}
        for _ in range(args.runs):
            for name, (cmd, tree) in cmds.items():
                runs[name].append(timed(cmd, tree, tmp))
        out["arrange_cold"] = {name: {"wall_s_median": round(statistics.median(r[0] for r in rs), 3),
                                      "wall_s_min": round(min(r[0] for r in rs), 3),
                                      "cpu_s_median": round(statistics.median(r[1] for r in rs), 3)}
                               for name, rs in runs.items()}
        if args.perform_minutes:
            midi = Path(tmp) / "hour.mid"
            n_notes = hour_of_music(midi, args.perform_minutes)
            out["perform"] = {"minutes": args.perform_minutes, "notes": n_notes}
            for name, tree in trees.items():  # one child per measurement: ru_maxrss is the largest so far
                code = ("import resource, subprocess, sys\n"
                        "subprocess.run(sys.argv[1:], check=True, capture_output=True)\n"
                        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
                start = time.perf_counter()
                r = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "engine.cli", "perform",
                                    str(midi), "-o", f"{tmp}/{name}.wav"], cwd=tmp, capture_output=True,
                                   text=True, check=True, env={**os.environ, "PYTHONPATH": str(tree)})
                out["perform"][name] = {"peak_rss_mb": round(int(r.stdout) / 1024),
                                        "wall_s": round(time.perf_counter() - start, 1)}
                os.unlink(f"{tmp}/{name}.wav")
    out["load_average_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
