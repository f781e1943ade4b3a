"""The job scheduler on its own: real worker threads, no sockets. Priorities, serial sessions,
per-client limits and cancellation, observed through the replies the jobs emit."""
from __future__ import annotations

import threading

import pytest
from replies import WAIT_S, Replies

from bridge import protocol as P
from engine import scheduler as sched


@pytest.fixture
def one_worker():
    replies = Replies()
    s = sched.Scheduler(replies, workers=1, max_jobs_per_client=16)
    yield s, replies
    s.shutdown()


def blocker(started: threading.Event, release: threading.Event):
    def run(job: sched.Job) -> dict:
        started.set()
        assert release.wait(WAIT_S)
        return {}
    return run


def test_live_jobs_overtake_queued_batch_jobs(one_worker):
    s, replies = one_worker
    started, release = threading.Event(), threading.Event()
    s.submit(b"a", "long", "arrange", blocker(started, release), sched.BATCH)
    assert started.wait(WAIT_S)  # the only worker is busy
    ran: list[str] = []
    for rid in ("b1", "b2", "b3"):
        s.submit(b"a", rid, "arrange", lambda job, rid=rid: ran.append(rid) or {}, sched.BATCH)
    for rid in ("l1", "l2"):
        s.submit(b"b", rid, "live_notes", lambda job, rid=rid: ran.append(rid) or {}, sched.LIVE)
    release.set()
    replies.wait_for(lambda got: len([m for _, m in got if m.type == P.DONE]) == 6)
    assert ran == ["l1", "l2", "b1", "b2", "b3"]  # live first, each priority in arrival order
    assert replies.terminal_order() == ["long", "l1", "l2", "b1", "b2", "b3"]


def test_a_session_runs_its_blocks_one_at_a_time_in_order():
    replies = Replies()
    s = sched.Scheduler(replies, workers=2, max_jobs_per_client=32)
    try:
        inside, ran, lock = [0], [], threading.Lock()

        def block(job: sched.Job, i: int) -> dict:
            with lock:
                inside[0] += 1
                assert inside[0] == 1, "two blocks of one session ran at once"
            ran.append(i)
            with lock:
                inside[0] -= 1
            return {}

        for i in range(20):
            s.submit(b"daw", i, "live_notes", lambda job, i=i: block(job, i), sched.LIVE, serial_key="track")
        replies.wait_for(lambda got: len([m for _, m in got if m.type in (P.DONE, P.ERROR)]) == 20)
        assert ran == list(range(20))
        assert all(m.type == P.DONE for _, m in replies.got)
    finally:
        s.shutdown()


def test_job_errors_become_error_replies_and_the_worker_survives(one_worker):
    s, replies = one_worker

    def bad_input(job):
        raise sched.JobError(P.BAD_INPUT, "the notes frame is empty")

    def bug(job):
        raise KeyError("oops")

    s.submit(b"a", 1, "arrange", bad_input)
    s.submit(b"a", 2, "arrange", bug)
    s.submit(b"a", 3, "arrange", lambda job: {"fine": True})
    replies.wait_for(lambda got: len(got) == 3)
    codes = {m.id: (m.type, m.fields.get("code")) for _, m in replies.got}
    assert codes == {1: (P.ERROR, P.BAD_INPUT), 2: (P.ERROR, P.INTERNAL), 3: (P.DONE, None)}
    assert "KeyError" in next(m for _, m in replies.got if m.id == 2).fields["message"]


def test_the_per_client_limit_counts_queued_and_running_jobs(one_worker):
    s, replies = one_worker
    s.max_jobs_per_client = 2
    started, release = threading.Event(), threading.Event()
    s.submit(b"a", 1, "arrange", blocker(started, release))
    s.submit(b"a", 2, "arrange", lambda job: {})
    with pytest.raises(sched.TooManyJobs, match="limit is 2"):
        s.submit(b"a", 3, "arrange", lambda job: {})
    s.submit(b"b", 4, "arrange", lambda job: {})  # another client is not affected
    release.set()
    replies.wait_for(lambda got: len(got) == 3)
    s.submit(b"a", 5, "arrange", lambda job: {})  # finished jobs free the slots
    replies.wait_for(lambda got: len(got) == 4)


def test_cancelling_a_queued_job_answers_at_once_and_a_running_one_at_its_next_check(one_worker):
    s, replies = one_worker
    started, release = threading.Event(), threading.Event()

    def chunks(job: sched.Job) -> dict:
        started.set()
        for _ in range(1000):
            job.check()
            release.wait(0.01)
        return {}

    running = s.submit(b"a", "run", "perform", chunks)
    queued = s.submit(b"a", "queued", "perform", lambda job: {})
    assert started.wait(WAIT_S)
    assert s.cancel(b"a", queued.id, "c1") and s.cancel(b"a", running.id, "c2")
    assert not s.cancel(b"other", running.id, "c3")  # only its own client may cancel it
    replies.wait_for(lambda got: {"run", "queued", "c1", "c2"} <= {m.id for _, m in got})
    by_id = {m.id: m for _, m in replies.got}
    assert by_id["run"].fields["code"] == P.CANCELLED and by_id["queued"].fields["code"] == P.CANCELLED
    assert by_id["c1"].type == P.DONE and by_id["c2"].fields["stats"] == {"cancelled": True}
    assert s.counts()["queued"] == 0 and s.counts()["running"] == 0
