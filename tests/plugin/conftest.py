"""Fixtures for the plugin tests: the built plugin and a fake engine that checks the wire format."""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bridge import protocol

ROOT = Path(__file__).resolve().parents[2]
STUB = ROOT / "plugin_stub"
BIN = STUB / "bin"
DPF_PATH = Path("/usr/share/dpf")
HERE = Path(__file__).resolve().parent



@pytest.fixture(scope="session")
def built() -> Path:
    if not (DPF_PATH / "Makefile.plugins.mk").exists():
        pytest.skip("dpf-source is not installed (apt-get install dpf-source libzmq3-dev cppzmq-dev "
                    "libmsgpack-cxx-dev pkg-config); CI installs it")
    if shutil.which("make") is None or shutil.which("pkg-config") is None:
        pytest.skip("make and pkg-config are needed to build the plugin")
    result = subprocess.run(["make", "-C", str(STUB), "-j4"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (f"make -C plugin_stub failed:\n{result.stdout[-3000:]}\n"
                                    f"{result.stderr[-3000:]}")
    return BIN


@pytest.fixture(scope="session")
def clap_host(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    exe = tmp_path_factory.mktemp("clap") / "clap_host"
    subprocess.run(["g++", "-std=c++17", "-O1", f"-I{DPF_PATH}/distrho/src", str(HERE / "clap_host.cpp"),
                    "-o", str(exe), "-ldl"], check=True, timeout=120)
    return exe


class FakeEngine:
    """A ROUTER that answers hello, ping and live_notes like the engine and records what it got.
    `hold`: {pitch: seconds}: a live_notes block holding that pitch is answered that much later (an
    engine too slow for the plugin's latency)."""

    def __init__(self, models: list[dict] | None = None, hold: dict[int, float] | None = None) -> None:
        import zmq

        self.models = models if models is not None else [
            {"name": "arranger-satb-online", "task": "arrange", "ensemble": "satb", "mode": "online"}]
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.linger = 0
        port = self.socket.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.received: list[protocol.Message] = []
        self.errors: list[str] = []
        self.hold = hold or {}
        self._held: list[tuple[float, bytes, list[protocol.Message]]] = []  # (due, peer, replies)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        import zmq

        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        job = 0
        while not self._stop.is_set():
            now = time.monotonic()
            for _, peer, replies in [h for h in self._held if h[0] <= now]:
                for reply in replies:
                    self.socket.send_multipart([peer, *protocol.encode(reply)])
            self._held = [h for h in self._held if h[0] > now]
            if not poller.poll(1 if self._held else 10):
                continue
            peer, *frames = self.socket.recv_multipart()
            try:
                msg = protocol.decode(frames)
            except protocol.ProtocolError as exc:
                self.errors.append(str(exc))
                continue
            self.received.append(msg)
            replies: list[protocol.Message] = []
            if msg.type == protocol.HELLO:
                replies = [protocol.make_reply(protocol.WELCOME, msg.id, engine_version="fake",
                                               capabilities=["live_notes"], models=self.models,
                                               limits=protocol.DEFAULT_LIMITS.to_dict())]
            elif msg.type == protocol.PING:
                replies = [protocol.make_reply(protocol.PONG, msg.id)]
            elif msg.type == protocol.LIVE_NOTES:
                job += 1
                notes = np.array(msg.frame("notes"))
                parts = (np.arange(len(notes)) % 4).astype(np.uint8)
                replies = [protocol.make_reply(protocol.ACCEPTED, msg.id, job=job),
                           protocol.make_reply(protocol.NOTES, msg.id, [notes, parts], job=job, seq=0,
                                               parts=["S", "A", "T", "B"]),
                           protocol.make_reply(protocol.DONE, msg.id, job=job)]
                hold_s = max((self.hold.get(int(p), 0.0) for p in notes["pitch"]), default=0.0)
                if hold_s > 0:
                    self._held.append((time.monotonic() + hold_s, peer, replies))
                    continue
            for reply in replies:
                self.socket.send_multipart([peer, *protocol.encode(reply)])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.socket.close()
        self.context.term()



@pytest.fixture
def fake_engine() -> Iterator[FakeEngine]:
    fake = FakeEngine()
    yield fake
    fake.close()


def free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


class EngineProcess:
    """`deep-musician serve` on a loopback endpoint; start() waits until it answers ping."""

    def __init__(self, endpoint: str, log_path: Path) -> None:
        self.endpoint, self.log_path = endpoint, log_path
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 60) -> None:
        import zmq

        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "engine.cli", "serve", "--endpoint", self.endpoint,
                 "--log-level", "debug"],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        context = zmq.Context()
        sock = context.socket(zmq.DEALER)
        sock.linger = 0
        try:
            sock.connect(self.endpoint)
            sock.send_multipart(protocol.encode(protocol.make_request(protocol.PING, 1)))
            if not sock.poll(int(timeout_s * 1000)):
                self.stop()
                raise RuntimeError(f"the engine did not answer ping in {timeout_s} s: "
                                   f"{self.log_path.read_text()}")
        finally:
            sock.close()
            context.term()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(30)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(30)
            self.proc = None


@pytest.fixture(scope="session")
def real_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`deep-musician serve` on a free loopback port: (endpoint, log path)."""
    engine = EngineProcess(free_endpoint(), tmp_path_factory.mktemp("engine") / "engine.log")
    engine.start()
    try:
        yield engine.endpoint, engine.log_path
    finally:
        engine.stop()
