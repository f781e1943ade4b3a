"""Where the engine's time goes: py-spy samples `deep-musician serve` under one workload. Prints JSON.

    python -m benchmarks.engine_profile --workload perform|live [--seconds 15]

Needs `py-spy` on PATH (pip install py-spy). `perform`: one client sends 20-second perform jobs
(protocol_rtt.perform_notes) back to back; `live`: one client sends the held-out chorales' chords
as live_notes, chord by chord. py-spy samples every engine thread, idle ones left out
(--idle off); the JSON gives the share of samples per thread and the functions with the most
samples on top of the stack (self time) and anywhere in it (inclusive).
"""
from __future__ import annotations

import argparse
import collections
import json
import subprocess
import tempfile
import threading
import time

import numpy as np

from benchmarks.protocol_rtt import (
    PERFORM_QPM,
    PERFORM_RESOLUTION,
    SAMPLE_RATE_HZ,
    perform_notes,
    run_info,
    start_engine,
)
from bridge.client import Client


def drive(endpoint: str, workload: str, stop: threading.Event, counts: list[int]) -> None:
    with Client(endpoint, timeout_s=60) as c:
        if workload == "perform":
            notes = perform_notes(20.0)
            while not stop.is_set():
                c.perform(notes, SAMPLE_RATE_HZ, resolution=PERFORM_RESOLUTION, qpm=PERFORM_QPM)
                counts[0] += 1
            return
        from models.data import RESOLUTION
        from models.data import corpus as ds

        for k, piece in enumerate(ds.load("bach", "test") * 10):
            for onset in np.unique(piece.notes["time"]):
                if stop.is_set():
                    return
                chord = piece.notes[piece.notes["time"] == onset]
                c.live_notes(f"profile-{k}", chord, position_ticks=int(onset), ensemble="satb",
                             resolution=RESOLUTION)
                counts[0] += 1


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", choices=["perform", "live"], required=True)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--top", type=int, default=15)
    args = p.parse_args(argv)
    info = run_info()
    proc, endpoint = start_engine()
    stop, counts = threading.Event(), [0]
    driver = threading.Thread(target=drive, args=(endpoint, args.workload, stop, counts))
    raw = tempfile.NamedTemporaryFile(suffix=".txt", delete=False).name
    try:
        driver.start()
        time.sleep(2)  # past the first calls
        subprocess.run(["py-spy", "record", "-p", str(proc.pid), "-d", str(int(args.seconds)), "-r", "200",
                        "--threads", "-f", "raw", "-o", raw], check=True, capture_output=True)
    finally:
        stop.set()
        driver.join(120)
        proc.terminate()
        proc.wait(30)
    by_thread, self_t, incl = collections.Counter(), collections.Counter(), collections.Counter()
    total = 0
    for line in open(raw):
        stack, _, n = line.rstrip("\n").rpartition(" ")
        frames, n = stack.split(";"), int(n)
        total += n
        by_thread[frames[0]] += n
        self_t[frames[-1]] += n
        for f in set(frames[1:]):
            incl[f] += n

    def share(c: collections.Counter) -> list:
        return [[k, round(100 * v / total, 1)] for k, v in c.most_common(args.top)]

    print(json.dumps({**info, "workload": args.workload, "seconds": args.seconds, "requests": counts[0],
                      "samples": total, "percent_by_thread": share(by_thread),
                      "percent_self": share(self_t), "percent_inclusive": share(incl)}, indent=1))


if __name__ == "__main__":
    main()
