"""The neural performer through the CLI and a real engine: `perform --renderer neural` writes the
synthesis model + vocoder's audio at 22,050 Hz, levelled like the SoundFont's, or at another rate
(44,100, 48,000) that audio resampled, the A4 still an A4; an unknown style, a rate out of
8,000..96,000 or a corrupt model is one sentence, exit 2 and nothing written; over the socket the
same mistakes are error replies and the engine keeps serving."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
from scipy.io import wavfile

from bridge import protocol as P
from bridge import synth
from bridge.client import Client, EngineError
from bridge.midi import write_midi
from bridge.score import Score, Track, make_notes
from engine.tasks import perform as PF
from engine.tasks.perform_neural import OFFLINE_RESAMPLE_QUALITY, resampled
from tests.engine.test_live_perform_rates import peak_hz
from tests.engine.test_server import Engine

ROOT = Path(__file__).resolve().parents[2]
PRETRAINED = ROOT / "models" / "pretrained"
pytestmark = pytest.mark.skipif(bool(synth.available()), reason=synth.available() or "")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def tune_notes() -> np.ndarray:
    """Eight quarter notes at 24 ticks per quarter."""
    return make_notes(np.arange(8) * 24, 60 + np.array([0, 2, 4, 5, 7, 5, 4, 2]), 24, 80)


def a4_notes() -> np.ndarray:
    """One A4 of two quarters (1 s at 120 qpm), 24 ticks per quarter."""
    return make_notes([0], [69], 48, 80)


@pytest.fixture(scope="module")
def tune(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tune") / "tune.mid"
    write_midi(Score(24, [Track("piano", 0, notes=tune_notes())]), path)
    return path


@pytest.fixture(scope="module")
def a4(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("a4") / "a4.mid"
    write_midi(Score(24, [Track("piano", 0, notes=a4_notes())]), path)
    return path


def assert_a4(mono: np.ndarray, rate_hz: int) -> None:
    """The note (sounding from 0 for 1 s) reads as A4: within the models' own 2-4 % flat."""
    heard = peak_hz(mono[int(0.2 * rate_hz):int(0.8 * rate_hz)], rate_hz)
    assert abs(heard / 440.0 - 1) < 0.05, heard


def assert_levelled(audio: np.ndarray, rate_hz: int) -> None:
    """(n, 2) audio at the default loudness, or at the true-peak ceiling."""
    lufs = pyloudnorm.Meter(rate_hz).integrated_loudness(audio.astype(np.float64))
    peak = 20 * np.log10(np.abs(audio).max())
    assert lufs == pytest.approx(PF.DEFAULT_LOUDNESS_LUFS, abs=0.1) or peak > PF.TRUE_PEAK_CEILING_DBTP - 0.2


def test_offline_resampling_in_chunks_is_the_whole_resampled():
    # Chunks of any size (one shorter than soxr holds back): joined, exactly the whole resampled at
    # once, round(n * out / in) samples.
    soxr = pytest.importorskip("soxr")
    x = np.random.default_rng(0).standard_normal(50_001).astype(np.float32)
    for out_hz in (44_100, 48_000, 8_000):
        chunks = [x[a:b] for a, b in ((0, 10), (10, 30_000), (30_000, 30_001), (30_001, 50_001))]
        got = np.concatenate(list(resampled(iter(chunks), 22_050, out_hz)))
        want = soxr.resample(x, 22_050, out_hz, quality=OFFLINE_RESAMPLE_QUALITY)
        assert len(got) == len(want) == round(len(x) * out_hz / 22_050), out_hz
        np.testing.assert_array_equal(got, want)


def test_perform_renderer_neural_writes_levelled_audio_at_the_models_rate(tune, tmp_path):
    out = tmp_path / "neural.wav"
    r = run("perform", str(tune), "-o", str(out), "--renderer", "neural", "--style", "strings",
            "--latent", "2")
    assert r.returncode == 0, r.stderr
    rate, audio = wavfile.read(out)
    assert rate == 22_050 and audio.dtype == np.float32 and audio.shape[1] == 2
    np.testing.assert_array_equal(audio[:, 0], audio[:, 1])
    assert len(audio) > 4.0 * rate  # eight quarters at 120 qpm and the release
    assert_levelled(audio, rate)


