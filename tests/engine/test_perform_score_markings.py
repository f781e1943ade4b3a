"""`deep-musician perform` plays a score's markings: a MusicXML phrase marked p and staccato, then f
and tenuto, comes out louder where it says f and with gaps between the staccato notes, through the
SoundFont and the neural performer, embedded and through a real engine (the `markings` frame of
`perform`); the same file without its markings, or with `--no-markings`, is one level throughout.
A MIDI file keeps its own velocities (no markings are sent); bad markings over the socket are an
error reply and the engine keeps serving."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile

from bridge import protocol as P
from bridge import synth
from bridge.client import Client
from bridge.midi import write_midi
from bridge.scorefile import read_score
from engine.cli.perform import performance_input, score_markings
from models.performer import expression as ex
from tests.engine.test_server import Engine

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(bool(synth.available()), reason=synth.available() or "")
SCALE = (60, 62, 64, 65, 67, 69, 71, 72)
BEAT_S = 0.5  # music21's default tempo, 120 qpm


def marked_score(path: Path, marked: bool = True) -> Path:
    """Eight quarter notes p staccato, then eight f tenuto (or the same notes with no markings)."""
    from music21 import articulations, dynamics, note, stream

    part = stream.Part()
    for i in range(16):
        n = note.Note(SCALE[i % 8], quarterLength=1.0)
        if marked:
            n.articulations.append(articulations.Staccato() if i < 8 else articulations.Tenuto())
        part.insert(float(i), n)
    if marked:
        part.insert(0.0, dynamics.Dynamic("p"))
        part.insert(8.0, dynamics.Dynamic("f"))
    score = stream.Score()
    score.insert(0, part)
    score.write("musicxml", fp=str(path))
    return path


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def read_mono(path: Path) -> tuple[np.ndarray, int]:
    rate, audio = wavfile.read(path)
    audio = audio.astype(np.float64)
    return (audio.mean(axis=1) if audio.ndim == 2 else audio), rate


def db(audio: np.ndarray, rate: int, a_s: float, b_s: float) -> float:
    return float(10 * np.log10(np.mean(audio[int(a_s * rate):int(b_s * rate)] ** 2) + 1e-20))


def figures(audio: np.ndarray, rate: int) -> dict[str, float]:
    """f over p (dB, each half's RMS) and how far the last fifth of each of the first notes' beat
    lies below its first half, staccato (first half) and tenuto (second)."""
    def gap(i: int) -> float:
        t = i * BEAT_S
        return db(audio, rate, t, t + BEAT_S / 2) - db(audio, rate, t + 0.8 * BEAT_S, t + BEAT_S)

    return {"f_over_p_db": db(audio, rate, 8 * BEAT_S, 16 * BEAT_S) - db(audio, rate, 0, 8 * BEAT_S),
            "staccato_gap_db": float(np.median([gap(i) for i in range(1, 7)])),
            "tenuto_gap_db": float(np.median([gap(i) for i in range(9, 15)]))}


def test_the_markings_of_a_score_line_up_with_its_notes_and_midi_has_none(tmp_path):
    src = marked_score(tmp_path / "marked.musicxml")
    score = read_score(src)
    notes, parts, _ = performance_input(score)
    markings = score_markings(src, score)
    assert markings.shape == (16, 3) and markings.dtype == np.uint8
    assert markings[:8, 0].tolist() == [ex.DYNAMIC_NAMES.index("p")] * 8
    assert markings[8:, 0].tolist() == [ex.DYNAMIC_NAMES.index("f")] * 8
    assert ((markings[:8, 2] & ex.STACCATO) > 0).all() and ((markings[8:, 2] & ex.TENUTO) > 0).all()
    from engine.tasks.perform import played_markings

    played = played_markings(notes, parts, markings, 1000, 60.0)
    assert np.array_equal(played["time"], notes["time"])  # every note starts where the score says
    assert (played["velocity"][8:] > played["velocity"][:8] + 30).all()
    assert (played["duration"][:8] < 0.7 * notes["duration"][:8]).all()
    assert (played["duration"][8:] >= 0.95 * notes["duration"][8:]).all()
    midi = tmp_path / "marked.mid"
    write_midi(score, midi)
    assert score_markings(midi, read_score(midi)) is None


@pytest.mark.timeout(600)
def test_perform_plays_forte_louder_and_staccato_shorter_embedded_and_through_the_engine(tmp_path):
    src = marked_score(tmp_path / "marked.musicxml")
    plain = marked_score(tmp_path / "plain.musicxml", marked=False)
    got = {}
    engine = Engine(tmp_path).wait_ready()
    try:
        for renderer in ("soundfont", "neural"):
            for where in ("embedded", "engine"):
                out = tmp_path / f"{renderer}-{where}.wav"
                engine_args = ["--engine", engine.endpoint] if where == "engine" else []
                done = run("perform", str(src), "-o", str(out), "--renderer", renderer, "--loudness", "raw",
                           *engine_args)
                assert done.returncode == 0, done.stderr
                assert "playing the score's dynamics and articulations" in done.stdout
                got[renderer, where] = figures(*read_mono(out))
            out = tmp_path / f"{renderer}-plain.wav"
            assert run("perform", str(plain), "-o", str(out), "--renderer", renderer, "--loudness",
                       "raw").returncode == 0
            got[renderer, "plain"] = figures(*read_mono(out))
            out = tmp_path / f"{renderer}-ignored.wav"
            ignored = run("perform", str(src), "-o", str(out), "--renderer", renderer, "--loudness", "raw",
                          "--no-markings")
            assert ignored.returncode == 0 and "dynamics and articulations" not in ignored.stdout
            got[renderer, "ignored"] = figures(*read_mono(out))
    finally:
        engine.stop()
    print(got)
    for renderer, margin in (("soundfont", 6.0), ("neural", 3.0)):
        for where in ("embedded", "engine"):
            f = got[renderer, where]
            assert f["f_over_p_db"] > margin, (renderer, where, f)
            assert abs(f["f_over_p_db"] - got[renderer, "embedded"]["f_over_p_db"]) < 0.5  # the same render
        for unmarked in ("plain", "ignored"):  # a score without markings, or with them left out
            assert abs(got[renderer, unmarked]["f_over_p_db"]) < 2.0, got[renderer, unmarked]
    sf = got["soundfont", "embedded"]
    assert sf["staccato_gap_db"] > sf["tenuto_gap_db"] + 10, sf


@pytest.mark.timeout(300)
def test_bad_markings_are_an_error_reply_and_the_engine_keeps_serving(tmp_path):
    import zmq

    from bridge.score import make_notes
    from tests.engine.test_server import assert_serving, recv

    notes = make_notes([0, 480], [60, 62], 480, 80)
    parts = np.zeros(2, np.uint8)
    engine = Engine(tmp_path).wait_ready()
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(engine.endpoint)
    try:
        assert_serving(sock)  # connected and answered before the raw requests
        with Client(engine.endpoint) as c, pytest.raises(P.ProtocolError, match="dynamic level 9"):
            c.perform(notes, 48_000, parts, markings=np.array([[9, 1, 0], [4, 1, 0]]))  # checked, not sent
        for markings, said in ((np.array([[9, 1, 0], [4, 1, 0]], np.uint8), "dynamic level 9"),
                               (np.array([[4, 1, 0]], np.uint8), "shape [2, 3]; got [1, 3]")):
            head = {"v": P.PROTOCOL_VERSION, "type": P.PERFORM, "id": 5, "sample_rate_hz": 48_000,
                    "frames": [{"dtype": "notes", "shape": [2]}, {"dtype": "|u1", "shape": [2]},
                               {"dtype": "|u1", "shape": list(markings.shape)}]}
            sock.send_multipart([P.pack_header(head), notes.tobytes(), parts.tobytes(), markings.tobytes()])
            reply = recv(sock, 120.0)  # the engine may still be warming its models up on a busy machine
            assert reply.type == P.ERROR and said in reply.fields["message"], reply.fields
            assert_serving(sock)
        with Client(engine.endpoint, timeout_s=60.0) as c:
            done = c.perform(notes, 48_000, parts, raw_level=True,
                             markings=np.array([[2, 1, ex.STACCATO], [6, 1, 0]], np.uint8))
            assert done.audio.shape[1] > 48_000
    finally:
        sock.close(linger=0)
        context.term()
        engine.stop()
