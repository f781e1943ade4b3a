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
import logging
import os
import signal
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import zmq

import bridge
from bridge import protocol
from engine import scheduler as sched
from engine.endpoints import KEYS_HELP, bind_problem, check_bind
from engine.registry import ModelEntry, Registry
from engine.sessions import SessionStore
from engine.tasks import EngineContext, Task, builtin_tasks

log = logging.getLogger("engine.server")
MODEL_KEYS = ("name", "version", "task", "ensemble", "mode", "causality", "resolution", "instruments")


# glibc malloc arenas for the engine. With per-thread arenas (glibc's default, 8 per core) memory one
# thread allocates and another frees was seldom reused before FluidSynth synthesisers were made and
# freed on one keeper thread (engine/tasks/perform.SynthFactory); one arena kept the soak flat but
# cost work. Measured after the keeper, three engines soaked side by side for 20 minutes under the
# same load: 1, 4 and 16 arenas all flat (0.04-0.05 MB/min over the second half), 4 and 16 doing 12 %
# more work than 1; jobs/s within noise of each other (benchmarks/RESULTS.md, "Malloc arenas, side
# by side"). Four keeps the worst case bounded and the work of the default.
MALLOC_ARENAS = 4


def limit_malloc_arenas() -> bool:
    """Cap glibc's malloc arenas at MALLOC_ARENAS (unless $MALLOC_ARENA_MAX says otherwise); call it
    before threads start. False where this is not glibc."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-8, MALLOC_ARENAS))  # M_ARENA_MAX
    except (OSError, AttributeError):
        return False


def model_summary(entry: ModelEntry) -> dict[str, Any]:
    summary = {k: entry.metadata[k] for k in MODEL_KEYS if k in entry.metadata}
    if "parts" in entry.metadata:
        summary["parts"] = [p["name"] for p in entry.metadata["parts"]]
    return summary


def _single_torch_thread() -> None:
    # Called on each worker thread: two intra-op threads per job run many times slower on a busy
    # 2-core machine; parallelism comes from separate jobs instead.
    import torch

    torch.set_num_threads(1)


class EngineServer:
    def __init__(self, endpoint: str, registry: Registry, workers: int = 2,
                 limits: protocol.Limits = protocol.DEFAULT_LIMITS, keys_dir: str | Path | None = None,
                 heartbeat_interval_s: float = 1.0, heartbeat_timeout_s: float = 5.0,
                 peer_idle_s: float = 600.0, tasks: list[type[Task]] | None = None,
                 device: str = "cpu", live_device: str = "cpu") -> None:
        endpoint = check_bind(endpoint, keys_dir)
        self.endpoint, self.registry, self.limits = endpoint, registry.load_all(), limits
        self.keys_dir = Path(keys_dir) if keys_dir else None
        self.heartbeat_interval_s, self.heartbeat_timeout_s = heartbeat_interval_s, heartbeat_timeout_s
        self.peer_idle_s = peer_idle_s
        self.started_s = time.monotonic()
        self._stop = threading.Event()
        self._peers: dict[bytes, float] = {}  # identity -> last time it sent anything (monotonic s)
        self._backlog: dict[bytes, deque[list]] = {}  # replies waiting while a peer's pipe is full
        self.sessions = SessionStore()
        self.context = EngineContext(registry, self.sessions, device, live_device)
        # request type -> the task serving it; `capabilities` are the ones that can run here
        self.tasks: dict[str, Task] = {}
        for task_type in builtin_tasks() if tasks is None else tasks:
            task = task_type(self.context)
            self.tasks[task.request] = task
        self.served = tuple(name for name, task in self.tasks.items() if not task.unavailable())
        self._builtin = {protocol.HELLO: self._on_hello, protocol.PING: self._on_ping,
                         protocol.STATUS: self._on_status, protocol.CANCEL: self._on_cancel}
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
        try:
            router.bind(self.endpoint)
        except zmq.ZMQError as exc:
            router.close(linger=0)
            raise ValueError(bind_problem(self.endpoint, exc)) from None
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
        for task in self.tasks.values():
            task.warm_up()

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
        dropped = self.sessions.drop_client(identity)
        if known or cancelled or dropped:
            log.info("event=peer_gone peer=%s why=%s jobs_cancelled=%d sessions_dropped=%d",
                     identity.hex(), why, cancelled, dropped)

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
            handler = self._builtin.get(message.type)
            if handler is not None:
                handler(identity, message)
            else:
                self._on_task(identity, message)
        except Exception as exc:  # one bad handler call must not stop the engine
            log.exception("event=handler_failed peer=%s type=%s", identity.hex(), message.type)
            self._emit(identity, protocol.error_reply(message.id, protocol.INTERNAL,
                                                      f"the engine failed on this {message.type} "
                                                      f"({type(exc).__name__}); the engine log has details"))

    def _on_task(self, identity: bytes, message: protocol.Message) -> None:
        task = self.tasks.get(message.type)
        if task is None or message.type not in self.served:
            self._refuse_type(identity, message, task)
            return
        try:
            prepared = task.prepare(identity, message)
        except sched.JobError as exc:
            self._emit(identity, protocol.error_reply(message.id, exc.code, exc.message))
            return
        self._submit(identity, message, prepared.run, task.priority, prepared.serial_key, **prepared.accepted)

    def _refuse_type(self, identity: bytes, message: protocol.Message, task: Task | None) -> None:
        if task is not None:
            code, text = protocol.NO_MODEL, task.unavailable()
        elif message.type in protocol.REPLIES:
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
        # logged before the reply, so whoever reads the log after `accepted` finds the line; a live
        # session sends a job per audio block: those lines are for debugging, not the log
        log.log(logging.DEBUG if priority == sched.LIVE else logging.INFO,
                "event=job_queued peer=%s job=%s type=%s", identity.hex(), job.id, message.type)
        # sent before any reply of the job: those reach this thread through the outbox, later
        self._reply(identity, protocol.ACCEPTED, message, job=job.id, **accepted)
