"""Composing served: the `compose` task on a real engine process and real sockets (a reply per bar,
cancel, bad requests answered while the engine keeps serving), `Client.compose`, and the verbs
compose / accompany / continue / infill, embedded and `--engine`, with the shipped composer: the same
seed gives the same file both ways, given notes come out note for note, bad input is one sentence,
exit 2 and nothing written."""
from __future__ import annotations

import time

import numpy as np
import pytest

from bridge import protocol as P
from bridge.client import Client
from bridge.midi import read_midi, write_midi
from bridge.score import METER_DTYPE, Score, Track, make_notes
from engine.cli import main
from tests.engine.test_server import Engine

RECV_S = 60.0


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    e = Engine(tmp_path_factory.mktemp("engine")).wait_ready()
    yield e
    e.stop()


@pytest.fixture
def client(engine):
    with Client(engine.endpoint, timeout_s=RECV_S) as c:
        yield c


def cli(*args: str) -> int:
    return main([*args, "--no-progress"])


def melody_file(path, resolution: int = 480) -> Score:
    """A two-bar soprano line at 480 ticks per quarter, off the model's grid in places."""
    q = resolution
    notes = make_notes([0, q, 2 * q, 3 * q + 7, 4 * q, 6 * q], [72, 74, 76, 77, 79, 72],
                       [q, q, q, q - 7, 2 * q, 2 * q], [90, 80, 70, 60, 100, 50])
    score = Score(resolution, [Track("Flute", 73, notes=notes)], meters=np.array([(0, 4, 4)], METER_DTYPE))
    write_midi(score, path)
    return read_midi(path)


# --- the task over the socket -------------------------------------------------------------------

@pytest.mark.timeout(300)
def test_bars_stream_one_reply_each_then_done(client):
    progress = []
    stream = client.compose(3, chords="C G7 C", key="C", seed=4, resolution=96,
                            on_progress=lambda f, m: progress.append(f))
    bars = list(stream)
    assert [b.index for b in bars] == [0, 1, 2]
    assert bars[0].instruments == ["soprano", "alto", "tenor", "bass"]
    assert all(len(b.notes) == len(b.track) and len(b.notes) > 0 for b in bars)
    for b in bars:  # at 96 ticks per quarter: each bar's notes start inside it
        assert ((b.notes["time"] >= b.index * 384) & (b.notes["time"] < (b.index + 1) * 384)).all()
    assert progress == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert stream.stats["model"] == "composer-satb" and stream.stats["bars"] == 3
    assert stream.stats["instruments"] == ["soprano", "alto", "tenor", "bass"]
    assert len(stream.stats["programs"]) == 4
    again = list(client.compose(3, chords="C G7 C", key="C", seed=4, resolution=96))
    assert all((a.notes == b.notes).all() and (a.track == b.track).all() for a, b in zip(bars, again))


@pytest.mark.timeout(300)
def test_given_notes_are_not_sent_back_and_condition_the_rest(client):
    melody = make_notes([0, 24, 48, 72], [72, 74, 76, 77], 24, 90)
    bars = list(client.compose(2, given={"soprano": melody}, seed=1))
    names = bars[0].instruments
    assert all(names[t] != "soprano" for b in bars for t in b.track)
    assert {names[t] for b in bars for t in b.track} == {"alto", "tenor", "bass"}


