"""The scheduler tests' emit callback: records (client, message) from any thread."""
from __future__ import annotations

import threading
from collections import Counter

from bridge import protocol as P

WAIT_S = 30.0


class Replies:
    def __init__(self) -> None:
        self.got: list[tuple[bytes, P.Message]] = []
        self._cond = threading.Condition()

    def __call__(self, client: bytes, message: P.Message) -> None:
        with self._cond:
            self.got.append((client, message))
            self._cond.notify_all()

    def wait_for(self, predicate) -> None:
        """Block until predicate(got) holds (at most WAIT_S)."""
        with self._cond:
            assert self._cond.wait_for(lambda: predicate(self.got), WAIT_S), self.got

    def terminal_order(self) -> list:
        """Request ids in the order their terminal replies came."""
        with self._cond:
            return [m.id for _, m in self.got if m.type in (P.DONE, P.ERROR)]

    def terminals(self) -> Counter:
        """How many terminal replies each (client, request id) got."""
        with self._cond:
            return Counter((c, m.id) for c, m in self.got if m.type in (P.DONE, P.ERROR))
