"""A Python client of a running engine: a ZeroMQ DEALER that hides reliability (Lazy Pirate).

Every wait has a timeout. When a request gets no reply in time, the socket is closed with
``linger=0``, reopened and the request sent again, with a growing pause between tries; each
reconnect is logged as a warning (and counted in ``reconnects``) so the caller can say so. While a
job streams, a silence longer than the timeout is checked with a ``status`` probe: a job that is
still running is waited for, an engine that does not answer is reconnected and the job restarted.

Until the first handshake with the engine succeeds, a socket monitor watches the connection, so
what is not a timeout is not waited for as one: a refused connection (nothing listens at the
endpoint) raises EngineUnreachable at once, and a failed CurveZMQ handshake raises EngineKeysError
saying which keys are missing or wrong. Once an engine has answered, a refusal means it is
restarting, and the client waits for it as above (``wait_for_engine=True`` waits from the start).

Not thread-safe: use one client per thread. Never imports torch.
"""
from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import numpy as np
import zmq

from bridge import protocol
from bridge.score import DEFAULT_RESOLUTION

log = logging.getLogger("bridge.client")

STREAM_END = (protocol.DONE, protocol.ERROR)
SCHEMES = ("tcp", "ipc", "inproc")
# what the connection monitor reports until the handshake succeeds
WATCHED_EVENTS = (zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_HANDSHAKE_SUCCEEDED
                  | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                  | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
_monitor_ids = itertools.count()


def normalize_endpoint(endpoint: str) -> str:
    """A ZeroMQ endpoint, ``tcp://`` when none is named: ``localhost:5555`` is ``tcp://localhost:5555``.
    Raises ValueError for an endpoint that is neither."""
    endpoint = endpoint.strip()
    if "://" not in endpoint:
        endpoint = f"tcp://{endpoint}"
    parts = urlsplit(endpoint)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"endpoint {endpoint!r} has the scheme {parts.scheme!r}; use tcp://HOST:PORT "
                         "(e.g. tcp://127.0.0.1:5555, or just 127.0.0.1:5555), ipc://PATH or inproc://NAME")
    if parts.scheme == "tcp":
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None:
            raise ValueError(f"endpoint {endpoint!r} needs a host and a port, e.g. tcp://127.0.0.1:5555 "
                             "or localhost:5555")
    return endpoint


