"""Speed of the SoundFont performer (FluidSynth through bridge.synth), embedded and through the engine.
Prints JSON.

    python benchmarks/perform_speed.py [--pieces 5] [--sample-rate 48000]

- embedded: render_chunks on held-out Bach chorales (four parts: choir aahs, strings), real-time
  factor = seconds of audio / seconds of wall time, one thread.
- engine: the same pieces as `perform` jobs through `deep-musician serve` (Client.perform): time to
  the first `audio` chunk after sending, and the real-time factor including the protocol.
- live: one `live_notes` perform block of 512 samples, round trip p50/p99 (a DAW's block at 48 kHz
  lasts 10.7 ms).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.protocol_rtt import start_engine  # noqa: E402
from bridge import protocol as P  # noqa: E402
from bridge.client import Client  # noqa: E402
from bridge.synth import Synth  # noqa: E402
from engine.tasks.perform import render_chunks  # noqa: E402

PROGRAMS = [52, 52, 48, 48]  # choir aahs for soprano/alto, strings for tenor/bass


def chorales(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from music21 import corpus

    from bridge.notation import read_notation
    from models.data.splits import SPLITS_DIR

    names = json.loads((SPLITS_DIR / "bach.json").read_text())["test"][:n]
    out = []
    for name in names:
        score = read_notation(corpus.getWork(name.removeprefix("bach/"))).with_resolution(24)
        notes, parts = score.merged()
        out.append((notes, np.minimum(parts, 3).astype(np.uint8)))
    return out


def embedded(pieces, sr: int) -> dict:
    audio_s = wall_s = 0.0
    for notes, parts in pieces:
        with Synth(sr) as synth:
            start = time.perf_counter()
            samples = sum(c.shape[1] for c in render_chunks(synth, notes, parts.astype(np.int64), PROGRAMS,
                                                            24, 100.0))
            wall_s += time.perf_counter() - start
        audio_s += samples / sr
    return {"audio_s": round(audio_s, 1), "wall_s": round(wall_s, 3),
            "realtime_factor": round(audio_s / wall_s, 1)}


def through_engine(endpoint: str, pieces, sr: int) -> dict:
    firsts, audio_s, wall_s = [], 0.0, 0.0
    with Client(endpoint, timeout_s=60) as c:
        for notes, parts in pieces:
            start = time.perf_counter()
            first = None
            samples = 0
            for reply in c.stream(P.PERFORM, [notes, parts], sample_rate_hz=sr, resolution=24, qpm=100.0,
                                  programs=PROGRAMS):
                if reply.type == P.AUDIO:
                    first = first or time.perf_counter() - start
                    samples += reply.frame("audio").shape[1]
            wall_s += time.perf_counter() - start
            firsts.append(first)
            audio_s += samples / sr
    a = np.array(firsts) * 1000
    return {"first_chunk_ms_p50": round(float(np.median(a)), 1),
            "first_chunk_ms_max": round(float(a.max()), 1), "audio_s": round(audio_s, 1),
            "wall_s": round(wall_s, 3), "realtime_factor": round(audio_s / wall_s, 1)}


def live_blocks(endpoint: str, sr: int, n: int = 2000) -> dict:
    from bridge.score import make_notes

    times = []
    with Client(endpoint, timeout_s=30) as c:
        for k in range(n):
            notes = make_notes([k], [48 + k % 36], 0, 90) if k % 8 == 0 else make_notes([], [], [], 90)
            releases = np.array([[k, 48 + (k - 8) % 36, 0]]) if k % 8 == 0 and k >= 8 else None
            start = time.perf_counter()
            c.live_perform("bench", notes, k, block_samples=512, sample_rate_hz=sr, qpm=120.0,
                           releases=releases, resolution=round(sr * 60 / 120 / 512))  # ~ a tick a block
            times.append(time.perf_counter() - start)
    a = np.array(times[100:]) * 1000
    return {"block_samples": 512, "rtt_ms_p50": round(float(np.percentile(a, 50)), 3),
            "rtt_ms_p99": round(float(np.percentile(a, 99)), 3), "block_ms": round(512 / sr * 1000, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pieces", type=int, default=5)
    p.add_argument("--sample-rate", type=int, default=48_000)
    args = p.parse_args()
    pieces = chorales(args.pieces)
    result = {"machine": {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)},
              "pieces": len(pieces), "notes": int(sum(len(n) for n, _ in pieces)),
              "embedded": embedded(pieces, args.sample_rate)}
    proc, endpoint = start_engine()
    try:
        time.sleep(2.0)  # the engine reads the SoundFont beside serving; let it finish
        result["engine"] = through_engine(endpoint, pieces, args.sample_rate)
        result["live"] = live_blocks(endpoint, args.sample_rate)
    finally:
        proc.terminate()
        proc.wait(30)
    result["machine"]["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
