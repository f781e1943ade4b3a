"""Live sessions: one object per (client, session name) that carries a live task's state from
block to block (a LiveArranger's LSTM state, a LivePerformer's synthesiser and clock).

Caching, eviction and spares live here; the live tasks say what a session is. Threads: jobs call
``checkout``/``keep``/``release`` on worker threads, the server calls ``drop_client`` on the poll
thread; everything runs under one lock. A session a job is using is never evicted meanwhile.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("engine.sessions")

MAX_SESSIONS_PER_CLIENT = 32  # live sessions kept per client; the least recently used go first
KIND_CAPS = {"perform": 4}  # of those, per kind: a live perform session holds a synth (~12 MB)
SPARES_PER_POOL = 8  # evicted sessions kept per pool to become new sessions without new memory

Key = tuple[bytes, str]  # (client identity, session name)


class SessionKindError(ValueError):
    """The session name is taken by a session of another task."""


@dataclass
class _Entry:
    live: Any
    kind: str  # the task that owns it, e.g. "arrange" or "perform"
    spare_pool: Hashable | None  # where it goes when evicted (None: it is dropped)
    used_s: float


class SessionStore:
    def __init__(self, max_per_client: int = MAX_SESSIONS_PER_CLIENT,
                 kind_caps: dict[str, int] | None = None, spares_per_pool: int = SPARES_PER_POOL) -> None:
        self.max_per_client = max_per_client
        self.kind_caps = dict(KIND_CAPS if kind_caps is None else kind_caps)
        self.spares_per_pool = spares_per_pool
        self._lock = threading.Lock()
        self._sessions: dict[Key, _Entry] = {}
        self._in_use: set[int] = set()  # ids of session objects a job holds now
        self._spares: dict[Hashable, list[Any]] = defaultdict(list)

    def checkout(self, key: Key, kind: str, reset: bool = False) -> Any | None:
        """The session's object for a job to use (kept from eviction until ``keep`` or
        ``release``), or None when the session is new or ``reset``. Raises SessionKindError when
        the name belongs to another task's session."""
        with self._lock:
            entry = None if reset else self._sessions.get(key)
            if entry is None:
                return None
            if entry.kind != kind:
                raise SessionKindError(f"session {key[1]!r} is a live {entry.kind} session; use another "
                                       f"session name for task {kind}")
            self._in_use.add(id(entry.live))
            return entry.live

    def release(self, live: Any) -> None:
        """A job is done with ``live`` without keeping it (it failed)."""
        with self._lock:
            self._in_use.discard(id(live))

    def keep(self, key: Key, live: Any, kind: str, spare_pool: Hashable | None = None) -> None:
        """Store ``live`` as the session's object (it was used just now); a new session may evict
        the client's least recently used ones."""
        with self._lock:
            self._in_use.discard(id(live))
            known = self._sessions.get(key)
            self._sessions[key] = _Entry(live, kind, spare_pool, time.monotonic())
            if known is None or known.live is not live:  # a new session: only then can one be too many
                self._evict(key[0])

    def take_spare(self, pool: Hashable) -> Any | None:
        """An evicted session object of ``pool`` to reset into a new session, if one is kept."""
        with self._lock:
            spares = self._spares.get(pool)
            return spares.pop() if spares else None

    def drop_client(self, identity: bytes) -> int:
        """Forget a client's sessions (it is gone); returns how many."""
        with self._lock:
            dropped = [k for k in self._sessions if k[0] == identity]
            for k in dropped:
                del self._sessions[k]
        return len(dropped)

    def count(self, identity: bytes | None = None) -> int:
        with self._lock:
            return sum(identity is None or k[0] == identity for k in self._sessions)

    def _evict(self, identity: bytes) -> None:
        """Keep the client's max_per_client most recently used sessions, and of each capped kind its
        cap (under the lock): a DAW that opens a session per playback would otherwise grow the
        engine without bound."""
        mine = sorted(((e.used_s, k) for k, e in self._sessions.items() if k[0] == identity), reverse=True)
        evict = [k for _, k in mine[self.max_per_client:]]
        for kind, cap in self.kind_caps.items():
            evict += [k for _, k in mine if self._sessions[k].kind == kind][cap:]
        for k in dict.fromkeys(evict):
            entry = self._sessions[k]
            if id(entry.live) in self._in_use:
                continue  # a job is using it: the next new session evicts it
            del self._sessions[k]  # what it holds is freed with it, once no job uses it
            if entry.spare_pool is not None and len(self._spares[entry.spare_pool]) < self.spares_per_pool:
                self._spares[entry.spare_pool].append(entry.live)
            log.debug("event=session_evicted peer=%s session=%s", identity.hex(), k[1])