class EngineError(Exception):
    """The engine answered with an ``error`` reply; ``code`` is one of protocol.ERROR_CODES."""

    def __init__(self, code: str, message: str, job: protocol.RequestId | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.job = code, message, job


class EngineUnreachable(Exception):
    """No engine answers: the connection was refused, or no reply came after every retry."""


class EngineKeysError(EngineUnreachable):
    """The CurveZMQ handshake failed: this client's keys are missing, not authorised, or not for
    this engine."""


class Arranged(NamedTuple):
    labels: np.ndarray  # (n,) part index per input note, in input order
    parts: list[str]  # part names the labels index
    stats: dict[str, Any]  # the job's `done` stats


class Performed(NamedTuple):
    audio: np.ndarray  # (channels, samples) float32
    sample_rate_hz: int
    stats: dict[str, Any]


class ComposedBar(NamedTuple):
    index: int  # the bar, from 0
    notes: np.ndarray  # the notes written in it (NOTE_DTYPE, absolute ticks at the request's resolution)
    track: np.ndarray  # (n,) index of each note's instrument into ``instruments``
    instruments: list[str]


class ComposeStream:
    """A compose job's bars as they arrive (iterate it); ``stats`` holds the `done` stats after the
    last bar (model, instruments and their General MIDI programs). Leaving the loop early (break,
    an exception, closing the iterator) cancels the job on the engine."""

    def __init__(self, client: Client, replies: Iterator[protocol.Message],
                 on_progress: Callable[[float, str], None] | None = None) -> None:
        self._client, self._replies, self._on_progress = client, replies, on_progress
        self.stats: dict[str, Any] = {}

    _job: protocol.RequestId | None = None

    def __iter__(self) -> Iterator[ComposedBar]:
        try:
            yield from self._bars()
        except (EngineError, EngineUnreachable):
            raise  # the job has ended, or the engine is gone: nothing to cancel
        except BaseException:  # closed early (GeneratorExit), interrupted, or the caller failed
            self._replies.close()  # the stream's later replies are dropped as stale
            if self._job is not None:
                try:
                    self._client.cancel(self._job)
                except EngineError:  # it had finished meanwhile
                    pass
            raise

    def _bars(self) -> Iterator[ComposedBar]:
        expected = 0
        for reply in self._replies:
            if reply.type == protocol.ACCEPTED:
                self._job = reply.job
            elif reply.type == protocol.NOTES:
                seq = reply.fields["seq"]
                if seq < expected:  # a job restarted on a lost engine: the same request, the same bars
                    continue
                if seq > expected:
                    raise EngineError(protocol.INTERNAL, f"the engine sent bar {seq} after bar "
                                                         f"{expected - 1}; expected every bar in order")
                parts = reply.frame("parts")
                track = (np.zeros(len(reply.frame("notes")), np.int64) if parts is None
                         else parts.astype(np.int64))
                names = list(reply.fields.get("parts", []))
                yield ComposedBar(seq, reply.frame("notes").copy(), track, names)
                expected += 1
            elif reply.type == protocol.PROGRESS and self._on_progress is not None:
                self._on_progress(reply.fields["fraction"], reply.fields.get("message", ""))
            elif reply.type == protocol.DONE:
                self.stats = reply.fields.get("stats", {})


class Client:
    def __init__(self, endpoint: str = protocol.DEFAULT_ENDPOINT, *, timeout_s: float = 5.0,
                 retries: int = 3, backoff_s: float = 0.25, max_backoff_s: float = 4.0,
                 keys_dir: str | Path | None = None, context: zmq.Context | None = None,
                 wait_for_engine: bool = False) -> None:
        if timeout_s <= 0 or retries < 0:
            raise ValueError(f"timeout_s must be > 0 and retries >= 0, got {timeout_s} and {retries}")
        self.endpoint, self.timeout_s, self.retries = normalize_endpoint(endpoint), timeout_s, retries
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.reconnects = 0
        self.keys_dir = Path(keys_dir) if keys_dir else None
        self._keys = self._load_keys(self.keys_dir) if self.keys_dir else None
        self._wait_for_engine = wait_for_engine  # a refusal before any answer is waited for, not reported
        self._connected_once = False  # an engine has completed a handshake with this client
        self._monitor: zmq.Socket | None = None
        self._ctx = context or zmq.Context.instance()
        self._ids = itertools.count(1)
        self._pending: list[protocol.Message] = []  # replies for streams still open, not yet read
        self._open_ids: set[protocol.RequestId] = set()
        self._socket = self._open()

    @staticmethod
    def _load_keys(keys_dir: Path) -> tuple[bytes, bytes, bytes]:
        import zmq.auth

        secret_file, server_file = keys_dir / "client.key_secret", keys_dir / "server.key"
        if not secret_file.is_file() or not server_file.is_file():
            raise ValueError(f"{keys_dir} must hold client.key_secret (make it with `deep-musician keys "
                             f"{keys_dir} --name client`) and the engine's public server.key")
        public, secret = zmq.auth.load_certificate(secret_file)
        server_public, _ = zmq.auth.load_certificate(server_file)
        return public, secret, server_public

    # --- connection ----------------------------------------------------------------------------
    def _open(self) -> zmq.Socket:
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)  # closing never blocks on unsent requests
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        sock.setsockopt(zmq.HEARTBEAT_IVL, 1000)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 5000)
        if self._keys is not None:
            sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = self._keys
        # watched from before the connect, so the first refusal is seen (~1 ms on loopback)
        address = f"inproc://bridge-client-monitor-{next(_monitor_ids)}"
        sock.monitor(address, WATCHED_EVENTS)
        self._monitor = self._ctx.socket(zmq.PAIR)
        self._monitor.setsockopt(zmq.LINGER, 0)
        # no high-water mark: the events are read only while the client waits for an answer, and when
        # a full monitor pipe blocks, libzmq blocks the whole context's I/O thread with it (every
        # socket of the process stalls; a client never used nor closed did that in the tests)
        self._monitor.setsockopt(zmq.RCVHWM, 0)
        self._monitor.connect(address)
        sock.connect(self.endpoint)
        return sock

    def _stop_monitor(self) -> None:
        if self._monitor is not None:
            self._socket.disable_monitor()
            self._monitor.close(linger=0)
            self._monitor = None

    def _check_connection(self) -> None:
        """Read the monitor's events: stop watching once the handshake succeeded; raise
        EngineUnreachable for a refusal before any engine answered, EngineKeysError for a failed
        handshake."""
        from zmq.utils.monitor import recv_monitor_message

        while self._monitor is not None and self._monitor.poll(0, zmq.POLLIN):
            event = recv_monitor_message(self._monitor)["event"]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._connected_once = True
                self._stop_monitor()
            elif event == zmq.EVENT_CONNECT_RETRIED and not (self._connected_once or self._wait_for_engine):
                raise EngineUnreachable(
                    f"no engine answers at {self.endpoint} (the connection was refused); start one with "
                    f"`deep-musician serve --endpoint {self.endpoint}`, or check the endpoint")
            elif event in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_AUTH,
                           zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
                raise EngineKeysError(self._keys_problem(event))

    def _keys_problem(self, event: int) -> str:
        where = f"the engine at {self.endpoint}"
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            return (f"{where} refused this client's key: copy {self.keys_dir}/client.key into the "
                    "engine's KEYDIR/clients/ folder and restart it, or give --engine-keys the folder "
                    "of an authorised client key")
        if self._keys is None:
            return (f"{where} requires CurveZMQ keys and none were given: pass --engine-keys DIR holding "
                    "client.key_secret (make it with `deep-musician keys DIR --name client`) and the "
                    "engine's public server.key, and copy DIR/client.key into the engine's KEYDIR/clients/")
        if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
            return f"{where} does not use CurveZMQ keys, but --engine-keys {self.keys_dir} was given; drop it"
        # libzmq does not tell these apart: a wrong server key, or an engine without keys
        return (f"the CurveZMQ handshake with {where} failed: {self.keys_dir}/server.key is not that "
                "engine's public key (copy it from the engine's KEYDIR/server.key), or the engine runs "
                "without keys (then drop --engine-keys)")

    def _reconnect(self, why: str, attempt: int) -> None:
        self._stop_monitor()
        self._socket.close(linger=0)
        self._pending.clear()
        pause_s = min(self.backoff_s * 2 ** attempt, self.max_backoff_s)
        time.sleep(pause_s)
        self._socket = self._open()
        self.reconnects += 1
        if self._connected_once:
            log.warning("reconnected to the engine at %s after %s (attempt %d, waited %.2f s)",
                        self.endpoint, why, attempt + 1, pause_s)
        else:  # nothing ever answered: there is nothing to reconnect to
            log.warning("no answer yet from an engine at %s (%s); trying again (attempt %d, waited %.2f s)",
                        self.endpoint, why, attempt + 1, pause_s)

    def close(self) -> None:
        self._stop_monitor()
        self._socket.close(linger=0)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- messages ------------------------------------------------------------------------------
    def _send(self, message: protocol.Message) -> None:
        self._socket.send_multipart(protocol.encode(message), copy=False)

    def _recv(self, ids: set[protocol.RequestId], timeout_s: float) -> protocol.Message | None:
        """The next reply to one of ``ids``, or None after ``timeout_s``. Replies to other open
        streams are kept for later; stale ones (from before a retry) are dropped."""
        for i, m in enumerate(self._pending):
            if m.id in ids:
                return self._pending.pop(i)
        deadline = time.monotonic() + timeout_s
        while (left_s := deadline - time.monotonic()) > 0:
            if self._monitor is not None:  # until the handshake: wait on the socket and its monitor
                self._check_connection()
                if self._monitor is not None:
                    zmq.select([self._socket, self._monitor], [], [], left_s)
                    self._check_connection()
                if not self._socket.poll(0, zmq.POLLIN):
                    continue
            elif not self._socket.poll(max(1, int(left_s * 1000)), zmq.POLLIN):
                break
            frames = self._socket.recv_multipart(copy=False)
            try:
                message = protocol.decode(frames)
            except protocol.ProtocolError as exc:
                log.warning("dropped an unreadable reply from the engine: %s", exc)
                continue
            if message.id in ids:
                return message
            if message.id in self._open_ids:
                self._pending.append(message)
        return None

    def call(self, message_type: str, frames: Sequence[np.ndarray] = (), **fields: Any) -> protocol.Message:
        """Send a request that has one reply (hello, ping, status, cancel) and return that reply;
        raises EngineError for an `error` reply, EngineUnreachable after every retry."""
        request = protocol.make_request(message_type, next(self._ids), frames, **fields)
        for attempt in range(self.retries + 1):
            self._send(request)
            reply = self._recv({request.id}, self.timeout_s)
            if reply is not None:
                return _raise_error(reply)
            if attempt < self.retries:
                self._reconnect(f"no reply to {message_type} in {self.timeout_s:g} s", attempt)
        raise self._unreachable(message_type)

    def _unreachable(self, what: str) -> EngineUnreachable:
        if not self._connected_once:
            return EngineUnreachable(
                f"no engine answers at {self.endpoint}: no reply to {what} after {self.retries + 1} tries "
                f"of {self.timeout_s:g} s; start one with `deep-musician serve --endpoint {self.endpoint}`, "
                "or check the endpoint")
        return EngineUnreachable(
            f"the engine at {self.endpoint} stopped answering: no reply to {what} after "
            f"{self.retries + 1} tries of {self.timeout_s:g} s; check that it still runs (restart it "
            f"with `deep-musician serve --endpoint {self.endpoint}`)")

    def stream(self, message_type: str, frames: Sequence[np.ndarray] = (),
               **fields: Any) -> Iterator[protocol.Message]:
        """Run a job and yield its replies: `accepted`, then chunks (`notes`, `audio`, `progress`),
        then `done`. If the engine is lost mid-job the job is started again on a new connection and
        a new `accepted` is yielded: drop what that job's earlier chunks gave. Raises EngineError
        for an `error` reply (`cancelled` included)."""
        request = protocol.make_request(message_type, next(self._ids), frames, **fields)
        self._open_ids.add(request.id)
        try:
            for attempt in range(self.retries + 1):
                self._send(request)
                lost = yield from self._follow(request)
                if not lost:
                    return
                if attempt < self.retries:
                    self._reconnect(f"the engine went silent during {message_type}", attempt)
            raise self._unreachable(message_type)
        finally:
            self._open_ids.discard(request.id)
            self._pending = [m for m in self._pending if m.id != request.id]

    def _follow(self, request: protocol.Message) -> Iterator[protocol.Message]:
        """Yield one try's replies; returns True if the engine was lost on the way."""
        job, finished_probes = None, 0
        while True:
            reply = self._recv({request.id}, self.timeout_s)
            if reply is None:
                state = "gone" if job is None else self._probe(job)
                finished_probes += state == "finished"
                if state == "gone" or finished_probes > 1:
                    return True
                continue
            if reply.type == protocol.ACCEPTED:
                job = reply.job
            yield _raise_error(reply)
            if reply.type == protocol.DONE:
                return False

    def _probe(self, job: protocol.RequestId) -> str:
        """"running", "finished" (its last replies may still be on the way) or "gone" (no answer)."""
        probe = protocol.make_request(protocol.STATUS, next(self._ids), job=job)
        self._send(probe)
        reply = self._recv({probe.id}, self.timeout_s)
        if reply is None:
            return "gone"
        return "finished" if reply.type == protocol.ERROR else "running"

    # --- the plain API -------------------------------------------------------------------------
    def hello(self, client: str = "bridge.client") -> dict[str, Any]:
        """The engine's welcome: engine_version, capabilities, models, limits."""
        return self.call(protocol.HELLO, client=client).fields

    def ping(self) -> float:
        """Round trip time in seconds."""
        start = time.perf_counter()
        self.call(protocol.PING)
        return time.perf_counter() - start

    def status(self, job: protocol.RequestId | None = None) -> dict[str, Any]:
        return self.call(protocol.STATUS, **({} if job is None else {"job": job})).fields

    def cancel(self, job: protocol.RequestId) -> dict[str, Any]:
        """Cancel a job; returns the `done` stats once it has stopped."""
        return self.call(protocol.CANCEL, job=job).fields

    def arrange(self, notes: np.ndarray, ensemble: str, mode: str = "offline",
                resolution: int = DEFAULT_RESOLUTION, **options: Any) -> Arranged:
        """Arrange a region; options are arrange's optional fields (hints, constrained, model,
        ensemble_parts for an ensemble of the caller's own, keep_extras)."""
        chunks: list[protocol.Message] = []
        stats: dict[str, Any] = {}
        for reply in self.stream(protocol.ARRANGE, [notes], ensemble=ensemble, mode=mode,
                                 resolution=resolution, **options):
            if reply.type == protocol.ACCEPTED:
                chunks = []  # a restarted job sends everything again
            elif reply.type == protocol.NOTES:
                chunks.append(reply)
            elif reply.type == protocol.DONE:
                stats = reply.fields.get("stats", {})
        return _assemble(chunks, len(notes), stats)

    def live_notes(self, session: str, notes: np.ndarray, position_ticks: int,
                   **fields: Any) -> Arranged:
        """Send one block of a live session; the labels of its notes, in the order sent."""
        chunks, stats = [], {}
        for reply in self.stream(protocol.LIVE_NOTES, [notes], session=session,
                                 position_ticks=position_ticks, **fields):
            if reply.type == protocol.ACCEPTED:
                chunks = []
            elif reply.type == protocol.NOTES:
                chunks.append(reply)
            elif reply.type == protocol.DONE:
                stats = reply.fields.get("stats", {})
        return _assemble(chunks, len(notes), stats)

    def compose(self, bars: int, *, given: dict[str, np.ndarray] | None = None,
                resolution: int = DEFAULT_RESOLUTION, on_progress: Callable[[float, str], None] | None = None,
                **fields: Any) -> ComposeStream:
        """Compose ``bars`` bars; iterate the result for each bar as the engine writes it. Fields are
        compose's optional ones (meter, key, qpm, chords, instruments, temperature, top_p, seed, model,
        given_bars, infill, ranges, density, polyphony, rhythm, register, arrangement, harmony);
        ``given`` maps instruments to notes at ``resolution`` to accompany, continue or infill (the
        engine sends back only what it writes)."""
        frames: list[np.ndarray] = []
        if given:
            names = list(given)
            frames = [np.concatenate([given[n] for n in names]),
                      np.concatenate([np.full(len(given[n]), i, np.uint8) for i, n in enumerate(names)])]
            fields["parts"] = names
        wire = {k: (list(v) if isinstance(v, tuple) else v) for k, v in fields.items() if v is not None}
        for key in ("infill", "ranges"):  # instrument -> [start, stop) bars / [low, high] pitches
            if key in wire:
                wire[key] = {name: list(span) for name, span in wire[key].items()}
        return ComposeStream(self, self.stream(protocol.COMPOSE, frames, bars=bars, resolution=resolution,
                                               **wire), on_progress)

    def perform(self, notes: np.ndarray, sample_rate_hz: int = 48_000, parts: np.ndarray | None = None,
                resolution: int = DEFAULT_RESOLUTION, on_progress: Callable[[float, str], None] | None = None,
                markings: np.ndarray | None = None, **fields: Any) -> Performed:
        """Render notes to audio (fields: qpm, programs, model); `on_progress(fraction, message)` is
        called as the engine reports progress; `markings`: a score's, one (dynamic, hairpin + 1,
        marks) row per note (the `markings` frame of docs/protocol.md)."""
        frames = _perform_frames(notes, parts, markings)
        chunks: list[protocol.Message] = []
        stats: dict[str, Any] = {}
        for reply in self.stream(protocol.PERFORM, frames, sample_rate_hz=sample_rate_hz,
                                 resolution=resolution, **fields):
            if reply.type == protocol.ACCEPTED:
                chunks = []
            elif reply.type == protocol.AUDIO:
                chunks.append(reply)
            elif reply.type == protocol.PROGRESS and on_progress is not None:
                on_progress(reply.fields["fraction"], reply.fields.get("message", ""))
            elif reply.type == protocol.DONE:
                stats = reply.fields.get("stats", {})
        return Performed(_join_audio(chunks), sample_rate_hz, stats)

    def perform_chunks(self, notes: np.ndarray, sample_rate_hz: int = 48_000, parts: np.ndarray | None = None,
                       resolution: int = DEFAULT_RESOLUTION,
                       on_progress: Callable[[float, str], None] | None = None,
                       markings: np.ndarray | None = None, **fields: Any) -> Iterator[tuple[int, np.ndarray]]:
        """`perform`, yielding (start sample, (channels, n) audio) as the chunks arrive, so a long
        render need not be held in memory. A job restarted on a lost engine starts again at 0: put
        each chunk at its start sample."""
        frames = _perform_frames(notes, parts, markings)
        expected = 0
        for reply in self.stream(protocol.PERFORM, frames, sample_rate_hz=sample_rate_hz,
                                 resolution=resolution, **fields):
            if reply.type == protocol.ACCEPTED:
                expected = 0
            elif reply.type == protocol.AUDIO:
                start, audio = reply.fields["start_sample"], reply.frame("audio")
                if start != expected:
                    raise EngineError(protocol.INTERNAL, f"the engine's audio chunk starts at sample "
                                                         f"{start}; expected {expected}, without gaps")
                expected = start + audio.shape[1]
                yield start, audio
            elif reply.type == protocol.PROGRESS and on_progress is not None:
                on_progress(reply.fields["fraction"], reply.fields.get("message", ""))

    def live_perform(self, session: str, notes: np.ndarray, position_ticks: int, *, block_samples: int,
                     sample_rate_hz: int, qpm: float, parts: np.ndarray | None = None,
                     releases: np.ndarray | None = None, **fields: Any) -> tuple[int, np.ndarray]:
        """Render one block of a live perform session: (its start sample on the session's clock,
        (2, block_samples) audio). `releases` rows are (tick, pitch, part) note-offs."""
        frames = [notes]
        if parts is not None or releases is not None:
            frames.append(np.zeros(len(notes), np.uint8) if parts is None else np.asarray(parts, np.uint8))
        if releases is not None:
            frames.append(np.asarray(releases, np.int64).reshape(-1, 3))
        chunks: list[protocol.Message] = []
        for reply in self.stream(protocol.LIVE_PERFORM, frames, session=session,
                                 position_ticks=position_ticks, block_samples=block_samples,
                                 sample_rate_hz=sample_rate_hz, qpm=qpm, **fields):
            if reply.type == protocol.ACCEPTED:
                chunks = []
            elif reply.type == protocol.AUDIO:
                chunks.append(reply)
        if not chunks:
            raise EngineError(protocol.INTERNAL, "the engine finished the block without sending audio")
        return chunks[0].fields["start_sample"], _join_audio(chunks)