@pytest.mark.timeout(300)
def test_cancel_stops_the_job_before_it_ends(engine, client):
    import zmq

    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(engine.endpoint)
    try:
        sock.send_multipart(P.encode(P.make_request(P.COMPOSE, "long", bars=256, seed=1)))
        got, cancelled_at = [], None
        deadline = time.monotonic() + RECV_S
        while time.monotonic() < deadline:
            assert sock.poll(int(RECV_S * 1000)), "no reply"
            m = P.decode(sock.recv_multipart())
            got.append(m)
            if m.type == P.NOTES and cancelled_at is None:
                sock.send_multipart(P.encode(P.make_request(P.CANCEL, "stop", job=m.job)))
                cancelled_at = m.fields["seq"]
            if m.id == "long" and m.type in (P.DONE, P.ERROR):
                break
        end = got[-1]
        assert end.type == P.ERROR and end.fields["code"] == P.CANCELLED
        bars = [m for m in got if m.type == P.NOTES]
        assert len(bars) < 256 and cancelled_at is not None
    finally:
        sock.close(linger=0)
    assert client.ping() >= 0


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("request_fields", "code", "words"), [
    ({"bars": 4, "chords": "C Q7"}, P.BAD_INPUT, "unknown chord symbol 'Q7'"),
    ({"bars": 4, "instruments": ["kazoo"]}, P.BAD_INPUT, "instrument 'kazoo' is not one this model writes"),
    ({"bars": 0}, P.BAD_FIELD, "compose.bars must be >0"),
    ({"bars": 100_000}, P.BAD_INPUT, "bars must be 1..256"),
    ({"bars": 4, "infill": {"alto": [2, 9]}, "parts": ["soprano"]}, P.BAD_INPUT,
     "outside the request's 0..3"),
    ({"bars": 4, "infill": {"kazoo": [0, 1]}}, P.BAD_INPUT, "infill names 'kazoo'"),
    ({"bars": 4, "meter": [4]}, P.BAD_INPUT, "meter must be [numerator, denominator]"),
    ({"bars": 4, "parts": ["soprano"], "frames": "empty"}, P.BAD_INPUT, "the given notes are empty"),
    ({"bars": 1, "parts": ["soprano"], "frames": "late"}, P.BAD_INPUT, "run to bar 3, past the 1 bars"),
    ({"bars": 2, "parts": ["soprano"], "frames": "low"}, P.BAD_INPUT, "leaves its range"),
    ({"bars": 2, "model": "nope"}, P.NO_MODEL, "no compose model named 'nope'"),
    ({"bars": 2, "ranges": {"bass": [90, 100]}}, P.BAD_INPUT, "misses its playable range"),
    ({"bars": 2, "ranges": {"bass": [50]}}, P.BAD_INPUT, "the range of bass must be two whole numbers"),
    ({"bars": 2, "arrangement": {"seed": 1, "directions": {"loud": 1}}}, P.BAD_INPUT, "no direction 'loud'"),
    ({"bars": 2, "arrangement": {"seed": -1}}, P.BAD_INPUT, "seed must be a whole number 0 or more"),
    ({"bars": 2, "density": {"soprano": "x"}}, P.BAD_INPUT, "density of soprano must be a whole number"),
    ({"bars": 2, "rhythm": {"bass": "wild"}}, P.BAD_INPUT, "rhythm of bass must be one of plain"),
    ({"bars": 2, "chords": "C G", "harmony": 11.0}, P.BAD_INPUT, "harmony must be 0..10"),
    ({"bars": 2, "harmony": "much"}, P.BAD_FIELD, "compose.harmony"),
    ({"bars": 2, "register": {"alto": "high"}}, P.BAD_INPUT, "register of alto must be a MIDI pitch"),
])
def test_bad_requests_get_an_error_reply_and_the_engine_keeps_serving(engine, client, request_fields, code,
                                                                     words):
    import zmq

    fields = dict(request_fields)
    frames = {"empty": [make_notes([], 60, 24)], "late": [make_notes([200], 72, 24)],
              "low": [make_notes([0], 30, 24)]}.get(fields.pop("frames", None), [])
    if "infill" in fields and "parts" in fields:
        frames = [make_notes([0], 72, 24)]
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(engine.endpoint)
    try:  # sent as is, unchecked by this side: the engine is the one to refuse it
        sock.send_multipart(P.encode(P.Message(P.COMPOSE, "bad", fields, frames, validated=True)))
        while True:
            assert sock.poll(int(RECV_S * 1000)), "no reply"
            reply = P.decode(sock.recv_multipart())
            if reply.type in (P.DONE, P.ERROR):
                break
    finally:
        sock.close(linger=0)
    assert reply.type == P.ERROR and reply.fields["code"] == code, reply.fields
    assert words in reply.fields["message"], reply.fields["message"]
    assert len(list(client.compose(1, seed=2))) == 1  # still serving