def test_perform_renderer_neural_at_44100_hz_is_its_render_resampled(a4, tmp_path):
    soxr = pytest.importorskip("soxr")
    audio = {}
    for rate_hz in (22_050, 44_100):
        out = tmp_path / f"{rate_hz}.wav"
        r = run("perform", str(a4), "-o", str(out), "--renderer", "neural", "--style", "piano", "--latent",
                "2", "--loudness", "raw", "--sample-rate", str(rate_hz))
        assert r.returncode == 0 and f"{rate_hz} Hz" in r.stdout, r.stderr
        rate, audio[rate_hz] = wavfile.read(out)
        assert rate == rate_hz and audio[rate_hz].dtype == np.float32
    model, host = audio[22_050][:, 0], audio[44_100]
    np.testing.assert_array_equal(host[:, 0], host[:, 1])
    assert len(host) == 2 * len(model)  # the same length in seconds, to the sample
    want = soxr.resample(model, 22_050, 44_100, quality=OFFLINE_RESAMPLE_QUALITY)
    np.testing.assert_allclose(host[:, 0], want, atol=1e-6)
    assert_a4(host[:, 0], 44_100)


@pytest.mark.parametrize("extra, said", [
    (["--renderer", "neural", "--style", "banjo"], "style 'banjo' is not one"),
    (["--renderer", "neural", "--sample-rate", "100000"], "sample_rate_hz must be 8000..96000"),
    (["--renderer", "neural", "--sample-rate", "4000"], "sample_rate_hz must be 8000..96000"),
    (["--renderer", "neural", "--latent", "0.5,0.1"], "latent must be 8 finite numbers"),
    (["--renderer", "neural", "--latent", "-0.5,0.1"], "latent must be 8 finite numbers"),  # a minus first
    (["--style", "piano"], "add --renderer neural"),
    (["--renderer", "neural", "--latent", "x"], "--latent takes an integer seed"),
    (["--renderer", "neural", "--vocoder", "banjo"], "unknown vocoder 'banjo'; the shipped ones are"),
    (["--vocoder", "performer-vocoder-gl"], "add --renderer neural"),
    (["--renderer", "neural", "--synth", "banjo"], "unknown synthesis model 'banjo'; the shipped ones are "
                                                   "performer-synth, performer-synth-expressive"),
    (["--synth", "performer-synth-expressive"], "add --renderer neural"),
])
def test_bad_neural_options_are_one_sentence_exit_2_and_nothing_written(tune, tmp_path, extra, said):
    r = run("perform", str(tune), "-o", str(tmp_path / "out.wav"), *extra)
    assert r.returncode == 2 and said in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "out.wav").exists()


@pytest.mark.timeout(300)
def test_the_engine_performs_neurally_and_keeps_serving_after_bad_requests(tmp_path):
    notes = tune_notes()
    engine = Engine(tmp_path).wait_ready()
    try:
        with Client(engine.endpoint, timeout_s=120.0) as c:
            performed = c.perform(notes, 22_050, resolution=24, qpm=120.0, renderer="neural", style="organ",
                                  latent_seed=1, raw_level=True)
            assert performed.audio.shape[0] == 2 and performed.audio.shape[1] > 4.0 * 22_050
            assert performed.stats["renderer"] == "neural" and performed.stats["style"] == "FluidR3_GM:organ"
            # Another rate: the 22,050 Hz render resampled, levelled after (A4 as A4, same length).
            a4 = {rate_hz: c.perform(a4_notes(), rate_hz, resolution=24, qpm=120.0, renderer="neural",
                                     style="piano", latent_seed=2, raw_level=rate_hz != 48_000)
                  for rate_hz in (22_050, 44_100, 48_000)}
            n = a4[22_050].audio.shape[1]
            assert a4[44_100].audio.shape == (2, 2 * n) and a4[44_100].stats["samples"] == 2 * n
            assert a4[48_000].audio.shape == (2, round(n * 48_000 / 22_050))
            assert_a4(a4[44_100].audio[0], 44_100)
            assert_a4(a4[48_000].audio[0], 48_000)
            assert_levelled(a4[48_000].audio.T, 48_000)
            for fields, said in (({"style": "banjo"}, "style 'banjo'"),
                                 ({"sample_rate_hz": 100_000}, "sample_rate_hz must be 8000..96000"),
                                 ({"sample_rate_hz": 4_000}, "sample_rate_hz must be 8000..96000")):
                request = {"sample_rate_hz": 22_050, **fields}
                with pytest.raises(EngineError, match=said) as err:
                    c.perform(notes, request.pop("sample_rate_hz"), resolution=24, renderer="neural",
                              **request)
                assert err.value.code == P.BAD_INPUT
            c.ping()  # still serving
            again = c.perform(notes, 22_050, resolution=24, qpm=120.0, renderer="neural", style="organ",
                              latent_seed=1, raw_level=True)
            np.testing.assert_allclose(again.audio, performed.audio, atol=1e-6)
    finally:
        engine.stop()


