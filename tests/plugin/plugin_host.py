"""Runs the CLAP plugin in clap_host.cpp (built by the `clap_host` fixture) and reads what it printed."""
from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BIN = Path(__file__).resolve().parents[2] / "plugin_stub" / "bin"

# The plugin's parameter indices (DPF's CLAP param ids are the indices; DeepMusicianPlugin.cpp).
PARAM_MODE, PARAM_ENSEMBLE, PARAM_OFFLINE_WAIT, PARAM_OFFLINE_TIMEOUT_MS, PARAM_PROGRAM = 0, 1, 2, 3, 4
PARAM_HEADROOM_MS, PARAM_ARRANGE_HEADROOM_MS = 14, 15
PARAM_LATENCY_SAMPLES, PARAM_LATE_NOTES = 10, 16  # outputs
PARAM_TEMPERATURE, PARAM_GENERATE_BARS, PARAM_GENERATE_TRIGGER, PARAM_GENERATE_LEAD_MS = 5, 17, 18, 19
PARAM_GENERATED_NOTES = 20  # output
PARAM_RENDERER = 21  # Render: 0 the SoundFont, 1 the neural performer
MODE_ARRANGE, MODE_RENDER, MODE_GENERATE = 0, 1, 2


@dataclass
class Played:
    midi: list[tuple[int, int, int, int]]  # (frame, status, data1, data2)
    latency: list[int]  # reported latency before and after playing, frames
    max_process_us: float  # the longest process() call
    clock_start_s: float  # time.monotonic() when frame 0 was due (real time)
    max_lag_s: float  # how far behind the clock a real-time block began, at worst
    audio: np.ndarray  # (frames, 2) float32; empty unless asked for
    stderr: str
    params: dict[int, float]  # every parameter's value at the end, through CLAP's params extension


def start(host: Path, endpoint: str, notes: Sequence[tuple[int, ...]], *, sample_rate_hz: int, block: int,
          blocks: int, realtime: bool, params: dict[int, float], audio: Path | None = None,
          warmup_ms: int = 0, fifo: bool = False, rtt_log: Path | None = None, tempo: float = 120.0,
          meter: tuple[int, int] = (4, 4)) -> subprocess.Popen:
    """Start the CLAP plugin in clap_host.cpp: notes are (frame, pitch), (frame, pitch, length) or
    (frame, "cNUMBER=VALUE"), a controller, or (frame, "pID=VALUE"), a parameter change. The
    transport rolls from frame 0 at `tempo` quarter notes a minute in `meter`. `fifo`: process() from
    a SCHED_FIFO thread where allowed, as a DAW's audio thread runs. `rtt_log`: the plugin appends
    each block's engine round trip there ("<block> <us>")."""
    args = [str(host), str(BIN / "DeepMusician.clap"), str(sample_rate_hz), str(block), str(blocks),
            "1" if realtime else "0", *(f"{k}={v}" for k, v in params.items()), "--",
            *(":".join(str(x) for x in note) for note in notes)]
    env = {"DEEP_MUSICIAN_ENDPOINT": endpoint, "PATH": "/usr/bin:/bin", "CLAP_HOST_WARMUP_MS": str(warmup_ms),
           "CLAP_HOST_FIFO": "1" if fifo else "0", "CLAP_HOST_TEMPO": str(tempo),
           "CLAP_HOST_METER": f"{meter[0]}/{meter[1]}"}
    if audio is not None:
        env["CLAP_HOST_AUDIO"] = str(audio)
    if rtt_log is not None:
        env["DEEP_MUSICIAN_RTT_LOG"] = str(rtt_log)
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(proc: subprocess.Popen, audio: Path | None = None, timeout_s: float = 60) -> Played:
    """Wait for clap_host to end and read what it printed and wrote."""
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        raise AssertionError(f"clap_host ran past {timeout_s} s (did the plugin stall the host?): "
                             f"{stderr}") from None
    assert proc.returncode == 0, stderr
    midi, latency, max_process_us, clock_start_s, max_lag_s = [], [], 0.0, 0.0, 0.0
    params: dict[int, float] = {}
    for line in stdout.splitlines():
        kind, *values = line.split()
        if kind == "midi":
            midi.append(tuple(int(v) for v in values))
        elif kind == "latency":
            latency.append(int(values[0]))
        elif kind == "max_process_us":
            max_process_us = float(values[0])
        elif kind == "clock_start_s":
            clock_start_s = float(values[0])
        elif kind == "max_lag_s":
            max_lag_s = float(values[0])
        elif kind == "param":
            params[int(values[0])] = float(values[1])
    samples = (np.fromfile(audio, np.float32).reshape(-1, 2) if audio is not None
               else np.zeros((0, 2), np.float32))
    return Played(midi, latency, max_process_us, clock_start_s, max_lag_s, samples, stderr, params)


def play(host: Path, endpoint: str, notes: Sequence[tuple[int, ...]], *, audio: Path | None = None,
         timeout_s: float = 60, **options) -> Played:
    """Run the CLAP plugin in clap_host.cpp to the end (options as for start())."""
    return finish(start(host, endpoint, notes, audio=audio, **options), audio, timeout_s)
