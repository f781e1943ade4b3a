"""Measures Arrange's timing in real time: the CLAP plugin in clap_host.cpp (SCHED_FIFO where
allowed) plays a score of single notes and chords into a real engine; prints the latency the host
read, each arranged note-on's offset from its played frame (a histogram), the plugin's Late notes
and the engine round trips it measured. The figures in plugin_stub/README.md ("Latency") come from it:

    PYTHONPATH=. python tests/plugin/arrange_timing.py --block 256
    PYTHONPATH=. python tests/plugin/arrange_timing.py --block 1024 --headroom-ms 20
"""
from __future__ import annotations

import argparse
import random
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

from conftest import DPF_PATH, HERE, EngineProcess, free_endpoint
from plugin_host import PARAM_ARRANGE_HEADROOM_MS, PARAM_LATE_NOTES, play


def score(seconds: float, sample_rate_hz: int, seed: int) -> list[tuple[int, int, int]]:
    """(frame, pitch, length): a note or a two-note chord every 0.1-0.16 s at irregular frames."""
    rng = random.Random(seed)
    notes, frame, i = [], 12000, 0
    pitches = [60, 64, 67, 72, 65, 62, 59, 71, 55, 69]
    while frame < seconds * sample_rate_hz:
        notes.append((frame, pitches[i % len(pitches)], rng.randrange(3000, 5000)))
        if i % 4 == 1:
            notes.append((frame, pitches[i % len(pitches)] - 12, rng.randrange(3000, 5000)))
        frame += rng.randrange(4800, 7800)
        i += 1
    return notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--block", type=int, default=256, help="frames per process() call (default 256)")
    parser.add_argument("--headroom-ms", type=float, default=20.0, help="Arrange headroom (default 20)")
    parser.add_argument("--seconds", type=float, default=12.0, help="length of the score (default 12)")
    parser.add_argument("--sample-rate-hz", type=int, default=48000, help="(default 48000)")
    parser.add_argument("--endpoint", default=None, help="a running engine (default: start one)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="arrange-timing-"))
    host = work / "clap_host"
    subprocess.run(["g++", "-std=c++17", "-O1", f"-I{DPF_PATH}/distrho/src", str(HERE / "clap_host.cpp"),
                    "-o", str(host), "-ldl"], check=True, timeout=120)
    engine = None
    endpoint = args.endpoint
    if endpoint is None:
        engine = EngineProcess(free_endpoint(), work / "engine.log")
        engine.start()
        endpoint = engine.endpoint
    try:
        notes = score(args.seconds, args.sample_rate_hz, args.block)
        rate = args.sample_rate_hz
        blocks = int((args.seconds + 1.0) * rate + 10 * args.headroom_ms * rate / 1000)  # every late note too
        played = play(host, endpoint, notes, sample_rate_hz=args.sample_rate_hz, block=args.block,
                      blocks=blocks // args.block, realtime=True, warmup_ms=500, fifo=True,
                      params={PARAM_ARRANGE_HEADROOM_MS: args.headroom_ms}, rtt_log=work / "rtt.log",
                      timeout_s=args.seconds * 3 + 30)
    finally:
        if engine is not None:
            engine.stop()
    ons = sorted((f, p) for f, s, p, v in played.midi if s & 0xF0 == 0x90 and v > 0)
    remaining = Counter(ons)
    offsets = []
    for frame, pitch, _ in sorted(notes):  # each played note's first arranged note-on of its pitch after it
        on = min((o for o in remaining if o[1] == pitch and o[0] >= frame and remaining[o] > 0), default=None)
        if on is not None:
            remaining[on] -= 1
            offsets.append(on[0] - frame)
    rtts = sorted(int(line.split()[1]) for line in (work / "rtt.log").read_text().splitlines())
    print(f"block {args.block}, {args.sample_rate_hz} Hz, Arrange headroom {args.headroom_ms} ms")
    print(f"latency read through CLAP: {played.latency} frames; "
          f"host lag at worst {played.max_lag_s * 1000:.1f} ms")
    print(f"notes played {len(notes)}, arranged note-ons {len(ons)}, "
          f"Late notes {played.params[PARAM_LATE_NOTES]:.0f}")
    histogram = ", ".join(f"{o}: {n}" for o, n in sorted(Counter(offsets).items()))
    print(f"offset (arranged - played frame): count  {histogram}")
    print(f"engine round trips (us): n {len(rtts)}, median {rtts[len(rtts) // 2]}, "
          f"p90 {rtts[int(len(rtts) * 0.9)]}, max {rtts[-1]}")


if __name__ == "__main__":
    main()