def test_a_corrupt_synthesis_model_is_refused_with_a_sentence(tmp_path):
    from models.performer.neural import NeuralRenderer

    bad = tmp_path / "performer-synth.pt"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="not a readable perform_synth model file"):
        NeuralRenderer.load(bad, PRETRAINED / "performer-vocoder.pt")
    shutil.copy(PRETRAINED / "performer-vocoder.pt", tmp_path / "v.pt")
    with pytest.raises(ValueError, match="not a perform_synth model"):
        NeuralRenderer.load(tmp_path / "v.pt")


LATENT = [0.5, -1.0, 0.0, 0.25, 0.0, 1.5, 0.2, -0.3]  # the shipped model's latent size: 8


@pytest.mark.timeout(300)
def test_a_latent_of_numbers_is_the_same_audio_embedded_and_through_the_engine(tune, tmp_path):
    engine = Engine(tmp_path).wait_ready()
    try:
        written = {}
        for how, flags in (("embedded", []), ("engine", ["--engine", engine.endpoint, "--timeout", "120"])):
            out = tmp_path / f"{how}.wav"
            r = run("perform", str(tune), "-o", str(out), "--renderer", "neural", "--style", "strings",
                    "--latent=" + ",".join(map(str, LATENT)), "--loudness", "raw", *flags)
            assert r.returncode == 0, r.stderr
            written[how] = wavfile.read(out)[1]
        np.testing.assert_allclose(written["engine"], written["embedded"], atol=1e-6)
        r = run("perform", str(tune), "-o", str(tmp_path / "short.wav"), "--renderer", "neural",
                "--latent", "0.5,0.1", "--engine", engine.endpoint, "--timeout", "120")
        assert r.returncode == 2 and "latent must be 8 finite numbers" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and not (tmp_path / "short.wav").exists()
    finally:
        engine.stop()


def perform_frames(**fields) -> list[bytes]:
    """A neural perform request's frames with the header's fields replaced as given, unchecked (the
    client would refuse what the protocol does not allow before sending it)."""
    import msgpack

    request = P.make_request(P.PERFORM, "raw", [tune_notes()], sample_rate_hz=22_050, resolution=24,
                             renderer="neural", raw_level=True)
    header, *frames = [bytes(f) for f in P.encode(request)]
    return [P.pack_header({**msgpack.unpackb(header), **fields}), *frames]


@pytest.mark.timeout(300)
def test_the_wire_takes_the_latent_as_numbers_and_refuses_bad_ones_while_serving(tmp_path):
    import zmq

    from models.performer.neural import NeuralRenderer

    notes = tune_notes()
    seed_z = NeuralRenderer.load().latent(3).tolist()  # the numbers a seed of 3 draws
    engine = Engine(tmp_path).wait_ready()
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(engine.endpoint)
    try:
        with Client(engine.endpoint, timeout_s=120.0) as c:
            def perform(**fields):
                return c.perform(notes, 22_050, resolution=24, qpm=120.0, renderer="neural", style="piano",
                                 raw_level=True, **fields).audio

            by_seed = perform(latent_seed=3)
            np.testing.assert_allclose(perform(latent=seed_z), by_seed, atol=1e-6)
            mine = perform(latent=LATENT)
            np.testing.assert_array_equal(perform(latent=LATENT), mine)  # same latent, same audio
            assert np.abs(mine - by_seed).max() > 1e-3
            for fields, code, said in (
                    ({"latent": [0.5, 0.1]}, P.BAD_INPUT, "latent must be 8 finite numbers"),
                    ({"latent": []}, P.BAD_INPUT, "latent must be 8 finite numbers"),
                    ({"latent": LATENT, "latent_seed": 1}, P.BAD_INPUT, "not both"),
                    ({"latent": ["a"] * 8}, P.BAD_FIELD, "perform.latent must be a list of finite numbers"),
                    ({"latent": 0.5}, P.BAD_FIELD, "perform.latent must be a list of finite numbers")):
                sock.send_multipart(perform_frames(**fields))
                assert sock.poll(60_000), f"no reply to {fields}"
                reply = P.decode(sock.recv_multipart())
                assert reply.type == P.ERROR and reply.fields["code"] == code, (fields, reply.fields)
                assert said in reply.fields["message"] and "\n" not in reply.fields["message"]
            c.ping()  # still serving
            np.testing.assert_array_equal(perform(latent=LATENT), mine)
    finally:
        sock.close(linger=0)
        engine.stop()


