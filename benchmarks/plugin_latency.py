"""The plugin in real time: note-to-audio latency under JACK, and the engine round trip measured
inside the plugin against a raw pyzmq client, in one run against one engine.

A private dummy jackd (no sound card) runs the plugin's JACK standalone (or its LV2 in jalv) in
Render mode; tests/plugin/jack_probe.cpp plays notes into it and records its audio on JACK's frame
clock. Note-to-audio is the time from a note's MIDI frame to the first output sample above -60 dBFS:
the plugin's reported latency plus the SoundFont piano's attack to that level (~70-90 frames), plus
any lateness. The plugin logs each block's request -> reply time ($DEEP_MUSICIAN_RTT_LOG); then a
raw pyzmq DEALER sends the same requests (live_perform, one block each, at the pace of
the clock) to the same engine.

    python -m benchmarks.plugin_latency                      # JACK standalone, 48 kHz, 256 frames
    python -m benchmarks.plugin_latency --host lv2 --period 128 --realtime

Needs jackd2 (and jalv for --host lv2), libjack-jackd2-dev, the built plugin (make -C plugin_stub).
tests/plugin/test_jack.py uses the same functions.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / "plugin_stub" / "bin"
PROBE_SOURCE = ROOT / "tests" / "plugin" / "jack_probe.cpp"
LV2_URI = "https://github.com/deep-musician/deep-musician#plugin"
SOUND = 1e-3  # -60 dBFS: a note has begun
HEADROOM_MS = 6.0  # DeepMusicianPlugin.cpp's kDefaultHeadroomMs
ATTACK_FRAMES = 256  # the SoundFont piano reaches SOUND within this after its note-on (offline: 67-191)


def render_latency(period: int, rate_hz: int, headroom_ms: float = HEADROOM_MS) -> int:
    """The latency the plugin reports in Render mode: the engine headroom in whole blocks, at least one
    (DeepMusicianPlugin.cpp's engineLatencyFrames, with Render mode's headroom)."""
    headroom = headroom_ms / 1000.0 * rate_hz
    return period * max(1, int(np.ceil(headroom / period)))


def free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def build_probe(out_dir: Path) -> Path:
    exe = out_dir / "jack_probe"
    subprocess.run(["g++", "-std=c++17", "-O2", str(PROBE_SOURCE), "-o", str(exe), "-ljack"], check=True,
                   timeout=120)
    return exe


def wait_for_ports(env: dict[str, str], prefix: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ports = subprocess.run(["jack_lsp"], env=env, capture_output=True, text=True).stdout.split("\n")
        if any(p.startswith(prefix + ":") for p in ports):
            return
        time.sleep(0.1)
    raise RuntimeError(f"no JACK client {prefix!r} appeared within {timeout_s} s")


class JackServer:
    """A private jackd on the dummy driver: no sound card, its own server name. `realtime` asks for
    SCHED_FIFO (jackd -R; root or rtprio rights) and falls back to --no-realtime without them."""

    def __init__(self, rate_hz: int = 48000, period: int = 256, realtime: bool = False) -> None:
        self.name = f"dm-bench-{os.getpid()}-{time.monotonic_ns() % 100000}"
        self.rate_hz, self.period = rate_hz, period
        self.env = {**os.environ, "JACK_DEFAULT_SERVER": self.name, "JACK_NO_AUDIO_RESERVATION": "1"}
        self.realtime = realtime and self._start("-R")
        if not self.realtime and not self._start("--no-realtime"):
            raise RuntimeError("jackd did not start (apt-get install jackd2)")

    def _start(self, scheduling: str) -> bool:
        wait_us = int(round(self.period / self.rate_hz * 1e6))  # the dummy's period, or it runs at 1024
        self.proc = subprocess.Popen(
            ["jackd", "-n", self.name, scheduling, "-d", "dummy", "-r", str(self.rate_hz),
             "-p", str(self.period), "-w", str(wait_us)],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while subprocess.run(["jack_lsp"], env=self.env, capture_output=True).returncode != 0:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                return False
            time.sleep(0.1)
        return True

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def start_plugin(host: str, server: JackServer, endpoint: str, mode: str, rtt_log: Path | None,
                 lv2_dir: Path, headroom_ms: float = HEADROOM_MS) -> tuple[subprocess.Popen, str]:
    """The JACK standalone or the LV2 in jalv, in `mode` (arrange/render): (process, JACK client name)."""
    env = {**server.env, "DEEP_MUSICIAN_ENDPOINT": endpoint, "DEEP_MUSICIAN_HEADROOM_MS": str(headroom_ms)}
    if rtt_log is not None:
        env["DEEP_MUSICIAN_RTT_LOG"] = str(rtt_log)
    if host == "jack":
        env["DEEP_MUSICIAN_MODE"] = mode
        proc = subprocess.Popen([str(BIN / "DeepMusician")], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        client = "Deep Musician"
    else:
        (lv2_dir / "DeepMusician.lv2").unlink(missing_ok=True)
        (lv2_dir / "DeepMusician.lv2").symlink_to(BIN / "DeepMusician.lv2")
        env["LV2_PATH"] = str(lv2_dir)
        client = "dm-lv2"
        # jalv reads commands on stdin: keep a pipe open, never written.
        proc = subprocess.Popen(["jalv", "-n", client, "-c", f"mode={1 if mode == 'render' else 0}", LV2_URI],
                                env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    try:
        wait_for_ports(server.env, client)
    except RuntimeError:
        stop(proc)
        raise
    return proc, client


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@dataclass
class Probe:
    rate_hz: int
    period: int
    xruns: int
    notes: list[tuple[int, int]]  # (frame, pitch) sent
    midi: list[tuple[int, int, int, int]]  # (frame, status, data1, data2) received
    audio: np.ndarray  # (frames,) mono


def run_probe(exe: Path, server: JackServer, client: str, pitches: list[int], *, first_ms: float = 500,
              interval_ms: float = 500, length_ms: float = 200, work: Path) -> Probe:
    seconds = (first_ms + interval_ms * len(pitches)) / 1000 + 0.5
    raw = work / "probe.raw"
    args = [str(exe), client, str(seconds), str(first_ms), str(interval_ms), str(length_ms), str(raw)]
    out = subprocess.run([*args, *map(str, pitches)], env=server.env, capture_output=True, text=True,
                         timeout=seconds + 30)
    if out.returncode != 0:
        raise RuntimeError(f"jack_probe failed: {out.stderr}")
    rate = period = xruns = 0
    notes, midi = [], []
    for line in out.stdout.splitlines():
        kind, *v = line.split()
        if kind == "rate":
            rate = int(float(v[0]))
        elif kind == "period":
            period = int(v[0])
        elif kind == "xruns":
            xruns = int(v[0])
        elif kind == "note":
            notes.append((int(v[0]), int(v[1])))
        elif kind == "midi":
            midi.append(tuple(int(x) for x in v))
    audio = np.fromfile(raw, np.float32).reshape(-1, 2).mean(axis=1)
    return Probe(rate, period, xruns, notes, midi, audio)


def onsets(probe: Probe, window_s: float = 0.4) -> list[int | None]:
    """Per note sent: frames from its MIDI frame to the first sample above SOUND and above 4x the
    previous note's tail (the 50 ms before it); None when nothing sounds within window_s."""
    found: list[int | None] = []
    for frame, _ in probe.notes:
        tail = float(np.abs(probe.audio[max(0, frame - probe.rate_hz // 20):frame]).max(initial=0.0))
        span = probe.audio[frame:frame + int(window_s * probe.rate_hz)]
        loud = np.flatnonzero(np.abs(span) > max(SOUND, 4 * tail))
        found.append(int(loud[0]) if len(loud) else None)
    return found


def raw_client_rtt_us(endpoint: str, blocks: int, period: int, rate_hz: int) -> np.ndarray:
    """A raw pyzmq DEALER sending what the plugin sends per block (live_perform, one
    note every 96 blocks), one block per period at the pace of the clock: request -> done, in us."""
    import zmq

    from bridge import protocol
    from bridge.score import make_notes

    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(endpoint)
    rtts = []
    empty = make_notes([], [], 0, 100)
    try:
        start = time.perf_counter()
        for i in range(blocks):
            ticks = int(i * period / rate_hz * 2 * 960)  # 120 qpm, 960 per quarter
            notes = make_notes([ticks], [60 + i % 12], 0, 100) if i % 96 == 0 else empty
            request = protocol.make_request(
                protocol.LIVE_PERFORM, i + 1,
                [notes, np.zeros(len(notes), np.uint8), np.zeros((0, 3), np.int64)],
                session="raw-client", position_ticks=ticks, resolution=960, qpm=120.0,
                sample_rate_hz=rate_hz, block_samples=period, programs=[0], reset=i == 0)
            sent = time.perf_counter()
            sock.send_multipart(protocol.encode(request))
            while True:
                if not sock.poll(5000):
                    raise RuntimeError("the engine did not answer a block in 5 s")
                reply = protocol.decode(sock.recv_multipart())
                if reply.type in (protocol.DONE, protocol.ERROR):
                    break
            rtts.append((time.perf_counter() - sent) * 1e6)
            time.sleep(max(0.0, start + (i + 1) * period / rate_hz - time.perf_counter()))
    finally:
        sock.close()
        context.term()
    return np.array(rtts)


def wait_for_engine(endpoint: str, timeout_s: float = 60.0) -> None:
    import zmq

    from bridge import protocol

    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.linger = 0
    try:
        sock.connect(endpoint)
        sock.send_multipart(protocol.encode(protocol.make_request(protocol.PING, 1)))
        if not sock.poll(int(timeout_s * 1000)):
            raise RuntimeError(f"no engine answered ping at {endpoint} within {timeout_s} s")
    finally:
        sock.close()
        context.term()


def stats(values: np.ndarray) -> dict[str, float]:
    return {"median": float(np.median(values)), "p99": float(np.percentile(values, 99)),
            "max": float(values.max()), "n": int(len(values))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", choices=("jack", "lv2"), default="jack", help="default: %(default)s")
    parser.add_argument("--rate", type=int, default=48000, help="sample rate, Hz (default: %(default)s)")
    parser.add_argument("--period", type=int, default=256, help="JACK period, frames (default: %(default)s)")
    parser.add_argument("--notes", type=int, default=40,
                        help="notes played, 0.5 s apart (default: %(default)s)")
    parser.add_argument("--realtime", action="store_true",
                        help="jackd -R (SCHED_FIFO) instead of --no-realtime")
    parser.add_argument("--headroom-ms", type=float, default=HEADROOM_MS,
                        help="the plugin's engine headroom, its latency in whole periods "
                             "(default: %(default)s)")
    parser.add_argument("--endpoint", help="a running engine; default: start one on a free port")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    for tool in ("jackd", "jack_lsp", "g++") + (("jalv",) if args.host == "lv2" else ()):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed: apt-get install jackd2 jalv libjack-jackd2-dev g++")

    engine = None
    endpoint = args.endpoint
    if endpoint is None:
        endpoint = free_endpoint()
        engine = subprocess.Popen([sys.executable, "-m", "engine.cli", "serve", "--endpoint", endpoint],
                                  cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        try:
            wait_for_engine(endpoint)
            exe = build_probe(work)
            server = JackServer(args.rate, args.period, args.realtime)
            try:
                rtt_log = work / "rtt.log"
                proc, client = start_plugin(args.host, server, endpoint, "render", rtt_log, work,
                                            args.headroom_ms)
                try:
                    time.sleep(1.0)  # connected, and the engine's synth for this rate is warm
                    pitches = [60 + (i * 5) % 24 for i in range(args.notes)]
                    probe = run_probe(exe, server, client, pitches, work=work)
                finally:
                    stop(proc)
            finally:
                server.stop()
            plugin_rtt = np.array([int(line.split()[1]) for line in rtt_log.read_text().splitlines()], float)
            raw_rtt = raw_client_rtt_us(endpoint, len(plugin_rtt), args.period, args.rate)
        finally:
            if engine is not None:
                engine.terminate()
                engine.wait(30)

    latency = render_latency(probe.period, probe.rate_hz, args.headroom_ms)
    found = onsets(probe)
    heard = np.array([f for f in found if f is not None], float)
    period_ms = probe.period / probe.rate_hz * 1000
    result = {
        "host": args.host, "jackd": "-R" if server.realtime else "--no-realtime", "rate_hz": probe.rate_hz,
        "period": probe.period, "period_ms": period_ms, "xruns": probe.xruns,
        "headroom_ms": args.headroom_ms, "reported_latency": latency,
        "reported_latency_ms": latency / probe.rate_hz * 1000,
        "notes": len(found), "heard": int(len(heard)),
        "note_to_audio_frames": stats(heard) if len(heard) else None,
        "note_to_audio_ms": stats(heard / probe.rate_hz * 1000) if len(heard) else None,
        "note_to_audio_periods": stats(heard / probe.period) if len(heard) else None,
        # past the latency plus the piano's attack to -60 dBFS (67-191 frames, by pitch, at 48 kHz)
        "late_notes": int(np.sum(heard > latency + ATTACK_FRAMES)),
        "after_latency_frames": stats(heard - latency) if len(heard) else None,
        "plugin_rtt_us": stats(plugin_rtt), "raw_client_rtt_us": stats(raw_rtt),
        # a block whose reply took longer than the latency missed its slot: that span was silence
        "blocks_past_latency": int(np.sum(plugin_rtt > latency / probe.rate_hz * 1e6)),
        "command": " ".join(["python -m benchmarks.plugin_latency", *sys.argv[1:]]),
    }
    print(json.dumps(result, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