# --- the verbs: embedded and --engine -------------------------------------------------------------

@pytest.mark.timeout(300)
def test_compose_over_the_engine_writes_the_embedded_file(engine, tmp_path):
    flags = ["--bars", "3", "--chords", "C Am | F G", "--key", "C", "--seed", "7", "--meter", "4/4",
             "--instruments", "soprano,alto,bass", "--temperature", "0.9", "--top-p", "0.9",
             "--range", "soprano:67-76", "--range", "bass:48-55", "--harmony", "3.5", "--register", "alto=62"]
    here, there = tmp_path / "here.mid", tmp_path / "there.mid"
    assert cli("compose", "-o", str(here), *flags) == 0
    assert cli("compose", "-o", str(there), *flags, "--engine", engine.endpoint) == 0
    assert here.read_bytes() == there.read_bytes()
    tracks = read_midi(there).tracks
    assert [t.name for t in tracks] == ["soprano", "alto", "bass"]
    for track, (low, high) in ((tracks[0], (67, 76)), (tracks[2], (48, 55))):  # the range controls
        assert len(track.notes) and low <= track.notes["pitch"].min() and track.notes["pitch"].max() <= high


@pytest.mark.timeout(300)
def test_the_arrangement_model_plans_the_same_file_embedded_and_over_the_engine(engine, tmp_path):
    flags = ["--bars", "4", "--seed", "2", "--arranger", "3"]
    files = {}
    for amount in ("-2", "2"):
        here, there = tmp_path / f"here{amount}.mid", tmp_path / f"there{amount}.mid"
        assert cli("compose", "-o", str(here), *flags, "--direction", f"density={amount}") == 0
        assert cli("compose", "-o", str(there), *flags, "--direction", f"density={amount}",
                   "--engine", engine.endpoint) == 0
        assert here.read_bytes() == there.read_bytes()
        files[amount] = read_midi(here)
    # the density direction is obeyed: more notes planned and written along it
    assert files["2"].n_notes > files["-2"].n_notes
    # a control given on the command line wins over the plan
    mine = tmp_path / "mine.mid"
    assert cli("compose", "-o", str(mine), *flags, "--density", "soprano=1") == 0
    soprano = next(t for t in read_midi(mine).tracks if t.name == "soprano")
    assert len(soprano.notes) <= 8


@pytest.mark.timeout(300)
def test_accompany_keeps_the_melody_note_for_note_embedded_and_over_the_engine(engine, tmp_path):
    melody = melody_file(tmp_path / "melody.mid")
    here, there = tmp_path / "here.mid", tmp_path / "there.mid"
    assert cli("accompany", str(tmp_path / "melody.mid"), "-o", str(here), "--seed", "3") == 0
    assert cli("accompany", str(tmp_path / "melody.mid"), "-o", str(there), "--seed", "3",
               "--engine", engine.endpoint) == 0
    assert here.read_bytes() == there.read_bytes()
    out = read_midi(here)
    assert out.resolution == melody.resolution
    assert [t.name for t in out.tracks] == ["Flute", "alto", "tenor", "bass"]
    kept = out.tracks[0]
    assert kept.program == 73 and (kept.notes == melody.tracks[0].notes).all()
    assert all(len(t.notes) for t in out.tracks[1:])
    assert max(int(t.notes["time"].max()) for t in out.tracks) < 2 * 4 * 480