VOCODERS = ("performer-vocoder", "performer-vocoder-gl", "performer-vocoder-pghi")


def played_both_ways(a4, tmp_path, endpoint: str, option: str, name: str) -> np.ndarray:
    """The A4 through ``perform --renderer neural OPTION NAME`` embedded and through the engine at
    ``endpoint``: the same samples both ways (checked); the engine's."""
    written = {}
    for how, flags in (("embedded", []), ("engine", ["--engine", endpoint, "--timeout", "120"])):
        out = tmp_path / f"{name}-{how}.wav"
        r = run("perform", str(a4), "-o", str(out), "--renderer", "neural", "--style", "piano",
                option, name, "--loudness", "raw", *flags)
        assert r.returncode == 0, r.stderr
        written[how] = wavfile.read(out)[1][:, 0]
    np.testing.assert_allclose(written["engine"], written["embedded"], atol=1e-6)
    return written["engine"]


@pytest.mark.timeout(300)
def test_each_shipped_vocoder_plays_the_a4_alike_embedded_and_through_the_engine(a4, tmp_path):
    from models.performer.neural import DEFAULT_VOCODER

    engine = Engine(tmp_path).wait_ready()
    try:
        through = ["--engine", engine.endpoint, "--timeout", "120"]
        written = {v: played_both_ways(a4, tmp_path, engine.endpoint, "--vocoder", v) for v in VOCODERS}
        assert np.abs(written[VOCODERS[0]] - written[VOCODERS[1]]).max() > 1e-3
        for vocoder in VOCODERS[1:]:
            assert_a4(written[vocoder], 22_050)
        with Client(engine.endpoint, timeout_s=120.0) as c:
            stats = {v: c.perform(a4_notes(), 22_050, resolution=24, qpm=120.0, renderer="neural",
                                  raw_level=True, **({"vocoder": v} if v else {})).stats
                     for v in (*VOCODERS, None)}
            assert [stats[v]["vocoder"] for v in VOCODERS] == list(VOCODERS)
            assert stats[None]["vocoder"] == DEFAULT_VOCODER.stem
            with pytest.raises(EngineError, match="unknown vocoder 'banjo'; this engine has "
                                                  "performer-vocoder, performer-vocoder-gl, "
                                                  "performer-vocoder-pghi") as err:
                c.perform(a4_notes(), 22_050, resolution=24, renderer="neural", vocoder="banjo")
            assert err.value.code == P.BAD_INPUT
            c.ping()  # still serving
        r = run("perform", str(a4), "-o", str(tmp_path / "x.wav"), "--renderer", "neural", "--vocoder",
                "banjo", *through)
        assert r.returncode == 2 and "unknown vocoder 'banjo'" in r.stderr and "Traceback" not in r.stderr
        assert not (tmp_path / "x.wav").exists()
    finally:
        engine.stop()


@pytest.mark.timeout(300)
def test_a_synthesis_model_is_chosen_by_name_embedded_and_through_the_engine(a4, tmp_path):
    """``--synth`` / the request's ``model``: the same audio embedded and through an engine, each
    model's own; the default is performer-synth-expressive (since the Kyries' rule), the first model
    is chosen by name; an unknown name is one sentence and the engine keeps serving."""
    from models.performer.neural import DEFAULT_SYNTH

    engine = Engine(tmp_path).wait_ready()
    try:
        written = {m: played_both_ways(a4, tmp_path, engine.endpoint, "--synth", m)
                   for m in ("performer-synth", "performer-synth-expressive")}
        for audio in written.values():
            assert_a4(audio, 22_050)
        assert np.abs(written["performer-synth"] - written["performer-synth-expressive"]).max() > 1e-3
        with Client(engine.endpoint, timeout_s=120.0) as c:
            stats = {m: c.perform(a4_notes(), 22_050, resolution=24, qpm=120.0, renderer="neural",
                                  raw_level=True, **({"model": m} if m else {})).stats
                     for m in ("performer-synth", None)}
            assert stats["performer-synth"]["model"] == "performer-synth"
            assert stats[None]["model"] == DEFAULT_SYNTH.stem == "performer-synth-expressive"
            with pytest.raises(EngineError, match="unknown synthesis model 'banjo'; this engine has "
                                                  "performer-synth, performer-synth-expressive") as err:
                c.perform(a4_notes(), 22_050, resolution=24, renderer="neural", model="banjo")
            assert err.value.code == P.BAD_INPUT
            c.ping()  # still serving
    finally:
        engine.stop()
