"""The engine as a service: one ZeroMQ ROUTER poll loop in front of the job scheduler.

Threads: the poll thread (``serve_forever``) is the only one that touches the ROUTER socket. It
receives, splits the envelope (identity frame, then the message), decodes with bridge.protocol,
answers small requests itself and hands jobs to engine.scheduler; worker threads run inference and
send their replies through an inproc PUSH socket that the poll thread forwards to the ROUTER. A bad
message gets an error reply and a handler exception an ``internal`` one; the loop survives both.

Liveness: libzmq sends ZMTP heartbeats (HEARTBEAT_IVL/TIMEOUT) and drops a peer that stops
answering; ROUTER_MANDATORY then turns a send to that peer into EHOSTUNREACH, which cancels its
jobs. Peers silent for ``peer_idle_s`` with no jobs are forgotten with their live sessions.
"""
from __future__ import annotations

import ctypes
import ipaddress
import logging
import os
import signal
import threading
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import zmq

import bridge
from bridge import protocol, synth
from bridge.score import DEFAULT_QPM, DEFAULT_RESOLUTION, Score, Track, make_notes
from engine import scheduler as sched
from engine.arrange import ArrangeInputError, ArrangeOptions, arrange
from engine.live import LiveArranger
from engine.perform import LivePerformer, PerformInputError, SynthFactory, check_parts, render_chunks
from engine.registry import ModelEntry, Registry

log = logging.getLogger("engine.server")
MAX_SESSIONS_PER_CLIENT = 32  # live sessions kept per client; the least recently used go first
MAX_PERFORM_SESSIONS_PER_CLIENT = 4  # of those, live perform ones: each holds a synth (~12 MB)
SPARE_ARRANGERS = 8  # evicted live arrangers kept per model, to become new sessions without new memory

CHUNK_NOTES = 4096  # notes per `notes` reply: ~74 KB, small enough to keep replies flowing
MODEL_KEYS = ("name", "version", "task", "ensemble", "mode", "causality", "resolution")
ARRANGE_SERVED = (protocol.ARRANGE, protocol.LIVE_NOTES)
PERFORM_SERVED = (protocol.PERFORM, "live_perform")  # live_perform: live_notes with task perform
KEYS_HELP = ("make keys with `deep-musician keys KEYDIR --name server`, copy each client's public key "
             "(made with `deep-musician keys DIR --name client`) into KEYDIR/clients/, and start the "
             "engine with --keys KEYDIR")


