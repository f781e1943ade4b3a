"""Protocol and engine speed against raw pyzmq, measured in the same run. Prints JSON.

    python benchmarks/protocol_rtt.py [--rtt-n 3000] [--jobs-s 5] [--clients 1 8 64]

- rtt: round trip of a small request. `raw`: a DEALER sends 4 bytes to a ROUTER echo process.
  `engine_frames`: an encoded `ping` to `deep-musician serve`, its `pong` decoded. `engine_client`:
  bridge.client.Client.ping() (adds request building and validation).
- stream: float32 stereo audio frames sent by a ROUTER process to a DEALER, at two frame sizes:
  4096 samples (32 KiB) and the engine's perform chunk (engine.perform.CHUNK_SAMPLES = 32768,
  256 KiB). `raw`: the bytes alone. `protocol`: what a perform job sends per chunk: an `audio`
  reply and a `progress` reply (make_reply + encode in the sender, decode of both in the receiver).
  This measures the protocol layer on the same sockets; synthesis speed is not in it.
- jobs: offline SATB arrange jobs of 32 notes per second, with N clients (threads of this process,
  one Client each) against one engine with its default 2 workers.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import zmq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge import protocol as P  # noqa: E402
from bridge.client import Client, EngineUnreachable  # noqa: E402
from bridge.score import make_notes  # noqa: E402

AUDIO_SHAPE = [2, 4096]  # (channels, samples) of the stream being measured; --audio-samples


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentiles_us(samples_s: list[float]) -> dict[str, float]:
    a = np.array(samples_s) * 1e6
    return {"p50_us": round(float(np.percentile(a, 50)), 1), "p99_us": round(float(np.percentile(a, 99)), 1),
            "n": len(a)}


def run_info() -> dict:
    """What every JSON carries: the exact command, the commit (and whether the tree had changes),
    the machine and its load when the run began."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return {"command": " ".join(["python", "-m", f"benchmarks.{Path(sys.argv[0]).stem}", *sys.argv[1:]]),
            "commit": commit, "uncommitted_changes": bool(dirty),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "zmq": zmq.zmq_version(),
                        "load_avg_start": [round(x, 2) for x in os.getloadavg()]}}


# --- helper processes ---------------------------------------------------------------------------

def serve_echo(endpoint: str, decode: bool = False) -> None:
    """A ROUTER echo; with `decode`, it answers a decoded ping with an encoded pong (the protocol's
    own cost, without the engine's loop and scheduler)."""
    sock = zmq.Context.instance().socket(zmq.ROUTER)
    sock.bind(endpoint)
    while True:
        identity, *frames = sock.recv_multipart(copy=False)
        if frames[0].bytes == b"stop":
            return
        if decode:
            frames = P.encode(P.make_reply(P.PONG, P.decode(frames).id))
        sock.send_multipart([identity, *frames], copy=False)


def serve_audio(endpoint: str, how: str, count: int) -> None:
    """Wait for a DEALER's hello, then send it `count` audio frames and an empty end frame."""
    sock = zmq.Context.instance().socket(zmq.ROUTER)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.bind(endpoint)
    identity, _ = sock.recv_multipart()
    audio = np.random.default_rng(0).uniform(-1, 1, AUDIO_SHAPE).astype(np.float32)
    for seq in range(count):
        if how == "raw":
            sock.send_multipart([identity, audio.data], copy=False)
        else:
            reply = P.make_reply(P.AUDIO, 1, [audio], job=1, seq=seq, start_sample=seq * AUDIO_SHAPE[1],
                                 sample_rate_hz=48_000)
            sock.send_multipart([identity, *P.encode(reply)], copy=False)
            progress = P.make_reply(P.PROGRESS, 1, job=1, fraction=(seq + 1) / count,
                                    message=f"{seq + 1} of {count} chunks")
            sock.send_multipart([identity, *P.encode(progress)], copy=False)
    sock.send_multipart([identity, b""])
    sock.recv_multipart()  # the receiver's goodbye, so nothing is cut off


def spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, *args], cwd=ROOT)


# --- measurements -------------------------------------------------------------------------------

def _round_trip(sock: zmq.Socket, frames: list, check) -> float:
    start = time.perf_counter()
    sock.send_multipart(frames)
    if not sock.poll(10_000):
        raise RuntimeError("no answer in 10 s")
    check(sock.recv_multipart(copy=False))
    return time.perf_counter() - start


