"""Soak: many clients keep an engine busy for minutes while its memory is sampled.

Starts `deep-musician serve` on a free loopback port, runs N client threads that loop over
offline arranges and live sessions (a new session every 50 chords, so per-session state is made
and dropped all the time), and samples the engine's resident memory every few seconds. The first
half of the run is the warm-up: the heap settles into its working shape (free chunks of the sizes
the steady state needs) over the first few minutes. Memory is "flat" when over the second half
the fitted slope stays under --max-slope-mb-per-min (so an hour-long session grows by less than
30 MB) and the growth under the tolerance; the whole run's slope is reported beside it. Not part
of the test run (it takes minutes).

The engine keeps each client's MAX_SESSIONS_PER_CLIENT most recent live sessions (~6 KB each),
so its memory rightly grows until every client has that many; at 64 clients a 4-minute run opens
only ~16 per client and would measure that fill, not a leak. Each client therefore first opens
--prefill-sessions one-chord sessions, and sampling starts once all have: from then on every new
session evicts an old one, and memory should stay flat.

    python benchmarks/soak.py --clients 64 --minutes 10 > benchmarks/soak.json
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.protocol_rtt import run_info  # noqa: E402
from bridge.client import Client, EngineError, EngineUnreachable  # noqa: E402
from bridge.score import make_notes, sort_order  # noqa: E402
from engine.sessions import MAX_SESSIONS_PER_CLIENT  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def chorale_like(rng: np.random.Generator, n_chords: int) -> np.ndarray:
    t = np.repeat(np.arange(n_chords) * 24, 4)
    pitch = np.tile([48, 55, 64, 72], n_chords) + rng.integers(-3, 4, 4 * n_chords)
    notes = make_notes(t, pitch, 24, 80)
    return notes[sort_order(notes)]


def client_loop(endpoint: str, stop: threading.Event, k: int, counts: dict, errors: list,
                prefill_sessions: int, prefilled: threading.Semaphore, perform_every: int = 0) -> None:
    rng = np.random.default_rng(k)
    with Client(endpoint, timeout_s=30.0) as c:
        try:
            for i in range(prefill_sessions):  # fill this client's session cap before sampling
                c.live_notes(f"soak-{k}-fill-{i}", chorale_like(rng, 1), position_ticks=0, ensemble="satb")
                counts["sessions"] += 1
        except (EngineError, EngineUnreachable) as exc:
            errors.append(f"client {k} (prefill): {exc}")
        finally:
            prefilled.release()
        session, position, n = f"soak-{k}-0", 0, 0
        render, block = f"soak-{k}-render", 0  # a live perform session, reset every 50 blocks
        counts["sessions"] += 1
        while not stop.is_set():
            try:
                if perform_every and n % perform_every == 1:
                    ticks = block * 512 * 2 * 960 // 48_000  # 512 samples at 120 qpm, 960 per quarter
                    chord = chorale_like(rng, 1 if block % 8 == 0 else 0)  # short notes (24 ticks)
                    chord["time"] = ticks
                    c.live_perform(render, chord, position_ticks=ticks, block_samples=512,
                                   sample_rate_hz=48_000, qpm=120.0, resolution=960, reset=block % 50 == 0)
                    block += 1
                    counts["perform"] += 1
                elif n % 4 == 0:
                    c.arrange(chorale_like(rng, 32), "satb", "offline", resolution=24)
                    counts["arrange"] += 1
                else:
                    chord = chorale_like(rng, 1)
                    chord["time"] = position
                    c.live_notes(session, chord, position_ticks=position, ensemble="satb")
                    position += 24
                    counts["live"] += 1
                    if position // 24 % 50 == 0:
                        session, position = f"soak-{k}-{n}", 0
                        counts["sessions"] += 1
                n += 1
            except (EngineError, EngineUnreachable) as exc:
                errors.append(f"client {k}: {exc}")
                time.sleep(0.5)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--sample-s", type=float, default=5.0)
    p.add_argument("--tolerance-mb", type=float, default=5.0)
    p.add_argument("--max-slope-mb-per-min", type=float, default=0.5)
    p.add_argument("--perform-every", type=int, default=8,
                   help="every Nth request of a client is a live perform block (512 samples at 48 kHz; "
                        "its session is reset every 50 blocks, a new synthesiser each time); 0: none")
    p.add_argument("--prefill-sessions", type=int, default=MAX_SESSIONS_PER_CLIENT,
                   help="live sessions each client opens before sampling starts (0: none)")
    p.add_argument("--malloc-arena-max", type=int,
                   help="set $MALLOC_ARENA_MAX for the engine (default: the engine's own setting)")
    args = p.parse_args(argv)
    info = run_info()
    env = dict(os.environ)
    if args.malloc_arena_max:
        env["MALLOC_ARENA_MAX"] = str(args.malloc_arena_max)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    log = tempfile.NamedTemporaryFile("w", suffix=".log", delete=False)
    engine = subprocess.Popen([sys.executable, "-m", "engine.cli", "serve", "--endpoint", endpoint],
                              cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with Client(endpoint, timeout_s=1.0, retries=0) as c:
                    c.ping()
                break
            except EngineUnreachable:
                if time.monotonic() > deadline or engine.poll() is not None:
                    raise SystemExit(f"engine did not start; log in {log.name}") from None
        stop, counts, errors = threading.Event(), {"arrange": 0, "live": 0, "sessions": 0, "perform": 0}, []
        prefilled = threading.Semaphore(0)
        threads = [threading.Thread(target=client_loop, args=(endpoint, stop, k, counts, errors,
                                                              args.prefill_sessions, prefilled,
                                                              args.perform_every), daemon=True)
                   for k in range(args.clients)]
        t_prefill = time.monotonic()
        for t in threads:
            t.start()
        for _ in threads:
            prefilled.acquire()
        prefill_s = time.monotonic() - t_prefill
        samples, t0 = [], time.monotonic()
        while time.monotonic() - t0 < args.minutes * 60:
            time.sleep(args.sample_s)
            samples.append({"s": round(time.monotonic() - t0, 1), "rss_mb": round(rss_mb(engine.pid), 1),
                            "arranges": counts["arrange"], "live_blocks": counts["live"],
                            "perform_blocks": counts["perform"],
                            "sessions_opened": counts["sessions"]})
            print(json.dumps(samples[-1]), file=sys.stderr)
        stop.set()
        for t in threads:
            t.join(60)
        minutes = np.array([s["s"] for s in samples]) / 60
        rss = np.array([s["rss_mb"] for s in samples])
        settled = minutes >= args.minutes / 2  # the second half: after the warm-up

        def fitted(mask: np.ndarray) -> float:
            return float(np.polyfit(minutes[mask], rss[mask], 1)[0]) if mask.sum() > 1 else 0.0

        slope, whole_slope = fitted(settled), fitted(np.ones(len(rss), bool))
        first, last = (float(rss[settled][0]), float(rss[settled][-1])) if settled.any() else (0.0, 0.0)
        result = {**info, "malloc_arena_max": args.malloc_arena_max, "clients": args.clients,
                  "minutes": args.minutes,
                  "prefill_sessions_per_client": args.prefill_sessions, "prefill_s": round(prefill_s, 1),
                  "sessions_opened": counts["sessions"], "arranges": counts["arrange"],
                  "live_blocks": counts["live"], "perform_blocks": counts["perform"],
                  "perform_every": args.perform_every, "errors": errors[:20], "n_errors": len(errors),
                  "rss_start_mb": round(float(rss[0]), 1) if len(rss) else None,
                  "rss_second_half_mb": [round(first, 1), round(last, 1)],
                  "growth_mb": round(last - first, 1), "slope_mb_per_min": round(slope, 2),
                  "whole_run_slope_mb_per_min": round(whole_slope, 2),
                  "flat": last - first <= args.tolerance_mb and slope <= args.max_slope_mb_per_min,
                  "samples": samples}
        print(json.dumps(result, indent=1))
    finally:
        engine.terminate()
        engine.wait(30)


if __name__ == "__main__":
    main()
