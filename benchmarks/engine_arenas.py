"""Engine jobs/s against the number of glibc malloc arenas, interleaved. Prints JSON.

    python -m benchmarks.engine_arenas [--arenas 1 2 4 16] [--clients 1 8 64] [--rounds 5] [--seconds 3]

One `deep-musician serve` per arena setting, all started at once (an idle engine only polls), each
with `$MALLOC_ARENA_MAX` set (the engine then leaves glibc's setting alone; 16 = glibc's default
of 8 per core on this 2-core machine). Each round measures every (clients, setting) pair for
`--seconds`, the settings in a rotated order per round, so a burst of load from other processes
hits every setting alike. Jobs are offline SATB arranges of 32 notes (protocol_rtt.jobs_per_s).
Per setting and client count: median and range of jobs/s over the rounds, and the median over
rounds of the ratio to the first setting measured in the same round.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

from benchmarks.protocol_rtt import jobs_per_s, run_info, start_engine
from benchmarks.soak import rss_mb


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arenas", type=int, nargs="+", default=[1, 2, 4, 16],
                   help="MALLOC_ARENA_MAX per engine; the first is the reference of the ratios")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    args = p.parse_args(argv)
    info = run_info()
    engines: dict[int, tuple[subprocess.Popen, str]] = {}
    try:
        for n in args.arenas:
            engines[n] = start_engine({"MALLOC_ARENA_MAX": str(n)})
        runs: dict[str, dict[int, list[float]]] = {str(c): {n: [] for n in args.arenas} for c in args.clients}
        errors: list[str] = []
        for r in range(args.rounds):
            for c in args.clients:
                order = args.arenas[r % len(args.arenas):] + args.arenas[:r % len(args.arenas)]
                for n in order:
                    res = jobs_per_s(engines[n][1], c, args.seconds)
                    runs[str(c)][n].append(res["jobs_per_s"])
                    errors += res["errors"]
                    print(f"round {r} clients {c} arenas {n}: {res['jobs_per_s']} jobs/s", file=sys.stderr)
        rss = {n: rss_mb(proc.pid) for n, (proc, _) in engines.items()}
    finally:
        for proc, _ in engines.values():
            proc.terminate()
        for proc, _ in engines.values():
            proc.wait(30)
    ref = args.arenas[0]
    table = {}
    for c, by_n in runs.items():
        table[c] = {}
        for n, v in by_n.items():
            ratios = np.array(v) / np.array(by_n[ref])
            table[c][str(n)] = {"median_jobs_per_s": round(float(np.median(v)), 1),
                                "min": min(v), "max": max(v), "rounds": v,
                                f"median_ratio_to_{ref}": round(float(np.median(ratios)), 3),
                                "ratio_range": [round(float(ratios.min()), 3), round(float(ratios.max()), 3)]}
    print(json.dumps({**info, "arenas": args.arenas, "rounds": args.rounds, "seconds": args.seconds,
                      "rss_mb_at_end": rss, "errors": errors[:5], "n_errors": len(errors),
                      "load_avg_end": os.getloadavg(), "jobs_per_s": table}, indent=1))


if __name__ == "__main__":
    main()