@pytest.mark.timeout(300)
def test_continue_and_infill_keep_the_rest_embedded_and_over_the_engine(engine, tmp_path):
    src = tmp_path / "satb.mid"
    assert cli("compose", "-o", str(src), "--bars", "4", "--key", "C", "--chords", "C F G C",
               "--seed", "1") == 0
    given = read_midi(src)
    bar = 4 * given.resolution
    for verb, flags in (("continue", ["--bars", "2"]),
                        ("infill", ["--bars", "2:3", "--tracks", "alto,tenor"])):
        here, there = tmp_path / f"{verb}-here.mid", tmp_path / f"{verb}-there.mid"
        assert cli(verb, str(src), "-o", str(here), *flags, "--seed", "5") == 0
        assert cli(verb, str(src), "-o", str(there), *flags, "--seed", "5", "--engine", engine.endpoint) == 0
        assert here.read_bytes() == there.read_bytes(), verb
        out = read_midi(here)
        for old, new in zip(given.tracks, out.tracks):
            assert old.name == new.name
            if verb == "continue":  # every given note, and new ones after bar 4 only
                added = new.notes[~np.isin(new.notes, old.notes)]
                assert np.isin(old.notes, new.notes).all() and (added["time"] >= 4 * bar).all()
                assert len(added) > 0
            else:  # soprano and bass untouched; alto and tenor changed in bars 2..3 only
                inside = lambda n: (n["time"] >= bar) & (n["time"] < 3 * bar)  # noqa: E731
                assert (old.notes[~inside(old.notes)] == new.notes[~inside(new.notes)]).all()
                if old.name in ("soprano", "bass"):
                    assert (old.notes == new.notes).all()
                else:  # the written notes replace the file's own in bars 2..3 (one voice: one onset)
                    onsets = new.notes["time"][inside(new.notes)]
                    assert len(onsets) and len(onsets) == len(set(onsets.tolist()))


