"""Tasks are units: a job added as one Task subclass (no edit to engine/server.py) is served,
checked and reported in `welcome`'s capabilities, and the built-in tasks come from the registry."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from bridge import protocol as P
from bridge.client import Client, EngineError
from bridge.score import make_notes
from engine.registry import Registry
from engine.scheduler import Job, JobError
from engine.server import EngineServer
from engine.tasks import Prepared, Task, builtin_tasks
from tests.engine.test_server import free_port

ECHO = "echo_transpose"  # a request type the protocol does not own
P.define_request(ECHO, P.Schema((P.FieldSpec("semitones", "int", required=True),),
                                (P.FrameSpec("notes", "notes", 1),)))


class EchoTranspose(Task):
    """The tiny task: sends the notes back transposed."""

    request = ECHO

    def prepare(self, identity: bytes, message: P.Message) -> Prepared:
        shift, notes = message.fields["semitones"], message.frame("notes").copy()
        if not -24 <= shift <= 24:
            raise JobError(P.BAD_INPUT, f"semitones must be -24..24, got {shift}")

        def run(job: Job) -> dict:
            notes["pitch"] = notes["pitch"].astype(int) + shift
            job.send(P.NOTES, [notes], seq=job.next_seq())
            return {"notes": len(notes)}

        return Prepared(run)


P.define_request("broken_task", P.Schema())


class Broken(Task):
    request = "broken_task"

    def unavailable(self) -> str:
        return "this engine cannot run broken_task: it is a test of refusals"


@pytest.fixture(scope="module")
def engine():
    server = EngineServer(f"tcp://127.0.0.1:{free_port()}", Registry(),
                          tasks=[*builtin_tasks(), EchoTranspose, Broken])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.stop()
    thread.join(10)


def test_builtin_tasks_serve_the_protocols_jobs():
    assert {t.request for t in builtin_tasks()} == {P.ARRANGE, P.LIVE_NOTES, P.COMPOSE, P.PERFORM,
                                                    P.LIVE_PERFORM}


def test_a_task_added_from_outside_is_served_and_reported(engine):
    notes = make_notes([0, 24], [60, 64], 24)
    with Client(engine.endpoint, timeout_s=10.0) as c:
        assert ECHO in c.hello()["capabilities"]
        assert "broken_task" not in c.hello()["capabilities"]
        replies = list(c.stream(ECHO, [notes], semitones=5))
        assert [r.type for r in replies] == [P.ACCEPTED, P.NOTES, P.DONE]
        assert replies[1].frame("notes")["pitch"].tolist() == [65, 69]
        assert replies[2].fields["stats"]["notes"] == 2
        with pytest.raises(EngineError, match="semitones must be -24..24") as err:
            list(c.stream(ECHO, [notes], semitones=30))
        assert err.value.code == P.BAD_INPUT
        with pytest.raises(EngineError, match="test of refusals") as err:
            c.call("broken_task")
        assert err.value.code == P.NO_MODEL
        assert c.ping() > 0  # still serving


def test_a_request_type_the_protocol_owns_cannot_be_redefined():
    with pytest.raises(ValueError, match="already defined"):
        P.define_request(P.ARRANGE, P.Schema())
    P.define_request(ECHO, P.SCHEMAS[ECHO])  # the same definition again changes nothing


def test_arrangement_from_the_wire_equals_the_embedded_one(engine):
    """One path per job: the engine sends labels in request order; the client's Arrangement makes
    the same Score as the embedded arrange()."""
    from bridge.score import Score, Track
    from engine.tasks.arrange import Arrangement, arrange

    rng = np.random.default_rng(3)
    notes = make_notes(np.sort(rng.integers(0, 24 * 32, 120)), rng.integers(40, 80, 120), 12, 70)
    score = Score(24, [Track("Piano", 0, notes=notes)])
    model = engine.registry.find_arranger("satb", "offline")
    embedded = arrange(score, model)
    with Client(engine.endpoint, timeout_s=30.0) as c:
        labels, parts, _ = c.arrange(embedded.notes, "satb", "offline", 24)
    wired = Arrangement(embedded.notes, labels, parts, embedded.programs, score, model.name)
    assert np.array_equal(wired.labels, embedded.labels)
    for a, b in zip(wired.to_score().tracks, embedded.to_score().tracks):
        assert (a.name, a.program) == (b.name, b.program) and np.array_equal(a.notes, b.notes)