def rtt(endpoint: str, n: int, blocks: int = 10) -> dict[str, dict[str, float]]:
    """Raw echo, engine (frames) and engine (Client.ping) in interleaved blocks, so a burst of load
    from other processes hits all three alike."""
    echo_endpoint, pecho_endpoint = (f"tcp://127.0.0.1:{free_port()}" for _ in range(2))
    procs = [spawn("--serve-echo", echo_endpoint), spawn("--serve-echo", pecho_endpoint, "--decode")]
    ctx = zmq.Context.instance()
    raw, pecho, eng = ctx.socket(zmq.DEALER), ctx.socket(zmq.DEALER), ctx.socket(zmq.DEALER)
    for sock, ep in ((raw, echo_endpoint), (pecho, pecho_endpoint), (eng, endpoint)):
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(ep)
    client = Client(endpoint, timeout_s=10)
    times: dict[str, list[float]] = {"raw": [], "protocol_echo": [], "engine_frames": [],
                                     "engine_client": []}

    def pong(frames: list) -> None:
        assert P.decode(frames).type == P.PONG

    try:
        for _ in range(200):  # warm-up
            _round_trip(raw, [b"ping"], lambda f: None)
            _round_trip(pecho, P.encode(P.Message(P.PING, 0)), pong)
            _round_trip(eng, P.encode(P.Message(P.PING, 0)), pong)
            client.ping()
        for _ in range(blocks):
            for i in range(n // blocks):
                times["raw"].append(_round_trip(raw, [b"ping"], lambda f: None))
                times["protocol_echo"].append(_round_trip(pecho, P.encode(P.Message(P.PING, i)), pong))
                times["engine_frames"].append(_round_trip(eng, P.encode(P.Message(P.PING, i)), pong))
                times["engine_client"].append(client.ping())
        raw.send(b"stop")
        pecho.send(b"stop")
        return {k: percentiles_us(v) for k, v in times.items()}
    finally:
        client.close()
        for sock in (raw, pecho, eng):
            sock.close(linger=0)
        for proc in procs:
            proc.wait(10)


def stream(how: str, count: int) -> dict[str, float]:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    proc = spawn("--serve-audio", endpoint, how, f"{count}:{AUDIO_SHAPE[1]}")
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.connect(endpoint)
    try:
        time.sleep(0.3)  # let the sender bind
        sock.send(b"hello")
        received, start = 0, None
        while True:
            if not sock.poll(30_000):
                raise RuntimeError("the audio sender went silent for 30 s")
            frames = sock.recv_multipart(copy=False)
            start = start or time.perf_counter()
            if len(frames) == 1 and len(frames[0]) == 0:
                break
            if how == "raw":
                audio = np.frombuffer(frames[0], np.float32).reshape(AUDIO_SHAPE)
            else:
                message = P.decode(frames)
                if message.type == P.PROGRESS:
                    continue
                audio = message.frame("audio")
            received += audio.nbytes
        elapsed = time.perf_counter() - start
        sock.send(b"bye")
        return {"mb_per_s": round(received / elapsed / 1e6, 1), "frames": count,
                "frame_bytes": int(np.prod(AUDIO_SHAPE) * 4)}
    finally:
        sock.close(linger=0)
        proc.wait(30)


def jobs_per_s(endpoint: str, clients: int, seconds: float) -> dict[str, float]:
    notes = make_notes(np.arange(32) * 12, np.tile([48, 55, 64, 72], 8), 12, 80)
    counts, errors = [0] * clients, []
    stop_at = time.monotonic() + seconds

    def run(i: int) -> None:
        try:
            with Client(endpoint, timeout_s=60, retries=0) as c:
                while time.monotonic() < stop_at:
                    c.arrange(notes, "satb", "offline")
                    counts[i] += 1
        except Exception as exc:
            errors.append(repr(exc))

    start = time.monotonic()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    return {"clients": clients, "jobs": sum(counts), "seconds": round(elapsed, 2),
            "jobs_per_s": round(sum(counts) / elapsed, 1), "errors": errors[:3]}


def start_engine(env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """`deep-musician serve` on a free loopback port; `env` adds to this process's environment."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "serve", "--endpoint", endpoint,
                             "--log-level", "warning"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            env={**os.environ, **(env or {})})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with Client(endpoint, timeout_s=1, retries=0) as c:
            try:
                c.ping()
                return proc, endpoint
            except EngineUnreachable:
                continue
    proc.kill()
    raise RuntimeError("the engine did not start in 120 s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rtt-n", type=int, default=3000, help="round trips per measurement")
    p.add_argument("--stream-mb", type=float, default=400.0, help="MB of audio per stream measurement")
    p.add_argument("--jobs-s", type=float, default=5.0, help="seconds per jobs/s measurement")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64])
    p.add_argument("--audio-samples", type=int, nargs="+", default=[4096, 32768],
                   help="samples per audio frame (stereo float32), one stream measurement each")
    p.add_argument("--serve-echo", help=argparse.SUPPRESS)
    p.add_argument("--decode", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--serve-audio", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_echo:
        return serve_echo(args.serve_echo, args.decode)
    if args.serve_audio:
        AUDIO_SHAPE[1] = int(args.serve_audio[2].split(":")[1])
        return serve_audio(args.serve_audio[0], args.serve_audio[1], int(args.serve_audio[2].split(":")[0]))
    proc, endpoint = start_engine()
    try:
        rtts = rtt(endpoint, args.rtt_n)
        streams = {}
        for samples in args.audio_samples:
            AUDIO_SHAPE[1] = samples
            count = max(100, int(args.stream_mb * 1e6 / (8 * samples)))
            runs = {how: [stream(how, count) for _ in range(3)] for how in ("raw", "protocol")}
            best = {how: max(r, key=lambda x: x["mb_per_s"]) for how, r in runs.items()}  # best of 3 each
            streams[f"{samples}_samples"] = {**best, "protocol_over_raw": round(
                best["protocol"]["mb_per_s"] / best["raw"]["mb_per_s"], 3)}
        jobs = [jobs_per_s(endpoint, n, args.jobs_s) for n in args.clients]
    finally:
        proc.terminate()
        proc.wait(30)
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "zmq": zmq.zmq_version(),
                    "load_avg_1m": round(os.getloadavg()[0], 2)},
        "rtt": {**rtts, **{f"{k}_over_raw_p50": round(rtts[k]["p50_us"] / rtts["raw"]["p50_us"], 2)
                           for k in ("protocol_echo", "engine_frames", "engine_client")}},
        "stream": streams,
        "jobs": jobs,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
