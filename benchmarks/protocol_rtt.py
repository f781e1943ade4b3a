"""Protocol and engine speed against raw pyzmq, measured in the same run. Prints JSON.

    python -m benchmarks.protocol_rtt [--rtt-n 3000] [--rounds 11] [--perform-s 20 5 80] [--live-pieces 41]

- rtt: round trip of a small request, in interleaved blocks. `raw`: a DEALER sends 4 bytes to a
  ROUTER echo process. `protocol_echo`: an encoded `ping` to an echo process that decodes it and
  answers an encoded `pong` (the protocol alone). `engine_frames`: a `ping` to `deep-musician
  serve`, with the request's encoding and the reply's decoding inside the timer. `engine_client`:
  bridge.client.Client.ping() (adds request building and validation).
- perform_stream: a real `perform` job (four-part chords, --perform-s seconds of 48 kHz stereo
  audio) through the engine, timed from Client.perform() to its return (synthesis, the engine's
  loop, the protocol, the client joining the chunks), against a raw pyzmq ROUTER process that
  replays the very frames the engine sent for that job (recorded once) when it gets the same
  request bytes, and against FluidSynth rendering the same notes in this process (render_chunks,
  the synthesiser made outside the timer, as the engine keeps a spare one). Interleaved rounds;
  MB/s of audio and the per-round ratio engine/raw.
- protocol_layer_stream: the old "ours": a standalone sender making `audio` + `progress` replies
  per chunk (make_reply + encode; decode in the receiver) vs the same sockets sending the bytes
  alone. The protocol layer only: no engine, no synthesis.
- live_chord: one chord of a held-out Bach chorale per round trip: Client.live_notes to the engine
  (session per piece, ensemble satb), a raw pyzmq echo of the same encoded request, and
  LiveArranger.push in this process (the engine path without sockets), interleaved chord by chord.
Engine jobs/s against malloc arenas: benchmarks/engine_arenas.py.
"""
from __future__ import annotations

import argparse
import functools
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


def spread(values, digits: int) -> dict[str, float]:
    """Median and range of per-round figures."""
    v = np.asarray(values, float)
    return {"median": round(float(np.median(v)), digits), "min": round(float(v.min()), digits),
            "max": round(float(v.max()), digits), "n": len(v)}


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

def _round_trip(sock: zmq.Socket, frames, check) -> float:
    """`frames`: bytes to send, or a callable making them (then the encoding is inside the timer)."""
    start = time.perf_counter()
    sock.send_multipart(frames() if callable(frames) else frames)
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
                ping = functools.partial(P.encode, P.Message(P.PING, i))  # encoded inside the timer
                times["protocol_echo"].append(_round_trip(pecho, ping, pong))
                times["engine_frames"].append(_round_trip(eng, ping, pong))
                times["engine_client"].append(client.ping())
        raw.send(b"stop")
        pecho.send(b"stop")
        out = {k: percentiles_us(v) for k, v in times.items()}
        per = n // blocks  # per-block p50 ratios to raw: the spread across the run
        for k in ("protocol_echo", "engine_frames", "engine_client"):
            r = [np.median(times[k][b * per:(b + 1) * per]) / np.median(times["raw"][b * per:(b + 1) * per])
                 for b in range(blocks)]
            out[f"{k}_over_raw_p50_per_block"] = spread(r, 3)
        return out
    finally:
        client.close()
        for sock in (raw, pecho, eng):
            sock.close(linger=0)
        for proc in procs:
            proc.wait(10)


def protocol_layer_stream(how: str, count: int) -> dict[str, float]:
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


# --- a real perform job through the engine vs raw pyzmq replaying its bytes ----------------------

SAMPLE_RATE_HZ, PERFORM_RESOLUTION, PERFORM_QPM = 48_000, 480, 120.0


def perform_notes(seconds: float) -> np.ndarray:
    """Four-part chords, one per quarter note (0.5 s at 120 qpm), for `seconds` of music."""
    chords = int(seconds * 2)
    rng = np.random.default_rng(0)
    t = np.repeat(np.arange(chords) * PERFORM_RESOLUTION, 4)
    pitch = np.tile([48, 55, 64, 72], chords) + rng.integers(-3, 4, 4 * chords)
    return make_notes(t, pitch, PERFORM_RESOLUTION, 80)


