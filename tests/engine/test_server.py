"""The engine as a real process on real loopback sockets: the protocol, bad input, lost clients,
cancellation, many clients, shutdown and security. Every receive has a timeout; nothing may hang."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq

from bridge import protocol as P
from bridge import synth
from bridge.client import Client, EngineError, EngineUnreachable
from bridge.notation import read_notation
from bridge.score import Score, Track, make_notes
from engine.registry import Registry
from engine.tasks.arrange import arrange
from engine.tasks.live_arrange import LiveArranger
from engine.tasks.perform import render_chunks

ROOT = Path(__file__).resolve().parents[2]
STARTUP_S = 90  # models load in seconds, but the CPU is shared with training jobs
RECV_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Engine:
    """`deep-musician serve` in a subprocess; its log goes to a file (a pipe nobody reads would
    fill up and stall the engine)."""

    def __init__(self, log_dir: Path, *extra: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"engine-{self.port}-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "serve", "--endpoint",
                                      self.endpoint, *extra], cwd=ROOT, stdout=self._log,
                                     stderr=subprocess.STDOUT)

    def wait_ready(self, **client_options) -> Engine:
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"engine exited with {self.proc.returncode}: {self.log()}")
            with Client(self.endpoint, timeout_s=1.0, retries=0, **client_options) as c:
                try:
                    c.ping()
                    return self
                except EngineUnreachable:  # refused at once while the models load
                    time.sleep(0.2)
        self.stop()  # a fixture that fails here never reaches its own stop: no engine left behind
        raise RuntimeError(f"engine did not answer ping in {STARTUP_S} s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    e = Engine(tmp_path_factory.mktemp("engine")).wait_ready()
    yield e
    e.stop()


@pytest.fixture
def dealer(engine):
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(engine.endpoint)
    yield sock
    sock.close(linger=0)


def recv(sock: zmq.Socket, timeout_s: float = RECV_S) -> P.Message:
    if not sock.poll(int(timeout_s * 1000)):
        raise AssertionError(f"no reply in {timeout_s} s")
    return P.decode(sock.recv_multipart(), P.Limits(max_message_bytes=2**31))


def request(sock: zmq.Socket, kind: str, rid, frames=(), **fields) -> None:
    sock.send_multipart(P.encode(P.make_request(kind, rid, frames, **fields)))


def until_end(sock: zmq.Socket, rid) -> list[P.Message]:
    """Every reply to `rid` up to and including its done or error."""
    got = []
    while True:
        m = recv(sock)
        if m.id == rid:
            got.append(m)
            if m.type in (P.DONE, P.ERROR):
                return got


def random_notes(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return make_notes(np.sort(rng.integers(0, n * 6, n)), rng.integers(40, 80, n), 12, 80)


def held_out_piano(resolution: int = 480) -> np.ndarray:
    from music21 import corpus

    from models.data.splits import SPLITS_DIR

    name = json.loads((SPLITS_DIR / "bach.json").read_text())["test"][1]
    score = read_notation(corpus.getWork(name.removeprefix("bach/"))).with_resolution(resolution)
    notes, _ = score.merged()
    return np.unique(notes)


def assert_serving(sock: zmq.Socket) -> None:
    request(sock, P.PING, "alive?")
    reply = recv(sock)
    while reply.id != "alive?":  # late replies of an earlier job may come first
        reply = recv(sock)
    assert reply.type == P.PONG


# --- the conversation ---------------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_hello_ping_status(dealer):
    request(dealer, P.HELLO, 1, client="test")
    welcome = recv(dealer)
    assert welcome.type == P.WELCOME and welcome.id == 1
    assert {"arrange", "live_notes"} <= set(welcome.fields["capabilities"])
    arrangers = [m for m in welcome.fields["models"] if "ensemble" in m]  # composers have none
    assert {(m["ensemble"], m["mode"]) for m in arrangers} >= {("satb", "offline"), ("satb", "online")}
    assert welcome.fields["limits"] == P.DEFAULT_LIMITS.to_dict()
    request(dealer, P.PING, "p")
    assert recv(dealer).type == P.PONG
    request(dealer, P.STATUS, 3)
    status = recv(dealer)
    assert status.type == P.STATUS_REPLY and status.fields["jobs"] == [] and status.fields["uptime_s"] > 0


@pytest.mark.timeout(180)
@pytest.mark.parametrize("mode", ["offline", "online"])
def test_arrange_over_the_wire_equals_the_embedded_engine(dealer, mode):
    notes = held_out_piano()
    request(dealer, P.ARRANGE, "a", [notes], ensemble="satb", mode=mode, resolution=480)
    replies = until_end(dealer, "a")
    assert replies[0].type == P.ACCEPTED and replies[-1].type == P.DONE
    chunks = [m for m in replies if m.type == P.NOTES]
    assert [c.fields["seq"] for c in chunks] == list(range(len(chunks)))
    got_notes = np.concatenate([c.frame("notes") for c in chunks])
    labels = np.concatenate([c.frame("parts") for c in chunks])
    assert np.array_equal(got_notes, notes)  # every input note, in the order sent
    parts = chunks[0].fields["parts"]
    model = Registry().find_arranger("satb", mode)
    # the first TorchScript call profiles the graph; on a big input that alone takes many seconds
    arrange(Score(480, [Track("Piano", 0, notes=make_notes([0, 480], [60, 64], 480, 80))]), model)
    embedded = arrange(Score(480, [Track("Piano", 0, notes=notes)]), model).to_score()
    assert parts == [t.name for t in embedded.tracks]
    for k, track in enumerate(embedded.tracks):
        assert sorted(got_notes[labels == k].tolist()) == sorted(track.notes.tolist()), track.name
    assert replies[-1].fields["stats"]["notes"] == len(notes)


@pytest.mark.timeout(180)
def test_live_session_labels_chord_by_chord_like_the_in_process_arranger(dealer):
    notes = held_out_piano()
    live = LiveArranger(Registry().find_arranger("satb", "online"), 480)
    onsets = np.unique(notes["time"])
    for i, onset in enumerate(onsets[:40]):
        chord = notes[notes["time"] == onset]
        extra = {"ensemble": "satb"} if i == 0 else {}
        request(dealer, P.LIVE_NOTES, f"l{i}", [chord], session="track-1", position_ticks=int(onset),
                resolution=480, **extra)
        replies = until_end(dealer, f"l{i}")
        assert [m.type for m in replies] == [P.ACCEPTED, P.NOTES, P.DONE]
        assert replies[1].fields["session"] == "track-1"
        assert replies[1].frame("parts").tolist() == live.push(chord).tolist(), f"chord {i}"


@pytest.mark.timeout(120)
def test_live_notes_out_of_order_and_without_ensemble_are_refused_with_sentences(dealer):
    request(dealer, P.LIVE_NOTES, 1, [random_notes(4)], session="new", position_ticks=0)
    err = until_end(dealer, 1)[-1]
    assert err.fields["code"] == P.BAD_INPUT and "ensemble" in err.fields["message"]
    request(dealer, P.LIVE_NOTES, 2, [make_notes([96], 60, 12, 80)], session="s", position_ticks=96,
            ensemble="satb")
    assert until_end(dealer, 2)[-1].type == P.DONE
    request(dealer, P.LIVE_NOTES, 3, [make_notes([0], 60, 12, 80)], session="s", position_ticks=0)
    err = until_end(dealer, 3)[-1]
    assert err.fields["code"] == P.BAD_INPUT and "out of order" in err.fields["message"]
    request(dealer, P.LIVE_NOTES, 4, [make_notes([0], 60, 12, 80)], session="s", position_ticks=0,
            reset=True, ensemble="satb")
    assert until_end(dealer, 4)[-1].type == P.DONE  # after a transport jump, a reset starts over


# --- bad input: an error reply a person can act on, and the engine keeps serving ---------------

def _header(**fields) -> bytes:
    return msgpack.packb({"v": P.PROTOCOL_VERSION, "type": "ping", "id": 9, **fields})


BAD = {
    "malformed msgpack": ([b"\xc1\xff not msgpack"], P.BAD_HEADER, "msgpack"),
    "not a map": ([msgpack.packb([1, 2])], P.BAD_HEADER, "map"),
    "wrong version": ([_header(v=1)], P.BAD_VERSION, f"version {P.PROTOCOL_VERSION}"),
    "live_perform without its block length": ([_header(type="live_perform", session="s", position_ticks=0,
                                                      qpm=120.0, sample_rate_hz=48_000)],
                                              P.MISSING_FIELD, "block_samples"),
    "unknown type": ([_header(type="sing")], P.UNKNOWN_TYPE, "arrange"),
    "reply type as request": ([_header(type="pong")], P.UNKNOWN_TYPE, "requests"),
    "frame shape mismatch": ([msgpack.packb({"v": P.PROTOCOL_VERSION, "type": "arrange", "id": 9,
                                             "ensemble": "satb", "mode": "offline",
                                             "frames": [{"dtype": "notes", "shape": [3]}]}),
                              b"\x00" * 18 * 2], P.FRAME_MISMATCH, "needs 54 bytes"),
    "unknown field": ([_header(tempo=3)], P.BAD_FIELD, "tempo"),
    "compose for an unknown instrument": ([msgpack.packb({"v": P.PROTOCOL_VERSION, "type": "compose", "id": 9,
                                                          "bars": 2, "instruments": ["kazoo"]})],
                                          P.BAD_INPUT, "kazoo"),
    "unknown job": ([msgpack.packb({"v": P.PROTOCOL_VERSION, "type": "cancel", "id": 9, "job": 12345})],
                    P.UNKNOWN_JOB, "12345"),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", list(BAD))
def test_bad_messages_get_error_replies_and_the_engine_keeps_serving(dealer, case):
    frames, code, words = BAD[case]
    dealer.send_multipart(frames)
    reply = recv(dealer)
    assert reply.type == P.ERROR and reply.fields["code"] == code, reply.fields
    assert words in reply.fields["message"]
    assert_serving(dealer)


@pytest.mark.timeout(120)
def test_over_the_note_limit_and_oversize_messages_are_refused(dealer):
    too_many = P.DEFAULT_LIMITS.max_notes_per_request + 1
    request(dealer, P.ARRANGE, "many", [random_notes(too_many)], ensemble="satb", mode="offline")
    reply = recv(dealer)
    assert reply.fields["code"] == P.TOO_MANY_NOTES and str(too_many) in reply.fields["message"]
    huge = b"\x00" * (P.DEFAULT_LIMITS.max_message_bytes + 1024)
    dealer.send_multipart([_header(), huge])
    reply = recv(dealer)
    assert reply.fields["code"] == P.TOO_LARGE and "send the material in parts" in reply.fields["message"]
    assert_serving(dealer)


@pytest.mark.timeout(120)
def test_too_many_jobs_per_client(dealer):
    limit = P.DEFAULT_LIMITS.max_jobs_per_client
    notes = random_notes(20_000)
    for i in range(limit + 2):
        request(dealer, P.ARRANGE, i, [notes], ensemble="satb", mode="offline")
    refused = []
    accepted = []
    for _ in range(limit + 2):
        m = recv(dealer)
        while m.type != P.ACCEPTED and not (m.type == P.ERROR and m.fields["code"] == P.TOO_MANY_JOBS):
            m = recv(dealer)
        (accepted if m.type == P.ACCEPTED else refused).append(m)
    assert refused and all(str(limit) in m.fields["message"] for m in refused)
    for m in accepted:  # leave the engine idle for the next test
        request(dealer, P.CANCEL, f"c{m.job}", job=m.job)
    deadline = time.monotonic() + RECV_S
    while time.monotonic() < deadline:
        request(dealer, P.STATUS, "s")
        m = recv(dealer)
        while m.id != "s":
            m = recv(dealer)
        if not m.fields["jobs"]:
            break
    assert_serving(dealer)


# --- jobs going away ----------------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_cancel_mid_job_ends_the_stream_with_cancelled(dealer):
    notes = random_notes(150_000)
    request(dealer, P.ARRANGE, "big", [notes], ensemble="satb", mode="offline")
    accepted = recv(dealer)
    assert accepted.type == P.ACCEPTED
    request(dealer, P.CANCEL, "stop", job=accepted.job)
    got: dict = {}
    while "big" not in got or "stop" not in got:
        m = recv(dealer)
        if m.type in (P.DONE, P.ERROR):
            got[m.id] = m
    assert got["big"].type == P.ERROR and got["big"].fields["code"] == P.CANCELLED
    assert got["stop"].type == P.DONE and got["stop"].job == accepted.job
    assert_serving(dealer)


needs_synth = pytest.mark.skipif(bool(synth.available()), reason=synth.available() or "")


KILLED_CLIENT = """
import sys, numpy as np, zmq
from bridge import protocol as P
from bridge.score import make_notes
notes = make_notes(np.arange(0, 24 * 900, 24), 60, 24)  # 7.5 minutes of audio: ~9 s of rendering
s = zmq.Context().socket(zmq.DEALER); s.connect(sys.argv[1])
s.send_multipart(P.encode(P.make_request("perform", 1, [notes], sample_rate_hz=48_000)))
assert s.poll(60000); print(P.decode(s.recv_multipart()).type, flush=True)
import time; time.sleep(60)
"""


@needs_synth
@pytest.mark.timeout(180)
def test_a_client_killed_mid_stream_has_its_jobs_cancelled(engine, dealer):
    # A streaming job (perform: audio chunk by chunk) learns that its client is gone at its next
    # chunk and stops there. (A job that has handed all its replies to the socket before the engine
    # learns it, like a short arrange, simply finishes.)
    seen = len(engine.log())
    proc = subprocess.Popen([sys.executable, "-c", KILLED_CLIENT, engine.endpoint], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "accepted"
    finally:
        proc.kill()
        proc.wait(10)
    queued = re.findall(r"event=job_queued peer=(\w+) job=(\d+)", engine.log()[seen:])
    assert len(queued) == 1, queued
    peer, job = queued[0]
    wanted = (f"event=peer_gone peer={peer} why=unreachable jobs_cancelled=1",
              f"event=job_end job={job} type=perform outcome=cancelled")
    deadline = time.monotonic() + 60
    while not all(w in engine.log() for w in wanted) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert all(w in engine.log() for w in wanted), engine.log()[seen:][-2000:]
    assert_serving(dealer)


def _stream_client(endpoint: str, seed: int, results: dict) -> None:
    notes = random_notes(300, seed)
    try:
        with Client(endpoint, timeout_s=60, retries=0) as c:
            labels, parts, _ = c.arrange(notes, "satb", "offline")
            results[seed] = (len(labels) == len(notes) and parts == ["Soprano", "Alto", "Tenor", "Bass"])
    except Exception as exc:  # reported by the test, not lost in a thread
        results[seed] = exc


@pytest.mark.timeout(300)
@pytest.mark.parametrize("clients", [16, pytest.param(64, marks=pytest.mark.slow)])
def test_many_concurrent_clients_each_streaming(engine, dealer, clients):
    results: dict = {}
    threads = [threading.Thread(target=_stream_client, args=(engine.endpoint, i, results))
               for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    assert results == {i: True for i in range(clients)}
    assert_serving(dealer)


# --- the command line against a running engine --------------------------------------------------

@pytest.mark.timeout(300)
def test_cli_arrange_through_the_engine_writes_what_the_embedded_engine_writes(engine, tmp_path):
    from bridge.midi import read_midi, write_midi

    notes = held_out_piano()
    write_midi(Score(480, [Track("Piano", 0, notes=notes)]), tmp_path / "piano.mid")
    outs = {}
    for how, extra in (("embedded", []), ("engine", ["--engine", engine.endpoint])):
        outs[how] = tmp_path / f"{how}.mid"
        r = subprocess.run([sys.executable, "-m", "engine.cli", "arrange", str(tmp_path / "piano.mid"),
                            "-o", str(outs[how]), *extra], cwd=ROOT, capture_output=True, text=True,
                           timeout=240)
        assert r.returncode == 0, r.stderr
        assert "arranged" in r.stdout and "arranger-satb-offline" in r.stdout
    a, b = read_midi(outs["embedded"]), read_midi(outs["engine"])
    assert [(t.name, t.program) for t in a.tracks] == [(t.name, t.program) for t in b.tracks]
    for ta, tb in zip(a.tracks, b.tracks):
        assert sorted(ta.notes.tolist()) == sorted(tb.notes.tolist())
    r = subprocess.run([sys.executable, "-m", "engine.cli", "status", "--engine", engine.endpoint],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "arranger-satb-offline" in r.stdout, r.stderr


@pytest.mark.timeout(120)
def test_cli_without_a_running_engine_says_how_to_start_one(tmp_path):
    port = free_port()
    r = subprocess.run([sys.executable, "-m", "engine.cli", "status", "--engine",
                        f"tcp://127.0.0.1:{port}", "--timeout", "0.3"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and "deep-musician serve" in r.stderr


# --- shutdown and security ----------------------------------------------------------------------

@pytest.mark.timeout(180)
def test_sigterm_shuts_down_gracefully(tmp_path):
    e = Engine(tmp_path).wait_ready()
    assert e.stop(signal.SIGTERM) == 0
    assert "event=stopped" in e.log()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("endpoint", ["tcp://0.0.0.0:5599", "tcp://*:5599", "tcp://192.168.1.20:5599"])
def test_a_network_bind_without_keys_is_refused_before_binding(endpoint):
    r = subprocess.run([sys.executable, "-m", "engine.cli", "serve", "--endpoint", endpoint], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "refusing to bind" in r.stderr and "deep-musician keys" in r.stderr and "--keys" in r.stderr


def _keys(tmp_path: Path) -> tuple[Path, Path]:
    server, client = tmp_path / "server-keys", tmp_path / "client-keys"
    for folder, name in ((server, "server"), (client, "client")):
        r = subprocess.run([sys.executable, "-m", "engine.cli", "keys", str(folder), "--name", name],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
    (server / "clients").mkdir()
    shutil.copy(client / "client.key", server / "clients" / "client.key")
    shutil.copy(server / "server.key", client / "server.key")
    return server, client


@pytest.mark.timeout(240)
def test_curve_keys_on_loopback_let_the_keyed_client_in_and_no_one_else(tmp_path):
    server, client = _keys(tmp_path)
    assert oct(os.stat(server / "server.key_secret").st_mode & 0o777) == "0o600"
    r = subprocess.run([sys.executable, "-m", "engine.cli", "keys", str(server)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "never overwritten" in r.stderr
    e = Engine(tmp_path, "--keys", str(server)).wait_ready(keys_dir=client)
    try:
        with Client(e.endpoint, timeout_s=10, keys_dir=client) as c:
            assert c.hello()["capabilities"]
        with Client(e.endpoint, timeout_s=0.5, retries=0) as c, pytest.raises(EngineUnreachable):
            c.ping()  # no keys: the handshake never completes, so no reply
    finally:
        e.stop()


def test_engine_error_carries_code_and_sentence():
    err = EngineError(P.NO_MODEL, "no model for x")
    assert err.code == P.NO_MODEL and "no model for x" in str(err)


def test_a_client_keeps_only_its_most_recent_live_sessions(engine):
    from engine.sessions import MAX_SESSIONS_PER_CLIENT

    chord = make_notes([0, 0], [48, 72], 24)
    with Client(engine.endpoint, timeout_s=30.0) as c:
        for k in range(MAX_SESSIONS_PER_CLIENT + 1):
            c.live_notes(f"s{k}", chord, position_ticks=0, ensemble="satb")
        later = make_notes([24], [50], 24)
        c.live_notes(f"s{MAX_SESSIONS_PER_CLIENT}", later, position_ticks=24)  # still known
        with pytest.raises(EngineError, match="is new"):  # the oldest was forgotten
            c.live_notes("s0", later, position_ticks=24)


def test_sessions_past_the_cap_reuse_evicted_arrangers_and_arrange_like_new_ones(engine):
    # Past the cap a new session takes over an evicted session's arranger (LiveArranger.reset, so
    # a long-running engine's memory stays flat); it must arrange exactly as a fresh one does.
    from engine.registry import Registry
    from engine.sessions import MAX_SESSIONS_PER_CLIENT
    from engine.tasks.live_arrange import LiveArranger

    piece = held_out_piano(24)[:80]
    onsets = np.unique(piece["time"])
    fresh = LiveArranger(Registry().find_arranger("satb", "online"), 24)
    expected = [fresh.push(piece[piece["time"] == t]).tolist() for t in onsets]
    with Client(engine.endpoint, timeout_s=30.0) as c:
        for k in range(MAX_SESSIONS_PER_CLIENT + 4):  # each leaves held notes and LSTM state behind
            c.live_notes(f"fill{k}", make_notes([0, 0, 24], [40 + k % 20, 70, 60], 0), position_ticks=0,
                         ensemble="satb")
        for name in ("reused-a", "reused-b"):
            got = [c.live_notes(name, piece[piece["time"] == t], position_ticks=int(t),
                                **({"ensemble": "satb"} if i == 0 else {})).labels.tolist()
                   for i, t in enumerate(onsets)]
            assert got == expected, name


# --- perform: notes to audio (the SoundFont performer) -------------------------------------------



@needs_synth
@pytest.mark.timeout(180)
def test_perform_streams_audio_and_progress_equal_to_the_in_process_render(engine, dealer):
    notes = held_out_piano(24)[:60]
    parts = (np.arange(len(notes)) % 2).astype(np.uint8)
    request(dealer, P.PERFORM, "p", [notes, parts], sample_rate_hz=22_050, programs=[0, 40], qpm=100.0,
            raw_level=True)  # levelling: tests/engine/test_perform_levels.py
    replies = until_end(dealer, "p")
    assert replies[0].type == P.ACCEPTED and replies[-1].type == P.DONE
    audio_replies = [m for m in replies if m.type == P.AUDIO]
    progress = [m.fields["fraction"] for m in replies if m.type == P.PROGRESS]
    assert [m.fields["seq"] for m in audio_replies] == list(range(len(audio_replies))) and len(progress) > 1
    assert progress == sorted(progress) and progress[-1] == 1.0
    starts = np.cumsum([0] + [m.frame("audio").shape[1] for m in audio_replies])
    assert [m.fields["start_sample"] for m in audio_replies] == starts[:-1].tolist()
    audio = np.concatenate([m.frame("audio") for m in audio_replies], 1)
    with synth.Synth(22_050) as s:
        local = np.concatenate(list(render_chunks(s, notes, parts.astype(np.int64), [0, 40], 24, 100.0)), 1)
    np.testing.assert_allclose(audio, local, atol=1e-6)
    assert replies[-1].fields["stats"]["samples"] == audio.shape[1]
    with Client(engine.endpoint, timeout_s=30.0) as c:  # the client's plain call gives the same
        fractions = []
        got = c.perform(notes, 22_050, parts, programs=[0, 40], qpm=100.0, raw_level=True,
                        on_progress=lambda f, _: fractions.append(f))
        np.testing.assert_array_equal(got.audio, audio)
        assert fractions[-1] == 1.0


@needs_synth
@pytest.mark.timeout(180)
def test_live_perform_renders_each_block_on_the_session_clock(engine):
    notes = make_notes([0, 6, 12], [60, 64, 67], 0, 100)  # held until released
    with Client(engine.endpoint, timeout_s=30.0) as c:
        blocks = []
        for k in range(8):  # blocks of 6 ticks = 0.125 s at 120 qpm and 24 ticks per quarter
            inside = notes[(notes["time"] >= 6 * k) & (notes["time"] < 6 * k + 6)]
            releases = np.array([[6 * k, 60 + 4 * (k - 4), 0]]) if 4 <= k < 7 else None
            start, audio = c.live_perform("render-1", inside, 6 * k, block_samples=6000,
                                          sample_rate_hz=48_000,
                                          qpm=120.0, releases=releases, programs=[0])
            assert start == 6000 * k and audio.shape == (2, 6000)
            blocks.append(audio)
        assert all(np.abs(b).max() > 0.01 for b in blocks[:7])
        with pytest.raises(EngineError, match="live arrange session"):
            c.live_notes("arr-1", make_notes([0], [60], 24), position_ticks=0, ensemble="satb")
            c.live_perform("arr-1", notes[:1], 0, block_samples=64, sample_rate_hz=48_000, qpm=120.0)
        # the block's length, rate and tempo place each note: the schema requires them (the client's
        # own check stops the request before it is sent; the engine's is test_bad_messages_...)
        with pytest.raises(P.ProtocolError, match="requires field 'block_samples'") as err:
            c.call(P.LIVE_PERFORM, [notes[:1]], session="x", position_ticks=0, sample_rate_hz=48_000,
                   qpm=120.0)
        assert err.value.code == P.MISSING_FIELD
        with pytest.raises(EngineError, match="lists only 1") as err:
            c.live_perform("render-2", notes[:1], 0, block_samples=64, sample_rate_hz=48_000, qpm=120.0,
                           parts=np.array([1]), programs=[0])
        assert err.value.code == P.BAD_INPUT
        with pytest.raises(EngineError, match="renders at 48000 Hz"):
            c.live_perform("render-1", notes[:0], 48, block_samples=64, sample_rate_hz=44_100, qpm=120.0)
        c.live_perform("render-1", notes[:0], 48, block_samples=64, sample_rate_hz=44_100, qpm=120.0,
                       reset=True)  # a reset may change the rate


@needs_synth
@pytest.mark.timeout(120)
def test_perform_refuses_bad_input_with_sentences(dealer):
    notes = make_notes([0], [60], 24)
    for rid, frames, fields, code, text in (
            ("empty", [notes[:0]], {"sample_rate_hz": 48_000}, P.BAD_INPUT, "empty"),
            ("rate", [notes], {"sample_rate_hz": 1_000}, P.BAD_INPUT, "8000..96000"),
            ("long", [make_notes([0], [60], 24 * 4000)], {"sample_rate_hz": 48_000}, P.TOO_MUCH_AUDIO,
             "split it in time"),
            ("parts", [notes, np.array([20], np.uint8)], {"sample_rate_hz": 48_000}, P.BAD_INPUT,
             "at most 15 parts")):
        request(dealer, P.PERFORM, rid, frames, **fields)
        reply = recv(dealer)
        assert (reply.type, reply.fields["code"]) == (P.ERROR, code), reply
        assert text in reply.fields["message"]
    assert_serving(dealer)


@needs_synth
@pytest.mark.timeout(120)
def test_cancel_stops_a_long_render_between_chunks(dealer):
    notes = make_notes(np.arange(0, 24 * 900, 24), 60, 24)  # 7.5 minutes of audio
    request(dealer, P.PERFORM, "long", [notes], sample_rate_hz=48_000)
    accepted = recv(dealer)
    assert accepted.type == P.ACCEPTED
    while recv(dealer).type != P.AUDIO:  # it is rendering
        pass
    request(dealer, P.CANCEL, "stop", job=accepted.job)
    got: dict = {}
    chunks_after_cancel = 0
    while "long" not in got or "stop" not in got:
        m = recv(dealer)
        chunks_after_cancel += m.type == P.AUDIO
        if m.type in (P.DONE, P.ERROR):
            got[m.id] = m
    assert got["long"].fields["code"] == P.CANCELLED and got["stop"].type == P.DONE
    assert chunks_after_cancel < 600  # far fewer than the ~660 chunks of the whole render
    assert_serving(dealer)


@needs_synth
@pytest.mark.timeout(300)
def test_cli_perform_through_the_engine_writes_what_the_embedded_performer_writes(engine, tmp_path):
    """A two-track MIDI file with a tempo change: the same WAV from both paths, each note where the
    tempo map puts it, and a spectrogram drawn."""
    from scipy.io import wavfile

    from bridge.midi import write_midi
    from bridge.score import TEMPO_DTYPE

    tracks = [Track("Piano", 0, notes=make_notes([0, 480], [60, 64], 240, 100)),
              Track("Violin", 40, notes=make_notes([960], [76], 480, 100))]
    tempos = np.array([(0, 120.0), (480, 60.0)], TEMPO_DTYPE)  # the second beat lasts 1 s
    write_midi(Score(480, tracks, tempos), tmp_path / "in.mid")
    outs = {}
    for how, extra in (("embedded", []), ("engine", ["--engine", engine.endpoint])):
        outs[how] = tmp_path / f"{how}.wav"
        r = subprocess.run([sys.executable, "-m", "engine.cli", "perform", str(tmp_path / "in.mid"), "-o",
                            str(outs[how]), "--plot", str(tmp_path / f"{how}.png"), *extra], cwd=ROOT,
                           capture_output=True, text=True, timeout=240)
        assert r.returncode == 0, r.stderr
        assert "performed 3 notes in 2 parts" in r.stdout
        assert (tmp_path / f"{how}.png").stat().st_size > 10_000
    (sr, a), (_, b) = wavfile.read(outs["embedded"]), wavfile.read(outs["engine"])
    np.testing.assert_array_equal(a, b)
    level = np.abs(a[:, 0])
    # notes at 0 s, 0.5 s (beat 2 at 120 qpm) and 1.5 s (beat 3, after a 1 s beat at 60 qpm)
    for seconds in (0.0, 0.5, 1.5):
        at = int(seconds * sr)
        if at:  # quieter just before than just after: the note starts there
            assert level[at - 2000:at - 10].max() < level[at + 100:at + 2000].max() / 2
        assert level[at + 100:at + 2000].max() > 0.01
    r = subprocess.run([sys.executable, "-m", "engine.cli", "perform", str(tmp_path / "in.mid"), "-o",
                        str(outs["engine"])], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "already exists" in r.stderr


@pytest.mark.timeout(300)
def test_live_blocks_overtake_queued_offline_jobs(tmp_path):
    """One worker, busy with a long arrange and more queued behind it: a live block sent last is
    answered before the queued arranges."""
    e = Engine(tmp_path, "--workers", "1").wait_ready()
    try:
        ctx = zmq.Context.instance()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(e.endpoint)
        request(sock, P.ARRANGE, "long", [random_notes(150_000)], ensemble="satb", mode="offline")
        for rid in ("b1", "b2"):
            request(sock, P.ARRANGE, rid, [random_notes(2000, seed=1)], ensemble="satb", mode="offline")
        request(sock, P.LIVE_NOTES, "live", [make_notes([0, 0], [48, 72], 24)], session="s",
                position_ticks=0, ensemble="satb")
        ends = []
        while len(ends) < 4:
            m = recv(sock, 120)
            if m.type in (P.DONE, P.ERROR):
                assert m.type == P.DONE, m
                ends.append(m.id)
        assert ends.index("live") < ends.index("b1") < ends.index("b2"), ends
        sock.close(linger=0)
    finally:
        e.stop()


def test_the_engine_asks_glibc_for_one_malloc_arena_unless_told_otherwise(monkeypatch):
    import platform

    from engine.server import limit_malloc_arenas

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False  # the user's setting stands
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    assert limit_malloc_arenas() is (platform.libc_ver()[0] == "glibc")
