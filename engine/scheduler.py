"""The engine's job scheduler: worker threads, priorities, job ids, cancellation, per-client limits.

The poll loop (engine/server.py) owns the socket and calls ``submit``/``cancel``/``cancel_client``;
worker threads run jobs and hand every reply to ``emit``, which must be safe to call from any thread
(the server forwards it to the poll thread). A job's stream always ends with exactly one terminal
reply: ``done`` when its function returns, ``error`` ``cancelled`` when it was cancelled, or an
``error`` with the code of the ``JobError`` it raised (``internal`` for anything else, logged).

Live jobs (priority ``LIVE``) run before batch ones; within a priority, jobs run in arrival order.
Jobs that share a ``serial_key`` (one live session) run one at a time in arrival order, so the
session's model state sees its blocks in the order the DAW sent them.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from bridge import protocol

log = logging.getLogger("engine.scheduler")

LIVE, BATCH = 0, 1  # lower runs first
QUEUED, RUNNING, FINISHED = "queued", "running", "finished"

Emit = Callable[[bytes, protocol.Message], None]


class Cancelled(Exception):
    """Raised inside a job by ``Job.check`` once the job has been cancelled."""


class JobError(Exception):
    """A job failed for a reason the client can act on; ``code`` is one of protocol.ERROR_CODES."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class TooManyJobs(Exception):
    """The client already has its limit of queued or running jobs."""


@dataclass(eq=False)
class Job:
    id: int
    client: bytes  # the ROUTER identity of the client that asked
    request_id: protocol.RequestId
    kind: str  # the request type, e.g. "arrange"
    run: Callable[[Job], dict[str, Any] | None]  # returns the `done` stats
    priority: int = BATCH
    serial_key: Hashable | None = None
    state: str = QUEUED
    created_s: float = field(default_factory=time.monotonic)
    started_s: float | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    cancel_waiters: list[protocol.RequestId] = field(default_factory=list)  # `cancel` request ids
    emit: Emit | None = None
    _seq: int = 0

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def check(self) -> None:
        """Called by the job between chunks (on its worker thread): stop here if cancelled."""
        if self.cancel_event.is_set():
            raise Cancelled()

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq - 1

    def send(self, message_type: str, frames: list | tuple = (), **fields: Any) -> None:
        """Send one reply of this job's stream (called on its worker thread)."""
        self.emit(self.client, protocol.make_reply(message_type, self.request_id, frames,
                                                   job=self.id, **fields))

    def describe(self) -> dict[str, Any]:
        now = time.monotonic()
        return {"job": self.id, "type": self.kind, "state": self.state, "request": self.request_id,
                "priority": "live" if self.priority == LIVE else "batch",
                "age_s": round(now - self.created_s, 3),
                "running_s": round(now - self.started_s, 3) if self.started_s else 0.0}


