"""The neural performer through the CLI and a real engine: `perform --renderer neural` writes the
synthesis model + vocoder's audio at 22,050 Hz, levelled like the SoundFont's; an unknown style,
another sample rate or a corrupt model is one sentence, exit 2 and nothing written; over the
socket the same mistakes are error replies and the engine keeps serving."""
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


@pytest.fixture(scope="module")
def tune(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tune") / "tune.mid"
    write_midi(Score(24, [Track("piano", 0, notes=tune_notes())]), path)
    return path


def test_perform_renderer_neural_writes_levelled_audio_at_the_models_rate(tune, tmp_path):
    out = tmp_path / "neural.wav"
    r = run("perform", str(tune), "-o", str(out), "--renderer", "neural", "--style", "strings",
            "--latent", "2")
    assert r.returncode == 0, r.stderr
    rate, audio = wavfile.read(out)
    assert rate == 22_050 and audio.dtype == np.float32 and audio.shape[1] == 2
    np.testing.assert_array_equal(audio[:, 0], audio[:, 1])
    assert len(audio) > 4.0 * rate  # eight quarters at 120 qpm and the release
    lufs = pyloudnorm.Meter(rate).integrated_loudness(audio.astype(np.float64))
    peak = 20 * np.log10(np.abs(audio).max())
    assert lufs == pytest.approx(PF.DEFAULT_LOUDNESS_LUFS, abs=0.1) or peak > PF.TRUE_PEAK_CEILING_DBTP - 0.2


@pytest.mark.parametrize("extra, said", [
    (["--renderer", "neural", "--style", "banjo"], "style 'banjo' is not one"),
    (["--renderer", "neural", "--sample-rate", "48000"], "renders at 22050 Hz"),
    (["--renderer", "neural", "--latent", "0.5,0.1"], "latent must be 8 finite numbers"),
    (["--style", "piano"], "add --renderer neural"),
    (["--renderer", "neural", "--latent", "x"], "--latent takes an integer seed"),
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
            for fields, said in (({"style": "banjo"}, "style 'banjo'"),
                                 ({"sample_rate_hz": 44_100}, "renders at 22050 Hz")):
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