def is_local_endpoint(endpoint: str) -> bool:
    """True for ipc://, inproc:// and tcp:// on a loopback address (127.0.0.0/8, ::1, localhost)."""
    parts = urlsplit(endpoint)
    if parts.scheme in ("ipc", "inproc"):
        return True
    host = (parts.hostname or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "*", an interface name or a host name: may face the network


def check_bind(endpoint: str, keys_dir: str | Path | None) -> None:
    """Refuse (ValueError) a network-facing bind without CurveZMQ keys, before anything binds."""
    if not endpoint.startswith(("tcp://", "ipc://", "inproc://")):
        raise ValueError(f"endpoint {endpoint!r} must look like tcp://127.0.0.1:5555 or ipc:///tmp/dm")
    if keys_dir is None and not is_local_endpoint(endpoint):
        raise ValueError(f"refusing to bind {endpoint} without keys: a non-loopback address lets anyone "
                         f"on the network use the engine; {KEYS_HELP} (or bind tcp://127.0.0.1:PORT)")


def limit_malloc_arenas() -> bool:
    """One glibc malloc arena for the engine (unless $MALLOC_ARENA_MAX says otherwise); call it
    before threads start. By default each thread gets its own arena, and memory that one thread
    allocates and another frees is seldom reused: a live perform session's synthesiser (~13 MB,
    made on the spare-synth thread, freed on a worker) left holes that grew RSS by ~500 MB over 12
    rounds of 64 session resets, against ~70 MB with one arena. False where this is not glibc."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-8, 1))  # M_ARENA_MAX
    except (OSError, AttributeError):
        return False


def model_summary(entry: ModelEntry) -> dict[str, Any]:
    summary = {k: entry.metadata[k] for k in MODEL_KEYS if k in entry.metadata}
    if "parts" in entry.metadata:
        summary["parts"] = [p["name"] for p in entry.metadata["parts"]]
    return summary


def labels_in_input_order(notes: np.ndarray, result: Score) -> np.ndarray:
    """Part index per input note, from the arranged score's tracks. Identical notes are
    interchangeable, so each track's notes are matched to the input as a multiset."""
    slots: dict[tuple, list[int]] = {}
    for k, track in enumerate(result.tracks):
        for n in track.notes.tolist():
            slots.setdefault(tuple(n), []).append(k)
    return np.array([slots[tuple(n)].pop() for n in notes.tolist()], np.uint8)


def _single_torch_thread() -> None:
    # Called on each worker thread: two intra-op threads per job run many times slower on a busy
    # 2-core machine; parallelism comes from separate jobs instead.
    import torch

    torch.set_num_threads(1)


class EngineServer:
    def __init__(self, endpoint: str, registry: Registry, workers: int = 2,
                 limits: protocol.Limits = protocol.DEFAULT_LIMITS, keys_dir: str | Path | None = None,
                 heartbeat_interval_s: float = 1.0, heartbeat_timeout_s: float = 5.0,
                 peer_idle_s: float = 600.0) -> None:
        check_bind(endpoint, keys_dir)
        self.endpoint, self.registry, self.limits = endpoint, registry, limits
        self.keys_dir = Path(keys_dir) if keys_dir else None
        self.heartbeat_interval_s, self.heartbeat_timeout_s = heartbeat_interval_s, heartbeat_timeout_s
        self.peer_idle_s = peer_idle_s
        self.started_s = time.monotonic()
        self._stop = threading.Event()
        self._peers: dict[bytes, float] = {}  # identity -> last time it sent anything (monotonic s)
        self._backlog: dict[bytes, deque[list]] = {}  # replies waiting while a peer's pipe is full
        self._sessions: dict[tuple[bytes, str], tuple[LiveArranger | LivePerformer, float]] = {}
        self._synths = SynthFactory()
        self.synth_problem = synth.available()  # "" when the SoundFont performer can run
        self.served = ARRANGE_SERVED + (() if self.synth_problem else PERFORM_SERVED)
        self._sessions_lock = threading.Lock()
        # Under _sessions_lock: the arrangers a job is using now (never evicted), and evicted ones
        # kept to become new sessions of their model (LiveArranger.reset: no new memory per session).
        self._in_use: set[int] = set()
        self._spare_arrangers: dict[str, list[LiveArranger]] = defaultdict(list)
        self._push_lock = threading.Lock()
        self._loop_thread: int | None = None
        self.ctx = zmq.Context()
        self._pull = self.ctx.socket(zmq.PULL)
        self._pull.bind(f"inproc://engine-outbox-{id(self)}")
        self._push = self.ctx.socket(zmq.PUSH)
        self._push.setsockopt(zmq.SNDHWM, 0)  # never drop or block a worker's reply in process
        self._push.connect(f"inproc://engine-outbox-{id(self)}")
        self.router = self._make_router()
        _single_torch_thread()
        self._warm_up()
        self.scheduler = sched.Scheduler(self._emit, workers, limits.max_jobs_per_client,
                                         on_worker_start=_single_torch_thread)

    def _make_router(self) -> zmq.Socket:
        router = self.ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send to a vanished peer raises, not drops
        router.setsockopt(zmq.HEARTBEAT_IVL, int(self.heartbeat_interval_s * 1000))
        router.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(self.heartbeat_timeout_s * 1000))
        router.setsockopt(zmq.HEARTBEAT_TTL, int(self.heartbeat_timeout_s * 1000))
        # a backstop only: anything between the limit and this gets a `too_large` reply instead
        router.setsockopt(zmq.MAXMSGSIZE, 4 * self.limits.max_message_bytes)
        if self.keys_dir is not None:
            self._setup_curve(router)
        router.bind(self.endpoint)
        return router

    def _setup_curve(self, router: zmq.Socket) -> None:
        import zmq.auth
        from zmq.auth.thread import ThreadAuthenticator

        secret_file, clients = self.keys_dir / "server.key_secret", self.keys_dir / "clients"
        if not secret_file.is_file() or not clients.is_dir():
            raise ValueError(f"--keys {self.keys_dir} must hold server.key_secret and a clients/ folder "
                             f"of authorised public keys; {KEYS_HELP}")
        public, secret = zmq.auth.load_certificate(secret_file)
        self._auth = ThreadAuthenticator(self.ctx)
        self._auth.start()
        self._auth.configure_curve(domain="*", location=str(clients))
        router.curve_secretkey, router.curve_publickey, router.curve_server = secret, public, True

    def _warm_up(self) -> None:
        # The first call of a TorchScript model compiles it (~0.5 s); pay that before serving.
        tiny = Score(DEFAULT_RESOLUTION, [Track("warm-up", 0, notes=make_notes([0, 0, 24, 48],
                                                                             [48, 60, 64, 67], 24, 80))])
        for entry in self.registry.usable("arrange"):
            try:
                arrange(tiny, entry)
            except Exception as exc:  # a model that fails here still gets its error per request
                log.warning("event=warm_up_failed model=%s error=%r", entry.name, exc)
        if self.synth_problem:
            log.warning("event=no_performer reason=%r", self.synth_problem)
        else:  # reading the SoundFont takes ~1 s: do it beside serving, not before
            threading.Thread(target=self._warm_synth, name="synth-warm-up", daemon=True).start()

    def _warm_synth(self) -> None:
        try:
            self._synths.warm()
        except Exception as exc:
            log.warning("event=warm_up_failed model=soundfont error=%r", exc)

    # --- replies -------------------------------------------------------------------------------
    def _emit(self, identity: bytes, message: protocol.Message) -> None:
        """Send a reply from any thread: directly on the poll thread, else via the outbox."""
        frames = protocol.encode(message)
        if threading.get_ident() == self._loop_thread:
            self._send(identity, frames)
            return
        with self._push_lock:  # one PUSH socket shared by the workers, used under a lock
            self._push.send_multipart([identity, *frames], copy=False)

    def _reply(self, identity: bytes, message_type: str, request: protocol.Message, **fields: Any) -> None:
        self._emit(identity, protocol.make_reply(message_type, request.id, **fields))

    def _send(self, identity: bytes, frames: list) -> None:
        if identity in self._backlog:
            self._backlog[identity].append(frames)
            return
        self._try_send(identity, frames)

    def _try_send(self, identity: bytes, frames: list) -> bool:
        try:
            self.router.send_multipart([identity, *frames], flags=zmq.NOBLOCK, copy=False)
            return True
        except zmq.Again:  # the peer's pipe is full: keep its replies in order until it drains
            self._backlog[identity] = deque([frames])  # callers hold no backlog for it here
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            self._peer_gone(identity, "unreachable")
        return False

    def _flush_backlogs(self) -> None:
        for identity in list(self._backlog):
            queue = self._backlog.pop(identity)
            while queue:
                frames = queue.popleft()
                if not self._try_send(identity, frames):
                    if identity in self._backlog:
                        self._backlog[identity].extend(queue)
                    break

    def _peer_gone(self, identity: bytes, why: str) -> None:
        self._backlog.pop(identity, None)
        known = self._peers.pop(identity, None) is not None
        cancelled = self.scheduler.cancel_client(identity)
        with self._sessions_lock:
            dropped = [k for k in self._sessions if k[0] == identity]
            for k in dropped:
                del self._sessions[k]
        if known or cancelled or dropped:
            log.info("event=peer_gone peer=%s why=%s jobs_cancelled=%d sessions_dropped=%d",
                     identity.hex(), why, cancelled, len(dropped))

    # --- the poll loop -------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to finish (any thread, or a signal handler)."""
        self._stop.set()

    def serve_forever(self) -> None:
        self._loop_thread = threading.get_ident()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda signum, frame: self.stop())
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self._pull, zmq.POLLIN)
        log.info("event=listening endpoint=%s workers=%d models=%d curve=%s", self.endpoint,
                 len(self.scheduler._threads), len(self.registry.usable()), self.keys_dir is not None)
        next_sweep_s = time.monotonic() + 1.0
        try:
            while not self._stop.is_set():
                events = dict(poller.poll(5 if self._backlog else 100))
                # drain each socket (bounded, so neither starves the other); EVENTS is cheaper
                # than letting a NOBLOCK recv raise Again at the end of every batch
                if self._pull in events:
                    for _ in range(1000):
                        identity, *frames = self._pull.recv_multipart(copy=False)
                        self._send(identity.bytes, frames)
                        if not self._pull.get(zmq.EVENTS) & zmq.POLLIN:
                            break
                if self.router in events:
                    for _ in range(100):
                        identity, *frames = self.router.recv_multipart(copy=False)
                        self._handle(identity.bytes, frames)
                        if not self.router.get(zmq.EVENTS) & zmq.POLLIN:
                            break
                if self._backlog:
                    self._flush_backlogs()
                if time.monotonic() >= next_sweep_s:
                    self._sweep()
                    next_sweep_s = time.monotonic() + 1.0
        finally:
            self._shutdown()

    def _sweep(self) -> None:
        now = time.monotonic()
        for identity, seen in list(self._peers.items()):
            if now - seen > self.peer_idle_s and not self.scheduler.jobs_of(identity):
                self._peer_gone(identity, "idle")

    def _shutdown(self) -> None:
        log.info("event=stopping jobs=%s", self.scheduler.counts())
        self.scheduler.shutdown()
        for sock in (self._push, self._pull, self.router):
            sock.close(linger=0)
        if getattr(self, "_auth", None) is not None:
            self._auth.stop()
        self.ctx.term()
        log.info("event=stopped uptime_s=%.1f", time.monotonic() - self.started_s)

    def _handle(self, identity: bytes, frames: list) -> None:
        self._peers[identity] = time.monotonic()
        try:
            message = protocol.decode(frames, self.limits)
        except protocol.ProtocolError as exc:
            log.warning("event=bad_request peer=%s code=%s message=%r", identity.hex(), exc.code,
                        exc.message)
            self._emit(identity, exc.to_reply())
            return
        log.debug("event=request peer=%s type=%s id=%r", identity.hex(), message.type, message.id)
        try:
            handler = getattr(self, f"_on_{message.type}", None)
            if handler is None:
                self._refuse_type(identity, message)
            else:
                handler(identity, message)
        except Exception as exc:  # one bad handler call must not stop the engine
            log.exception("event=handler_failed peer=%s type=%s", identity.hex(), message.type)
            self._emit(identity, protocol.error_reply(message.id, protocol.INTERNAL,
                                                      f"the engine failed on this {message.type} "
                                                      f"({type(exc).__name__}); the engine log has details"))

    def _refuse_type(self, identity: bytes, message: protocol.Message) -> None:
        if message.type in protocol.REPLIES:
            code, text = protocol.UNKNOWN_TYPE, (f"{message.type!r} is a reply type; the engine takes "
                                                 f"requests: {', '.join(protocol.REQUESTS)}")
        else:
            code, text = protocol.NO_MODEL, (f"this engine has no {message.type} models installed; it "
                                             f"serves {', '.join(self.served)} (see welcome's "
                                             "capabilities)")
        self._emit(identity, protocol.error_reply(message.id, code, text))

    # --- requests (poll thread) ----------------------------------------------------------------
    def _on_hello(self, identity: bytes, message: protocol.Message) -> None:
        log.info("event=hello peer=%s client=%r", identity.hex(), message.fields.get("client", ""))
        self._reply(identity, protocol.WELCOME, message, engine_version=bridge.__version__,
                    capabilities=list(self.served), models=self._models(), limits=self.limits.to_dict())

    def _on_ping(self, identity: bytes, message: protocol.Message) -> None:
        self._reply(identity, protocol.PONG, message)

    def _on_status(self, identity: bytes, message: protocol.Message) -> None:
        jobs = [j.describe() for j in self.scheduler.jobs_of(identity)]
        if "job" in message.fields:
            jobs = [j for j in jobs if j["job"] == message.fields["job"]]
            if not jobs:
                self._unknown_job(identity, message)
                return
        self._reply(identity, protocol.STATUS_REPLY, message, jobs=jobs,
                    uptime_s=round(time.monotonic() - self.started_s, 3), models=self._models())

    def _on_cancel(self, identity: bytes, message: protocol.Message) -> None:
        if not self.scheduler.cancel(identity, message.fields["job"], message.id):
            self._unknown_job(identity, message)

    def _unknown_job(self, identity: bytes, message: protocol.Message) -> None:
        job = message.fields["job"]
        self._emit(identity, protocol.error_reply(
            message.id, protocol.UNKNOWN_JOB, f"job {job!r} is no queued or running job of this "
            "connection; it never started, already finished, or was started by another connection",
            job=job))

    def _models(self) -> list[dict[str, Any]]:
        return [model_summary(e) for e in self.registry.usable()]

    def _submit(self, identity: bytes, message: protocol.Message, run, priority: int,
                serial_key: Any = None, **accepted: Any) -> None:
        try:
            job = self.scheduler.submit(identity, message.id, message.type, run, priority, serial_key)
        except sched.TooManyJobs as exc:
            self._emit(identity, protocol.error_reply(message.id, protocol.TOO_MANY_JOBS, str(exc)))
            return
        # sent before any reply of the job: those reach this thread through the outbox, later
        self._reply(identity, protocol.ACCEPTED, message, job=job.id, **accepted)
        log.info("event=job_queued peer=%s job=%s type=%s", identity.hex(), job.id, message.type)

    def _find_model(self, message: protocol.Message, ensemble: str, mode: str) -> ModelEntry:
        name = message.fields.get("model")
        if name is None:
            try:
                return self.registry.find_arranger(ensemble, mode)
            except ValueError as exc:
                raise sched.JobError(protocol.NO_MODEL, str(exc)) from None
        for entry in self.registry.usable("arrange"):
            if entry.name == name:
                return entry
        raise sched.JobError(protocol.NO_MODEL, f"no arrange model named {name!r}; installed: "
                             f"{', '.join(e.name for e in self.registry.usable('arrange')) or 'none'}")

    def _options(self, model: ModelEntry, message: protocol.Message) -> ArrangeOptions:
        names = [p["name"] for p in model.metadata["parts"]]
        lookup = {n.lower(): n for n in names}
        entries, pitches = {}, {}
        for part, hint in message.fields.get("hints", {}).items():
            if part.lower() not in lookup:
                raise sched.JobError(protocol.BAD_INPUT, f"hints name part {part!r}, which {model.name} "
                                     f"does not have; its parts are {', '.join(names)}")
            if "entry_beats" in hint:
                entries[lookup[part.lower()]] = float(hint["entry_beats"])
            if "pitch" in hint:
                pitches[lookup[part.lower()]] = int(hint["pitch"])
        return ArrangeOptions(message.fields.get("constrained", True), entries, pitches)

    def _on_arrange(self, identity: bytes, message: protocol.Message) -> None:
        try:
            model = self._find_model(message, message.fields["ensemble"], message.fields["mode"])
            options = self._options(model, message)
        except sched.JobError as exc:
            self._emit(identity, protocol.error_reply(message.id, exc.code, exc.message))
            return
        notes = message.frame("notes")
        resolution = message.fields.get("resolution", DEFAULT_RESOLUTION)
        parts = [p["name"] for p in model.metadata["parts"]]

        def run(job: sched.Job) -> dict[str, Any]:  # on a worker thread
            if len(notes) == 0:
                raise sched.JobError(protocol.BAD_INPUT, "the notes frame is empty; send at least one "
                                                         "note to arrange")
            score = Score(resolution, [Track("input", 0, notes=notes.copy())])
            try:
                result = arrange(score, model, options)
            except ArrangeInputError as exc:
                raise sched.JobError(protocol.BAD_INPUT, str(exc)) from None
            labels = labels_in_input_order(notes, result)
            for start in range(0, len(notes), CHUNK_NOTES):
                job.check()
                stop = start + CHUNK_NOTES
                job.send(protocol.NOTES, [notes[start:stop], labels[start:stop]], seq=job.next_seq(),
                         parts=parts)
            return {"notes": len(notes), "model": model.name}

        self._submit(identity, message, run, sched.BATCH)

    def _on_perform(self, identity: bytes, message: protocol.Message) -> None:
        if self.synth_problem:
            self._emit(identity, protocol.error_reply(message.id, protocol.NO_MODEL, "this engine cannot "
                                                      f"perform: {self.synth_problem}"))
            return
        fields, notes = message.fields, message.frame("notes")
        sr, resolution = fields["sample_rate_hz"], fields.get("resolution", DEFAULT_RESOLUTION)
        qpm, programs = fields.get("qpm", DEFAULT_QPM), fields.get("programs", [])
        try:
            parts = check_parts(message.frame("parts"), len(notes), programs)
            self._check_rate(sr)
        except (PerformInputError, sched.JobError) as exc:
            self._emit(identity, protocol.error_reply(message.id, protocol.BAD_INPUT, str(exc)))
            return
        if len(notes) == 0:
            self._emit(identity, protocol.error_reply(message.id, protocol.BAD_INPUT, "the notes frame is "
                                                      "empty; send at least one note to perform"))
            return
        end_s = float((notes["time"] + notes["duration"]).max()) / resolution * 60.0 / qpm

        def run(job: sched.Job) -> dict[str, Any]:  # on a worker thread
            with self._synths.new(sr) as performer:
                done = 0
                for audio in render_chunks(performer, notes, parts, programs, resolution, qpm):
                    job.check()
                    job.send(protocol.AUDIO, [audio], seq=job.next_seq(), start_sample=done,
                             sample_rate_hz=sr)
                    done += audio.shape[1]
                    job.send(protocol.PROGRESS, fraction=min(1.0, done / sr / max(end_s, 1e-9)),
                             message=f"{done / sr:.1f} s of {end_s:.1f} s rendered")
            return {"samples": done, "seconds_of_audio": round(done / sr, 3), "renderer": "soundfont"}

        self._submit(identity, message, run, sched.BATCH)

    def _check_rate(self, sample_rate_hz: int) -> None:
        lo, hi = synth.SAMPLE_RATES_HZ
        if not lo <= sample_rate_hz <= hi:
            raise sched.JobError(protocol.BAD_INPUT, f"sample_rate_hz must be {lo}..{hi} for the SoundFont "
                                 f"performer, got {sample_rate_hz}")

    def _on_live_notes(self, identity: bytes, message: protocol.Message) -> None:
        if message.fields.get("task", "arrange") == "perform":
            self._on_live_perform(identity, message)
            return
        session, fields = message.fields["session"], message.fields
        key = (identity, session)
        notes = message.frame("notes")
        resolution = fields.get("resolution", DEFAULT_RESOLUTION)

        def run(job: sched.Job) -> dict[str, Any]:  # on a worker thread, one job per session at once
            live = self._live_session(key, message, resolution)
            try:
                labels = live.push(notes.copy(), message.frame("releases"))
            except BaseException as exc:
                self._done_with(live)
                if isinstance(exc, ArrangeInputError):
                    raise sched.JobError(protocol.BAD_INPUT, str(exc)) from None
                raise
            self._keep_session(key, live)
            parts = [p["name"] for p in live.parts_meta]
            job.send(protocol.NOTES, [notes, labels.astype(np.uint8)], seq=job.next_seq(), parts=parts,
                     session=session)
            return {"notes": len(notes), "position_ticks": fields["position_ticks"]}

        self._submit(identity, message, run, sched.LIVE, serial_key=key, session=session)

    def _on_live_perform(self, identity: bytes, message: protocol.Message) -> None:
        session, fields = message.fields["session"], message.fields
        key = (identity, session)
        notes, releases = message.frame("notes"), message.frame("releases")
        resolution = fields.get("resolution", DEFAULT_RESOLUTION)
        try:
            if self.synth_problem:
                raise sched.JobError(protocol.NO_MODEL, f"this engine cannot perform: {self.synth_problem}")
            missing = [f for f in ("sample_rate_hz", "block_samples", "qpm") if f not in fields]
            if missing:
                raise sched.JobError(protocol.MISSING_FIELD, f"live_notes with task perform needs "
                                     f"{', '.join(missing)}: the block's length in samples, the output "
                                     "rate and the tempo place each note in the block")
            self._check_rate(fields["sample_rate_hz"])
            parts = check_parts(message.frame("parts"), len(notes), fields.get("programs", []))
            if releases is None:
                releases = np.zeros((0, 3), np.int64)
            check_parts(releases[:, 2].astype(np.uint8), len(releases), fields.get("programs", []))
        except PerformInputError as exc:
            self._emit(identity, protocol.error_reply(message.id, protocol.BAD_INPUT, str(exc)))
            return
        except sched.JobError as exc:
            self._emit(identity, protocol.error_reply(message.id, exc.code, exc.message))
            return

        def run(job: sched.Job) -> dict[str, Any]:  # on a worker thread, one job per session at once
            live = self._perform_session(key, fields)
            start, audio = live.push(notes, parts, releases, fields["position_ticks"], resolution,
                                     fields["qpm"], fields["block_samples"], fields.get("programs"))
            self._keep_session(key, live)
            job.send(protocol.AUDIO, [audio], seq=job.next_seq(), start_sample=start,
                     sample_rate_hz=live.sample_rate_hz)
            return {"notes": len(notes), "releases": len(releases),
                    "position_ticks": fields["position_ticks"]}

        self._submit(identity, message, run, sched.LIVE, serial_key=key, session=session)

    def _perform_session(self, key: tuple[bytes, str], fields: dict[str, Any]) -> LivePerformer:
        live = self._existing_session(key, fields, LivePerformer)
        if live is not None:
            if live.sample_rate_hz != fields["sample_rate_hz"]:
                raise sched.JobError(protocol.BAD_INPUT, f"session {key[1]!r} renders at "
                                     f"{live.sample_rate_hz} Hz, this block asks for "
                                     f"{fields['sample_rate_hz']}; "
                                     "keep one rate per session or send reset: true")
            return live
        return LivePerformer(self._synths.new(fields["sample_rate_hz"]), fields.get("programs", []))

    def _existing_session(self, key: tuple[bytes, str], fields: dict[str, Any], kind: type):
        """The session's LiveArranger or LivePerformer, None if it is new or reset; a session of the
        other task is refused."""
        with self._sessions_lock:
            found = None if fields.get("reset") else self._sessions.get(key)
            if found is not None and kind is LiveArranger and isinstance(found[0], kind):
                self._in_use.add(id(found[0]))  # until _keep_session or _done_with: never evicted meanwhile
        if found is None:
            return None
        if not isinstance(found[0], kind):
            task, other = ("perform", "arrange") if kind is LivePerformer else ("arrange", "perform")
            raise sched.JobError(protocol.BAD_INPUT, f"session {key[1]!r} is a live {other} session; "
                                 f"use another session name for task {task}")
        return found[0]

    def _done_with(self, live: LiveArranger | LivePerformer) -> None:
        with self._sessions_lock:
            self._in_use.discard(id(live))

    def _keep_session(self, key: tuple[bytes, str], live: LiveArranger | LivePerformer) -> None:
        with self._sessions_lock:
            self._in_use.discard(id(live))
            known = self._sessions.get(key)
            self._sessions[key] = (live, time.monotonic())
            if known is None or known[0] is not live:  # a new session: only then can one be too many
                self._evict_sessions(key[0])

    def _evict_sessions(self, identity: bytes) -> None:
        """Keep a client's MAX_SESSIONS_PER_CLIENT most recently used sessions, and of those
        MAX_PERFORM_SESSIONS_PER_CLIENT perform ones (under the lock): a DAW that opens a session
        per playback would otherwise grow the engine without bound."""
        mine = sorted(((used, k) for k, (_, used) in self._sessions.items() if k[0] == identity),
                      reverse=True)
        performers = [k for _, k in mine if isinstance(self._sessions[k][0], LivePerformer)]
        evict = [k for _, k in mine[MAX_SESSIONS_PER_CLIENT:]] + performers[MAX_PERFORM_SESSIONS_PER_CLIENT:]
        for k in dict.fromkeys(evict):
            live = self._sessions[k][0]
            if id(live) in self._in_use:
                continue  # a job is using it: the next new session evicts it
            del self._sessions[k]  # a performer's synth is freed with it, once no job uses it
            spares = self._spare_arrangers[live.model_name] if isinstance(live, LiveArranger) else None
            if spares is not None and len(spares) < SPARE_ARRANGERS:
                spares.append(live)
            log.debug("event=session_evicted peer=%s session=%s", identity.hex(), k[1])

    def _live_session(self, key: tuple[bytes, str], message: protocol.Message,
                      resolution: int) -> LiveArranger:
        fields = message.fields
        live = self._existing_session(key, fields, LiveArranger)
        if live is not None:
            if live.resolution != resolution:
                self._done_with(live)
                raise sched.JobError(protocol.BAD_INPUT, f"session {key[1]!r} runs at resolution "
                                     f"{live.resolution}, this block says {resolution}; keep one "
                                     "resolution per session or send reset: true")
            return live
        if "ensemble" not in fields:
            raise sched.JobError(protocol.BAD_INPUT, f"session {key[1]!r} is new (or was reset), so its "
                                 "first live_notes must name the ensemble, e.g. ensemble: satb")
        model = self._find_model(message, fields["ensemble"], "online")
        with self._sessions_lock:
            spares = self._spare_arrangers.get(model.name)
            spare = spares.pop() if spares else None
        try:
            if spare is None:
                return LiveArranger(model, resolution, self._options(model, message))
            spare.reset(resolution, self._options(model, message))
            return spare
        except ArrangeInputError as exc:
            raise sched.JobError(protocol.BAD_INPUT, str(exc)) from None