@pytest.mark.timeout(300)
def test_accompany_continue_and_infill_take_the_per_track_controls(tmp_path):
    """The controls compose has reach the parts the other verbs write: density and register move what
    those parts play."""
    melody_file(tmp_path / "melody.mid")
    low, high = tmp_path / "low.mid", tmp_path / "high.mid"
    for out, alto in ((low, 57), (high, 70)):
        assert cli("accompany", str(tmp_path / "melody.mid"), "-o", str(out), "--seed", "3",
                   "--register", f"alto={alto}", "--density", "bass=1") == 0
    tracks = {name: {t.name: t.notes for t in read_midi(f).tracks}
              for name, f in (("low", low), ("high", high))}
    assert tracks["low"]["alto"]["pitch"].mean() < tracks["high"]["alto"]["pitch"].mean()
    assert len(tracks["low"]["bass"]) <= 2 * 2  # about one note a bar over the two bars; 8 without it

    src = tmp_path / "satb.mid"
    assert cli("compose", "-o", str(src), "--bars", "4", "--key", "C", "--chords", "C F G C",
               "--seed", "1") == 0
    bar = 4 * read_midi(src).resolution
    out = tmp_path / "continued.mid"
    assert cli("continue", str(src), "-o", str(out), "--bars", "2", "--seed", "5",
               "--density", "soprano=1") == 0
    soprano = next(t for t in read_midi(out).tracks if t.name == "soprano").notes
    assert 1 <= int((soprano["time"] >= 4 * bar).sum()) <= 2 * 2  # 9 without the control
    out = tmp_path / "infilled.mid"
    assert cli("infill", str(src), "-o", str(out), "--bars", "2:3", "--tracks", "alto", "--seed", "5",
               "--density", "alto=1") == 0
    alto = next(t for t in read_midi(out).tracks if t.name == "alto").notes
    assert 1 <= int(((alto["time"] >= bar) & (alto["time"] < 3 * bar)).sum()) <= 2 * 2  # 12 without it


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("argv", "message"), [
    (["compose", "--chords", "C H7"], "unknown chord symbol 'H7'"),
    (["compose", "--instruments", "kazoo"], "instrument 'kazoo' is not one this model writes"),
    (["compose", "--bars", "0"], "--bars must be 1..256"),
    (["compose", "--bars", "99999"], "--bars must be 1..256"),
    (["compose", "--range", "bass:90-100"], "misses its playable range"),
    (["accompany", "MELODY", "--instruments", "kazoo"], "instrument 'kazoo' is not one this model writes"),
    (["accompany", "MELODY", "--chords", "C Q"], "unknown chord symbol 'Q'"),
    (["accompany", "EMPTY"], "has no notes"),
    (["accompany", "DRUMS"], "has only drums"),
    (["continue", "MELODY", "--bars", "0"], "--bars must be 1..254"),
    (["continue", "MELODY", "--bars", "1000"], "--bars must be 1..254"),
    (["infill", "MELODY", "--bars", "2:5"], "--bars 2:5 is outside melody.mid, which has bars 1..2;"),
    (["infill", "MELODY", "--bars", "1:2", "--tracks", "kazoo"], "--tracks kazoo: not an instrument"),
    (["compose", "--register", "alto=40"], "register of alto is 40, outside its playable range"),
    (["accompany", "MELODY", "--density", "soprano=2"], "--density soprano=...: soprano is not written here"),
    (["infill", "MELODY", "--bars", "1:1", "--tracks", "soprano", "--preserve-rhythm", "--rhythm",
      "soprano=plain"], "--rhythm soprano=... and --preserve-rhythm both set the rhythm of soprano"),
])
@pytest.mark.parametrize("where", ["embedded", "engine"])
def test_bad_input_is_one_sentence_exit_2_and_nothing_written(engine, tmp_path, capsys, argv, message, where):
    inputs = tmp_path / "in"
    inputs.mkdir()
    melody_file(inputs / "melody.mid")
    write_midi(Score(480, [Track("Empty", 0)]), inputs / "empty.mid")
    write_midi(Score(480, [Track("Kit", 0, True, make_notes([0, 480], 36, 240, 100))]), inputs / "drums.mid")
    files = {"MELODY": "melody.mid", "EMPTY": "empty.mid", "DRUMS": "drums.mid"}
    argv = [str(inputs / files[a]) if a in files else a for a in argv]
    out = tmp_path / "out"
    out.mkdir()
    extra = ["--engine", engine.endpoint] if where == "engine" else []
    assert cli(*argv, "-o", str(out / "x.mid"), *extra) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert list(out.iterdir()) == []


@pytest.mark.timeout(300)
def test_leaving_the_bars_early_cancels_the_job(client):
    stream = iter(client.compose(256, seed=3))
    first = next(stream)
    stream.close()
    assert first.index == 0
    assert client.status()["jobs"] == []  # cancelled, not writing the other 255 bars


def test_given_chords_condition_a_monophonic_part_by_their_top_note():
    from engine.tasks.compose import build_request, conditioning, written
    from models.composer.inference import Composer

    notes = make_notes([1, 0, 0, 0, 24], [60, 64, 64, 62, 70], [24, 24, 12, 24, 24])
    poly = conditioning(notes, monophonic=False)
    assert sorted(zip(poly["time"].tolist(), poly["pitch"].tolist())) == [(0, 60), (0, 62), (0, 64), (24, 70)]
    mono = conditioning(notes, monophonic=True)
    assert mono[["time", "pitch"]].tolist() == [(0, 64), (24, 70)]
    composer = Composer.load("models/pretrained/composer-satb.pt")
    chordal = make_notes([0, 0, 2, 96, 96], [67, 72, 76, 67, 71], 48, 80)  # two onsets in one step
    composition = build_request(composer, bars=2, given={"soprano": chordal}, seed=0)
    bars = list(composer.compose(composition.request))
    assert len(bars) == 2 and all(composer.instruments[t] != "soprano"
                                  for b in bars for t in written(b, composition)[1])
