"""The engine's jobs, one file each: a task declares the request it serves (its schema lives in
bridge/protocol.py, the one wire-format module), the checks made on the poll thread before a job
is queued, the run on a worker thread and, for live work, its session type. The server dispatches
through the registered tasks and knows none of them by name.

Adding a job: write engine/tasks/NAME.py with a ``Task`` subclass and add its module to
``BUILTIN``; a task from elsewhere (a test, an extension) is passed to ``EngineServer(tasks=...)``
and defines its request type with ``bridge.protocol.define_request``.

Devices: each task says where its models run (``device_role``): ``batch`` work runs on the device
``serve --device`` chose (the GPU when there is one); ``live`` work (one chord, one block at a time)
on the device measured fastest for its model's step at start-up, which is the CPU unless the
accelerator wins (on an H200 the online arranger took 3.2-3.8 ms per chord against 0.75 ms on a
2-core CPU). See engine/devices.py.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bridge import protocol
from engine.scheduler import BATCH, LIVE, Job, JobError
from engine.sessions import SessionKindError, SessionStore

# modules whose Task subclasses every engine serves
BUILTIN = ("engine.tasks.arrange", "engine.tasks.live_arrange", "engine.tasks.compose",
           "engine.tasks.perform", "engine.tasks.live_perform")


@dataclass
class EngineContext:
    """What tasks share: the models, the live sessions, the devices and named shared resources
    (e.g. one SoundFont synthesiser factory for offline and live perform)."""

    registry: Any  # engine.registry.Registry
    sessions: SessionStore = field(default_factory=SessionStore)
    batch_device: str = "cpu"
    live_device: str = "cpu"  # engine/devices.py may move live work where it measured faster
    _shared: dict[str, Any] = field(default_factory=dict)

    def shared(self, name: str, make: Callable[[], Any]) -> Any:
        """One object per engine under ``name``, made on first use (poll thread or start-up)."""
        if name not in self._shared:
            self._shared[name] = make()
        return self._shared[name]

    def device_for(self, role: str) -> str:
        return self.live_device if role == "live" else self.batch_device


@dataclass
class Prepared:
    """A checked request, ready to queue: ``run`` goes to a worker thread and returns the `done`
    stats; jobs with the same ``serial_key`` run one at a time, in order."""

    run: Callable[[Job], dict[str, Any] | None]
    serial_key: Hashable | None = None
    accepted: dict[str, Any] = field(default_factory=dict)  # extra fields of the `accepted` reply


class Task:
    """One job type. Subclasses set ``request`` and implement ``prepare``."""

    request: ClassVar[str]  # the request type it serves, e.g. protocol.ARRANGE
    priority: ClassVar[int] = BATCH  # scheduler.LIVE jobs run before batch ones
    device_role: ClassVar[str] = "batch"  # "batch" or "live": see the module docstring

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    @property
    def schema(self) -> protocol.Schema:
        return protocol.SCHEMAS[self.request]

    @property
    def device(self) -> str:
        return self.ctx.device_for(self.device_role)

    def unavailable(self) -> str:
        """Empty if the task can run on this engine, else a sentence saying why not."""
        return ""

    def warm_up(self) -> None:
        """Pay first-call costs before serving (start-up, before the poll loop runs)."""

    def prepare(self, identity: bytes, message: protocol.Message) -> Prepared:
        """Check the request on the poll thread (raise JobError with a sentence) and return its run."""
        raise NotImplementedError


class LiveTask(Task):
    """A task with a session per (client, session name) in ``ctx.sessions``, run before batch
    work on the live device."""

    priority = LIVE
    device_role = "live"
    kind: ClassVar[str]  # the sessions it owns, e.g. "arrange"

    def checkout(self, key: tuple[bytes, str], fields: dict) -> Any | None:
        """The session's object (kept from eviction until kept or released), None if it is new
        or reset; a name taken by another task's session is a JobError."""
        try:
            return self.ctx.sessions.checkout(key, self.kind, fields.get("reset", False))
        except SessionKindError as exc:
            raise job_error(exc) from None


def builtin_tasks() -> list[type[Task]]:
    """The Task subclasses of the BUILTIN modules that serve a request, in module order."""
    found: list[type[Task]] = []
    for name in BUILTIN:
        module = importlib.import_module(name)
        found += [v for v in vars(module).values()
                  if isinstance(v, type) and issubclass(v, Task) and "request" in vars(v)
                  and v.__module__ == module.__name__]
    return found


def job_error(exc: ValueError, code: str = protocol.BAD_INPUT) -> JobError:
    """A user-input error of the job logic as the JobError the client gets."""
    return JobError(code, str(exc))