def _perform_frames(notes: np.ndarray, parts: np.ndarray | None, markings: np.ndarray | None) -> list:
    """A perform request's frames: notes, then parts (all 0 where markings need the slot), then markings."""
    if markings is None:
        return [notes] if parts is None else [notes, np.asarray(parts, np.uint8)]
    parts = np.zeros(len(notes), np.uint8) if parts is None else np.asarray(parts, np.uint8)
    return [notes, parts, np.ascontiguousarray(markings, np.uint8)]


def _join_audio(chunks: list[protocol.Message]) -> np.ndarray:
    seqs = [c.fields["seq"] for c in chunks]
    if seqs != list(range(len(chunks))):
        raise EngineError(protocol.INTERNAL, f"the engine's audio chunks arrived as seq {seqs}; "
                                             "expected 0, 1, 2, ... without gaps")
    frames = [c.frame("audio") for c in chunks]
    return np.concatenate(frames, axis=1) if frames else np.zeros((2, 0), np.float32)


def _raise_error(reply: protocol.Message) -> protocol.Message:
    if reply.type == protocol.ERROR:
        raise EngineError(reply.fields["code"], reply.fields["message"], reply.fields.get("job"))
    return reply


def _assemble(chunks: list[protocol.Message], n_notes: int, stats: dict[str, Any]) -> Arranged:
    seqs = [c.fields["seq"] for c in chunks]
    if seqs != list(range(len(chunks))):
        raise EngineError(protocol.INTERNAL, f"the engine's notes chunks arrived as seq {seqs}; "
                                             "expected 0, 1, 2, ... without gaps")
    labels = (np.concatenate([c.frame("parts") for c in chunks]).astype(np.int64) if chunks
              else np.zeros(0, np.int64))
    if len(labels) != n_notes:
        raise EngineError(protocol.INTERNAL, f"the engine labelled {len(labels)} notes of the "
                                             f"{n_notes} sent")
    parts = chunks[0].fields.get("parts", []) if chunks else []
    return Arranged(labels, list(parts), stats)