def perform_request(notes: np.ndarray, request_id: int = 1) -> P.Message:
    return P.make_request(P.PERFORM, request_id, [notes], sample_rate_hz=SAMPLE_RATE_HZ,
                          resolution=PERFORM_RESOLUTION, qpm=PERFORM_QPM)


def record_job(endpoint: str, request: P.Message) -> list[list[bytes]]:
    """Every reply the engine sends for `request`, as the bytes on the wire."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        sock.send_multipart(P.encode(request))
        replies = []
        while True:
            if not sock.poll(30_000):
                raise RuntimeError("the engine went silent for 30 s during perform")
            frames = sock.recv_multipart()
            replies.append(frames)
            kind = P.decode(frames).type
            if kind == P.ERROR:
                raise RuntimeError(f"the engine refused the perform job: {P.decode(frames).fields}")
            if kind == P.DONE:
                return replies
    finally:
        sock.close(linger=0)


def write_replies(path: Path, replies: list[list[bytes]]) -> None:
    """Length-prefixed frames: message count, then per message its frame count and frames."""
    with open(path, "wb") as f:
        f.write(len(replies).to_bytes(4, "little"))
        for frames in replies:
            f.write(len(frames).to_bytes(4, "little"))
            for frame in frames:
                f.write(len(frame).to_bytes(8, "little") + frame)


def read_replies(path: Path) -> list[list[bytes]]:
    data, pos, out = Path(path).read_bytes(), 4, []
    for _ in range(int.from_bytes(data[:4], "little")):
        n, pos = int.from_bytes(data[pos:pos + 4], "little"), pos + 4
        frames = []
        for _ in range(n):
            size, pos = int.from_bytes(data[pos:pos + 8], "little"), pos + 8
            frames.append(data[pos:pos + size])
            pos += size
        out.append(frames)
    return out


def serve_replay(endpoint: str, path: str) -> None:
    """A ROUTER that answers each request with the recorded replies, byte for byte."""
    replies = read_replies(Path(path))
    sock = zmq.Context.instance().socket(zmq.ROUTER)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.bind(endpoint)
    while True:
        identity, *frames = sock.recv_multipart(copy=False)
        if frames[0].bytes == b"stop":
            return
        for message in replies:
            sock.send_multipart([identity, *message], copy=False)


def perform_stream(endpoint: str, seconds: float, rounds: int) -> dict:
    """Engine perform job vs raw replay of its bytes vs in-process rendering, interleaved."""
    import tempfile

    from bridge.synth import Synth
    from engine.tasks.perform import check_parts, render_chunks

    notes = perform_notes(seconds)
    request = perform_request(notes)
    replies = record_job(endpoint, request)
    audio_bytes = sum(len(m[-1]) for m in replies if P.decode(m).type == P.AUDIO)
    wire_bytes = sum(len(f) for m in replies for f in m)
    tmp = tempfile.NamedTemporaryFile(suffix=".frames", delete=False)
    write_replies(Path(tmp.name), replies)
    replay_endpoint = f"tcp://127.0.0.1:{free_port()}"
    proc = spawn("--serve-replay", replay_endpoint, tmp.name)
    raw = zmq.Context.instance().socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.setsockopt(zmq.RCVHWM, 0)
    raw.connect(replay_endpoint)
    request_bytes = [bytes(f) for f in P.encode(request)]
    client = Client(endpoint, timeout_s=60)
    parts = check_parts(None, len(notes), [])
    times: dict[str, list[float]] = {"engine_client": [], "raw_replay": [], "render_in_process": []}
    synth_s: list[float] = []

    def raw_once() -> float:
        start = time.perf_counter()
        raw.send_multipart(request_bytes)
        for _ in range(len(replies)):
            if not raw.poll(30_000):
                raise RuntimeError("the replay process went silent for 30 s")
            raw.recv_multipart(copy=False)
        return time.perf_counter() - start

    def engine_once() -> float:
        start = time.perf_counter()
        performed = client.perform(notes, SAMPLE_RATE_HZ, resolution=PERFORM_RESOLUTION, qpm=PERFORM_QPM)
        elapsed = time.perf_counter() - start
        assert performed.audio.nbytes == audio_bytes, (performed.audio.nbytes, audio_bytes)
        return elapsed

    def render_once() -> float:
        start = time.perf_counter()
        with Synth(SAMPLE_RATE_HZ) as synth:  # what the engine's spare-synth thread does per job
            synth_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            for _ in render_chunks(synth, notes, parts, [], PERFORM_RESOLUTION, PERFORM_QPM):
                pass
            return time.perf_counter() - start

    try:
        time.sleep(0.3)
        raw_once(), engine_once(), render_once()  # warm-up
        for r in range(rounds):
            for name, fn in (("engine_client", engine_once), ("raw_replay", raw_once),
                             ("render_in_process", render_once))[r % 3:] + \
                            (("engine_client", engine_once), ("raw_replay", raw_once),
                             ("render_in_process", render_once))[:r % 3]:
                times[name].append(fn())
        raw.send(b"stop")
    finally:
        client.close()
        raw.close(linger=0)
        proc.wait(10)
        Path(tmp.name).unlink()
    out = {"audio_seconds": seconds, "notes": len(notes), "audio_bytes": audio_bytes,
           "wire_bytes": wire_bytes, "messages": len(replies), "rounds": rounds}
    for name, v in times.items():
        mbs = audio_bytes / np.array(v) / 1e6
        out[name] = {"median_s": round(float(np.median(v)), 4), "mb_per_s": spread(mbs, 1),
                     "realtime_x": round(seconds / float(np.median(v)), 1)}
    out["synth_create_ms"] = spread(np.array(synth_s) * 1e3, 1)
    for name in ("engine_client", "render_in_process"):
        ratio = np.array(times["raw_replay"]) / np.array(times[name])  # throughput ratio name/raw
        out[f"{name}_over_raw"] = spread(ratio, 4)
    return out


# --- live chords through the engine's socket ------------------------------------------------------

def live_chord(endpoint: str, pieces: int) -> dict:
    """Per chord of held-out chorales: Client.live_notes, a raw echo of the same request bytes and
    LiveArranger.push in process, interleaved chord by chord."""
    import torch

    from engine.registry import Registry
    from engine.tasks.live_arrange import LiveArranger
    from models.data import RESOLUTION
    from models.data import corpus as ds

    torch.set_num_threads(1)
    path = ROOT / "models" / "pretrained" / "arranger-satb-online.pt"
    entry = next(e for e in Registry([path.parent]).entries if e.path == path)
    chorales = ds.load("bach", "test")[:pieces]  # before spawning anything: it may not be built
    echo_endpoint = f"tcp://127.0.0.1:{free_port()}"
    proc = spawn("--serve-echo", echo_endpoint)
    raw = zmq.Context.instance().socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(echo_endpoint)
    client = Client(endpoint, timeout_s=10)
    times: dict[str, list[float]] = {"engine_client": [], "raw_echo": [], "in_process": []}
    per_piece: list[tuple[float, float, float]] = []
    sizes = []
    try:
        for k, piece in enumerate(chorales):
            live = LiveArranger(entry, RESOLUTION)
            notes, first = piece.notes, len(times["raw_echo"])
            for i, onset in enumerate(np.unique(notes["time"])):
                chord = notes[notes["time"] == onset]
                session, fields = f"bench-{k}", {"position_ticks": int(onset), "ensemble": "satb",
                                                 "resolution": RESOLUTION}
                frames = [bytes(f) for f in P.encode(P.make_request(P.LIVE_NOTES, i, [chord], session=session,
                                                                     **fields))]
                times["raw_echo"].append(_round_trip(raw, frames, lambda f: None))
                start = time.perf_counter()
                client.live_notes(session, chord, **fields)
                times["engine_client"].append(time.perf_counter() - start)
                start = time.perf_counter()
                live.push(chord)
                times["in_process"].append(time.perf_counter() - start)
                sizes.append(len(chord))
            per_piece.append(tuple(float(np.median(times[n][first:])) for n in
                                   ("engine_client", "raw_echo", "in_process")))
        raw.send(b"stop")
    finally:
        client.close()
        raw.close(linger=0)
        proc.wait(10)
    out = {"pieces": len(per_piece), "chords": len(sizes), "notes_per_chord": round(float(np.mean(sizes)), 2)}
    for name, v in times.items():
        ms = np.array(v[20:]) * 1e3  # the first chords include TorchScript's profiling runs
        out[name] = {"p50_ms": round(float(np.percentile(ms, 50)), 3),
                     "p99_ms": round(float(np.percentile(ms, 99)), 3)}
    a = np.array(per_piece)
    for j, name in ((0, "engine_client_over_raw_echo"), (2, "in_process_over_raw_echo")):
        r = a[:, j] / a[:, 1]
        out[name + "_per_piece"] = spread(r, 2)
    d = a[:, 0] - a[:, 1] - a[:, 2]
    out["engine_minus_raw_minus_in_process_ms_per_piece"] = spread(d * 1e3, 3)
    return out


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
            except EngineUnreachable:  # refused at once while the engine loads: wait before the next try
                pass
        time.sleep(0.2)  # closed sockets free their descriptors on zmq's reaper thread, not at once
    proc.kill()
    raise RuntimeError("the engine did not start in 120 s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rtt-n", type=int, default=3000, help="round trips per measurement")
    p.add_argument("--rounds", type=int, default=11, help="interleaved rounds of the perform stream")
    p.add_argument("--perform-s", type=float, nargs="+", default=[20.0],
                   help="seconds of audio per perform job; more than one: one measure per length (the "
                        "engine's fixed cost per job against its cost per second of audio)")
    p.add_argument("--live-pieces", type=int, default=41, help="held-out chorales for the live chord")
    p.add_argument("--stream-mb", type=float, default=200.0, help="MB per protocol-layer stream run")
    p.add_argument("--audio-samples", type=int, nargs="*", default=[4096, 32768],
                   help="samples per frame (stereo float32) of the protocol-layer stream, one measure each")
    p.add_argument("--serve-echo", help=argparse.SUPPRESS)
    p.add_argument("--decode", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--serve-audio", nargs=3, help=argparse.SUPPRESS)
    p.add_argument("--serve-replay", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_echo:
        return serve_echo(args.serve_echo, args.decode)
    if args.serve_audio:
        AUDIO_SHAPE[1] = int(args.serve_audio[2].split(":")[1])
        return serve_audio(args.serve_audio[0], args.serve_audio[1], int(args.serve_audio[2].split(":")[0]))
    if args.serve_replay:
        return serve_replay(*args.serve_replay)
    info = run_info()
    proc, endpoint = start_engine()
    try:
        rtts = rtt(endpoint, args.rtt_n)
        performs = {f"{s:g}_s": perform_stream(endpoint, s, args.rounds) for s in args.perform_s}
        live = live_chord(endpoint, args.live_pieces)
    finally:
        proc.terminate()
        proc.wait(30)
    layer = {}
    for samples in args.audio_samples:
        AUDIO_SHAPE[1] = samples
        count = max(100, int(args.stream_mb * 1e6 / (8 * samples)))
        runs = {how: [] for how in ("raw", "protocol")}
        for _ in range(3):  # interleaved, median of 3 each
            for how in runs:
                runs[how].append(protocol_layer_stream(how, count)["mb_per_s"])
        ratios = np.array(runs["protocol"]) / np.array(runs["raw"])
        layer[f"{samples}_samples"] = {"frame_bytes": samples * 8, "raw_mb_per_s": runs["raw"],
                                       "protocol_mb_per_s": runs["protocol"],
                                       "protocol_over_raw_median": round(float(np.median(ratios)), 3)}
    result = {
        **info, "load_avg_end": [round(x, 2) for x in os.getloadavg()],
        "rtt": {**rtts, **{f"{k}_over_raw_p50": round(rtts[k]["p50_us"] / rtts["raw"]["p50_us"], 2)
                           for k in ("protocol_echo", "engine_frames", "engine_client")}},
        "perform_stream": performs[f"{args.perform_s[0]:g}_s"],
        "perform_stream_by_length": performs,
        "live_chord": live,
        "protocol_layer_stream": layer,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
