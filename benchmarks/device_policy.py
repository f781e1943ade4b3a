"""Where should each task's models run? Measures, on the machine at hand, what engine/devices.py
decides from: the live arranger per chord on the CPU and on the accelerator, offline arranging of
a whole region on each, and a live block's round trip through a real engine (its ROUTER socket, a
DEALER client) with live work where the policy puts it against live work forced onto the
accelerator, the old behaviour ("serve puts every model on the GPU").

    python -m benchmarks.device_policy --json benchmarks/device_policy.json

Needs no files but the shipped models (notes are generated). On a machine without CUDA only the
CPU rows are measured.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import torch

from bridge.client import Client
from bridge.score import make_notes
from engine import devices
from engine.registry import Registry
from engine.server import EngineServer
from engine.tasks.arrange import arrange_notes


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chorale_like(rng: np.random.Generator, beats: int) -> np.ndarray:
    """Four-voice chords, one per beat, 24 ticks per quarter."""
    times = np.repeat(np.arange(beats) * 24, 4)
    base = np.array([48, 57, 64, 72])
    pitches = (base[None, :] + rng.integers(-3, 4, (beats, 4))).reshape(-1)
    return make_notes(times, pitches, 24, 80)


def offline_notes_per_s(registry: Registry, entry, device: str, notes: np.ndarray, repeats: int) -> float:
    model = registry.on(entry, device)
    arrange_notes(notes[:64], 24, model)  # compile / warm
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        arrange_notes(notes, 24, model)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return len(notes) / statistics.median(times)


def live_round_trip_ms(registry: Registry, batch_device: str, live_device: str, chords: int) -> dict:
    server = EngineServer(f"tcp://127.0.0.1:{free_port()}", registry, device=batch_device,
                          live_device=live_device)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    rng = np.random.default_rng(1)
    notes = chorale_like(rng, chords + 8)
    times = []
    try:
        with Client(server.endpoint, timeout_s=30.0) as c:
            for k in range(chords + 8):
                chord = notes[4 * k:4 * k + 4]
                start = time.perf_counter()
                c.live_notes("bench", chord, int(chord["time"][0]), ensemble="satb")
                if k >= 8:  # the first blocks make the session and compile: not counted
                    times.append(time.perf_counter() - start)
    finally:
        server.stop()
        thread.join(10)
    ms = np.array(times) * 1000
    return {"live_device": live_device, "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3), "blocks": len(ms)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--chords", type=int, default=300, help="chords timed per live measurement")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # as the engine's workers: one intra-op thread per job
    accel = "cuda" if torch.cuda.is_available() else None
    registry = Registry()
    online = [e for e in registry.usable("arrange") if e.metadata["mode"] == "online"]
    out: dict = {"command": "python -m benchmarks.device_policy", "torch": torch.__version__,
                 "device": torch.cuda.get_device_name(0) if accel else "cpu only",
                 "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                          text=True).stdout.strip() or "unknown",
                 "live_chord_ms": {}, "offline_notes_per_s": {}, "live_round_trip": []}
    for entry in online:
        row = {"cpu": round(devices.chord_ms(registry, entry, "cpu", args.chords), 4)}
        if accel:
            row[accel] = round(devices.chord_ms(registry, entry, accel, args.chords), 4)
        out["live_chord_ms"][entry.name] = row
        print(entry.name, "ms per chord", row, flush=True)
    notes = chorale_like(np.random.default_rng(0), 5000)  # 20,000 notes
    for entry in registry.usable("arrange"):
        row = {"cpu": round(offline_notes_per_s(registry, entry, "cpu", notes, 3))}
        if accel:
            row[accel] = round(offline_notes_per_s(registry, entry, accel, notes, 3))
        out["offline_notes_per_s"][entry.name] = row
        print(entry.name, "offline notes/s", row, flush=True)
    if accel:
        chosen = devices.live_device(registry, accel)
        out["policy_live_device"] = chosen
        for live in (chosen, accel) if chosen != accel else (accel, "cpu"):
            row = live_round_trip_ms(registry, accel, live, args.chords)
            out["live_round_trip"].append(row)
            print("live round trip", row, flush=True)
    else:
        out["live_round_trip"].append(live_round_trip_ms(registry, "cpu", "cpu", args.chords))
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
