"""The scheduler keeps no state for finished jobs: after any mix of jobs, cancels and lost clients,
its internal tables are empty again (a long-running engine must not grow with the jobs it has
served), and every job's stream ended with exactly one terminal reply. No model, no sockets."""
from __future__ import annotations

import threading
import time

from replies import Replies

from engine import scheduler as sched

WAIT_S = 10.0  # the tables empty within this


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {WAIT_S} s waiting for {what}")
        time.sleep(0.005)


def assert_empty(s: sched.Scheduler) -> None:
    wait_until(lambda: s.counts()["queued"] == 0 and s.counts()["running"] == 0, "all jobs to finish")
    with s._lock:
        assert s._jobs == {}
        assert dict(s._per_client) == {}
        assert s._busy_keys == set()
        assert dict(s._waiting) == {}
        assert all(entry[2].state == sched.FINISHED for entry in s._heap)


def test_tables_empty_after_many_jobs_of_many_clients():
    replies = Replies()
    s = sched.Scheduler(replies, workers=2, max_jobs_per_client=8)
    try:
        n = 0
        for client in range(40):  # a new identity each time, as reconnecting clients have
            for k in range(6):
                key = (bytes([client]), f"session-{k % 2}") if k % 3 else None
                s.submit(bytes([client]), n, "live_notes" if key else "arrange", lambda job: {},
                         sched.LIVE if key else sched.BATCH, serial_key=key)
                n += 1
        assert_empty(s)
        assert s.finished == n
        assert set(replies.terminals().values()) == {1} and len(replies.terminals()) == n
    finally:
        s.shutdown()


def test_cancelled_waiting_jobs_leave_nothing_behind_and_do_not_stall_the_session():
    # Blocks of one live session wait behind the running one; cancelling the waiting ones must not
    # strand the blocks after them, nor leave the session's queue behind.
    replies, release = Replies(), threading.Event()
    s = sched.Scheduler(replies, workers=2, max_jobs_per_client=8)
    key, ran = (b"daw", "take-1"), []

    def block(job: sched.Job) -> dict:
        release.wait(WAIT_S)
        ran.append(job.request_id)
        return {}

    try:
        jobs = [s.submit(b"daw", i, "live_notes", block, sched.LIVE, serial_key=key) for i in range(5)]
        wait_until(lambda: jobs[0].state == sched.RUNNING, "the first block to start")
        wait_until(lambda: len(s._waiting.get(key, ())) == 4, "the other blocks to wait behind it")
        assert s.cancel(b"daw", jobs[1].id, "c1") and s.cancel(b"daw", jobs[2].id, "c2")
        release.set()
        assert_empty(s)
        assert ran == [0, 3, 4]  # the rest of the session still runs, in order
        assert set(replies.terminals().values()) == {1} and len(replies.terminals()) == 7
    finally:
        release.set()
        s.shutdown()


def test_lost_client_with_queued_session_blocks_leaves_nothing_behind():
    replies, release = Replies(), threading.Event()
    s = sched.Scheduler(replies, workers=2, max_jobs_per_client=8)
    key = (b"gone", "take-1")

    def block(job: sched.Job) -> dict:
        release.wait(WAIT_S)
        job.check()
        return {}

    try:
        jobs = [s.submit(b"gone", i, "live_notes", block, sched.LIVE, serial_key=key) for i in range(4)]
        wait_until(lambda: jobs[0].state == sched.RUNNING, "the first block to start")
        wait_until(lambda: len(s._waiting.get(key, ())) == 3, "the other blocks to wait behind it")
        assert s.cancel_client(b"gone") == 4
        release.set()
        assert_empty(s)
        assert set(replies.terminals().values()) == {1} and len(replies.terminals()) == 4
    finally:
        release.set()
        s.shutdown()