class Scheduler:
    def __init__(self, emit: Emit, workers: int = 2, max_jobs_per_client: int = 8,
                 on_worker_start: Callable[[], None] | None = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self._emit = emit
        self.max_jobs_per_client = max_jobs_per_client
        self._lock = threading.Condition()
        self._heap: list[tuple[int, int, Job]] = []
        self._order = itertools.count()
        self._ids = itertools.count(1)
        self._jobs: dict[int, Job] = {}  # queued or running
        self._per_client: dict[bytes, int] = defaultdict(int)
        self._busy_keys: set[Hashable] = set()
        self._waiting: dict[Hashable, deque[tuple[int, int, Job]]] = defaultdict(deque)
        self._stopping = False
        self.finished = 0
        self._on_worker_start = on_worker_start
        self._threads = [threading.Thread(target=self._work, name=f"worker-{i}", daemon=True)
                         for i in range(workers)]
        for t in self._threads:
            t.start()

    # --- called on the poll thread -------------------------------------------------------------
    def submit(self, client: bytes, request_id: protocol.RequestId, kind: str,
               run: Callable[[Job], dict[str, Any] | None], priority: int = BATCH,
               serial_key: Hashable | None = None) -> Job:
        """Queue a job; raises TooManyJobs when the client is at its limit. The caller sends
        `accepted` before the job can send anything (replies reach the poll thread in order)."""
        with self._lock:
            if self._per_client[client] >= self.max_jobs_per_client:
                raise TooManyJobs(f"this client already has {self._per_client[client]} jobs queued or "
                                  f"running; the limit is {self.max_jobs_per_client}; wait for one to "
                                  "finish or cancel one")
            job = Job(next(self._ids), client, request_id, kind, run, priority, serial_key,
                      emit=self._emit)
            self._jobs[job.id] = job
            self._per_client[client] += 1
            heapq.heappush(self._heap, (priority, next(self._order), job))
            self._lock.notify()
        return job

    def cancel(self, client: bytes, job_id: protocol.RequestId,
               cancel_request_id: protocol.RequestId | None) -> bool:
        """Cancel a job of this client; False if it has no such job. The cancel request gets `done`
        once the job has stopped (now if it was still queued)."""
        with self._lock:
            job = self._jobs.get(job_id) if isinstance(job_id, int) else None
            if job is None or job.client != client:
                return False
            if cancel_request_id is not None:
                job.cancel_waiters.append(cancel_request_id)
            job.cancel_event.set()
            if job.state != QUEUED:
                return True  # its worker answers when the job reaches its next check
            self._finish_locked(job)
        self._end_cancelled(job)
        return True

    def cancel_client(self, client: bytes) -> int:
        """Cancel every job of a client that went away; returns how many."""
        with self._lock:
            jobs = [j for j in self._jobs.values() if j.client == client]
        for job in jobs:
            self.cancel(client, job.id, None)
        return len(jobs)

    def jobs_of(self, client: bytes) -> list[Job]:
        with self._lock:
            return [j for j in self._jobs.values() if j.client == client]

    def counts(self) -> dict[str, int]:
        with self._lock:
            running = sum(j.state == RUNNING for j in self._jobs.values())
            return {"queued": len(self._jobs) - running, "running": running, "finished": self.finished}

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Cancel everything and stop the workers (called on the poll thread at exit)."""
        with self._lock:
            self._stopping = True
            jobs = list(self._jobs.values())
        for job in jobs:
            self.cancel(job.client, job.id, None)
        with self._lock:
            self._lock.notify_all()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    # --- worker threads ------------------------------------------------------------------------
    def _finish_locked(self, job: Job) -> None:
        job.state = FINISHED
        self._jobs.pop(job.id, None)
        self._per_client[job.client] -= 1
        if self._per_client[job.client] <= 0:
            del self._per_client[job.client]
        self.finished += 1

    def _end_cancelled(self, job: Job) -> None:
        self._safe_emit(job, protocol.error_reply(job.request_id, protocol.CANCELLED,
                                                  f"job {job.id} ({job.kind}) was cancelled before "
                                                  "it finished", job=job.id))
        for rid in job.cancel_waiters:
            self._safe_emit(job, protocol.make_reply(protocol.DONE, rid, job=job.id,
                                                     stats={"cancelled": True}))

    def _safe_emit(self, job: Job, message: protocol.Message) -> None:
        try:
            self._emit(job.client, message)
        except Exception:  # the socket may be closing at shutdown; never kill a worker for it
            log.exception("event=emit_failed job=%s", job.id)

    def _next(self) -> Job | None:
        with self._lock:
            while True:
                if self._stopping:
                    return None
                while self._heap:
                    entry = heapq.heappop(self._heap)
                    job = entry[2]
                    if job.state != QUEUED:  # cancelled while queued
                        if job.serial_key is not None and job.serial_key not in self._busy_keys:
                            self._promote_locked(job.serial_key)  # it held its session's turn
                        continue
                    if job.serial_key is not None and job.serial_key in self._busy_keys:
                        self._waiting[job.serial_key].append(entry)
                        continue
                    if job.serial_key is not None:
                        self._busy_keys.add(job.serial_key)
                    job.state, job.started_s = RUNNING, time.monotonic()
                    return job
                self._lock.wait()

    def _release_key(self, job: Job) -> None:
        with self._lock:
            if job.serial_key is None:
                return
            self._busy_keys.discard(job.serial_key)
            self._promote_locked(job.serial_key)

    def _promote_locked(self, key: Hashable) -> None:
        # Hands the key's turn to its next waiting job. Jobs cancelled while they waited are
        # dropped here: skipping one without passing the turn on would strand the jobs behind it
        # (and keep them, with their input frames, in _waiting for the engine's lifetime).
        waiting = self._waiting.get(key)
        while waiting and waiting[0][2].state != QUEUED:
            waiting.popleft()
        if waiting:
            heapq.heappush(self._heap, waiting.popleft())  # keeps its place in line
            self._lock.notify()
        if not waiting:
            self._waiting.pop(key, None)

    def _work(self) -> None:
        if self._on_worker_start is not None:
            self._on_worker_start()
        while (job := self._next()) is not None:
            self._run(job)

    def _run(self, job: Job) -> None:
        started = time.monotonic()
        terminal: protocol.Message | None = None
        try:
            job.check()
            stats = job.run(job) or {}
            stats.setdefault("seconds", round(time.monotonic() - started, 4))
            terminal = protocol.make_reply(protocol.DONE, job.request_id, job=job.id, stats=stats)
        except Cancelled:
            pass
        except JobError as exc:
            terminal = protocol.error_reply(job.request_id, exc.code, exc.message, job=job.id)
        except Exception as exc:  # a bug in a task runner must not kill the worker
            log.exception("event=job_failed job=%s type=%s", job.id, job.kind)
            terminal = protocol.error_reply(job.request_id, protocol.INTERNAL,
                                            f"the engine failed on job {job.id} ({type(exc).__name__}: "
                                            f"{str(exc)[:200]}); the engine log has details", job=job.id)
        with self._lock:
            self._finish_locked(job)
        if terminal is None:
            self._end_cancelled(job)
        else:
            self._safe_emit(job, terminal)
            for rid in job.cancel_waiters:  # cancelled too late: it finished, so the cancel is done
                self._safe_emit(job, protocol.make_reply(protocol.DONE, rid, job=job.id,
                                                         stats={"cancelled": False}))
        self._release_key(job)
        log.log(logging.DEBUG if job.priority == LIVE else logging.INFO,  # live: one per audio block
                "event=job_end job=%s type=%s outcome=%s seconds=%.4f", job.id, job.kind,
                 "cancelled" if terminal is None else terminal.type, time.monotonic() - started)
