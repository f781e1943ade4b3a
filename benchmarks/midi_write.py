"""Does a one-shot arrange write its MIDI at least as fast as it arranges? On a 20,000-note file
(examples/piano.mid repeated, as benchmarks/cli_startup.py builds its hour of music): the seconds
of each step of `deep-musician arrange` in process (read, arrange, write), median of --runs, for
this tree and, interleaved, another checkout (--base DIR, e.g. `git archive REV | tar -x -C DIR`).
One intra-op thread, as the CLI runs. Prints JSON.

    python -m benchmarks.midi_write --runs 5 [--base DIR] [--notes 20000]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# one child per measurement, run with PYTHONPATH at a tree: the steps `engine.cli.arrange` takes
CHILD = r"""
import json, sys, time
import torch
torch.set_num_threads(1)
from bridge.midi import read_midi, write_midi
from engine.registry import Registry
from engine.tasks.arrange import arrange, find_arranger
from models.ensembles import get_ensemble

src, out = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
score = read_midi(src)
t1 = time.perf_counter()
model = find_arranger(Registry(None), get_ensemble("satb"), "offline")
arrange(score, model)  # the first call compiles the TorchScript model: not the step measured
t2 = time.perf_counter()
result = arrange(score, model).to_score()
t3 = time.perf_counter()
write_midi(result, out)
t4 = time.perf_counter()
print(json.dumps({"notes": score.n_notes, "read_s": t1 - t0, "arrange_s": t3 - t2, "write_s": t4 - t3}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--base", type=Path, help="another checkout, measured interleaved with this one")
    p.add_argument("--notes", type=int, default=20_000)
    args = p.parse_args()
    from benchmarks.cli_startup import PIANO, hour_of_music
    from bridge.midi import read_midi

    trees = {"this": ROOT, **({"base": args.base} if args.base else {})}
    out: dict = {"load_average_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "long.mid"
        minutes = args.notes / len(read_midi(PIANO).tracks[0].notes) * 0.8  # ~0.8 min per repeat
        while hour_of_music(src, minutes) < args.notes:
            minutes *= 1.05
        runs: dict[str, list[dict]] = {name: [] for name in trees}
        for _ in range(args.runs):
            for name, tree in trees.items():
                done = subprocess.run([sys.executable, "-c", CHILD, str(src), f"{tmp}/{name}.mid"], cwd=tmp,
                                      capture_output=True, text=True, check=True,
                                      env={**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"})
                runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
        for name, rs in runs.items():
            out[name] = {"notes": rs[0]["notes"],
                         **{key: round(statistics.median(r[key] for r in rs), 3)
                            for key in ("read_s", "arrange_s", "write_s")}}
        if args.base:
            out["same_file"] = Path(f"{tmp}/this.mid").read_bytes() == Path(f"{tmp}/base.mid").read_bytes()
    out["load_average_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
