"""Where models run. The rule (docs/architecture.md):

- batch work (a whole region to arrange, later composition and neural rendering) runs on the
  device ``serve --device`` names: ``auto`` is the GPU when torch sees one, else the CPU;
- live work (one chord or one block at a time, a small stateful step) runs on the CPU unless the
  accelerator at hand is measured faster for it. Small steps are launch- and copy-bound on a GPU:
  on an H200 the online arranger took 3.2-3.8 ms per chord against 0.75 ms on a 2-core CPU (issue
  15, before the move); after it, 1.25-1.36 ms on the H200 against 1.08-1.45 ms on that machine's
  own CPU, and a live block's round trip 3.7 ms p50 with live work on its CPU against 4.3 ms on the
  GPU (benchmarks/RESULTS.md). ``live_device`` measures instead of assuming, once at start-up.
"""
from __future__ import annotations

import logging
import statistics
import time

import numpy as np

from bridge.score import NOTE_DTYPE

log = logging.getLogger("engine.devices")
PROBE_CHORDS = 48  # chords timed per device and round: well under a second on a CPU
PROBE_RESOLUTION = 24  # the probe session's host ticks per quarter: one chord per quarter note
PROBE_ROUNDS = 3  # interleaved rounds per device, so a passing hiccup does not decide
MARGIN = 0.9  # the accelerator takes live work only when at most this fraction of the CPU's time


def resolve(device: str) -> str:
    """``auto`` -> cuda when torch sees a GPU, else cpu; raises ValueError for cuda without one."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA GPU here (torch "
                         f"{torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); use --device "
                         "cpu, or install a CUDA build of torch on a machine with an NVIDIA GPU")
    return device


def chord_ms(registry, entry, device: str, chords: int = PROBE_CHORDS) -> float:
    """Median milliseconds per chord of a live session of ``entry`` on ``device``."""
    from engine.tasks.live_arrange import LiveArranger

    live = LiveArranger(registry.on(entry, device), PROBE_RESOLUTION)
    rng = np.random.default_rng(0)
    times = []
    for k in range(chords + 4):  # the first calls pay for compilation and caches: not counted
        size = int(rng.integers(1, 5))
        notes = np.zeros(size, NOTE_DTYPE)
        notes["time"] = PROBE_RESOLUTION * k
        notes["pitch"] = rng.choice(np.arange(40, 84), size, replace=False)
        notes["duration"], notes["velocity"] = PROBE_RESOLUTION, 80
        start = time.perf_counter()
        live.push(notes)
        if k >= 4:
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def live_device(registry, batch_device: str) -> str:
    """The device live work runs on: the CPU, unless ``batch_device`` is an accelerator measured
    clearly faster per chord (MARGIN) with every online arranger, in interleaved rounds (the
    numbers are logged). Close calls stay on the CPU: it never waits on a busy GPU's queue."""
    if batch_device == "cpu":
        return "cpu"
    online = [e for e in registry.usable("arrange") if e.metadata.get("mode") == "online"]
    if not online:
        return "cpu"
    cpu, dev = [], []
    for _ in range(PROBE_ROUNDS):
        for entry in online:
            cpu.append(chord_ms(registry, entry, "cpu"))
            dev.append(chord_ms(registry, entry, batch_device))
    cpu_ms, dev_ms = statistics.median(cpu), statistics.median(dev)
    chosen = batch_device if dev_ms <= MARGIN * cpu_ms else "cpu"
    log.info("event=live_device chosen=%s cpu_ms_per_chord=%.3f %s_ms_per_chord=%.3f models=%d",
             chosen, cpu_ms, batch_device, dev_ms, len(online))
    return chosen
