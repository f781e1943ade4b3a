"""Renders come out at a stated loudness: `deep-musician perform` and the engine's perform job level
to -18 LUFS integrated (EBU R128, measured here with pyloudnorm) under a -1 dBTP true-peak ceiling,
or keep the renderer's raw level when asked; a bad level is one sentence, exit 2, nothing written."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
from scipy.io import wavfile
from scipy.signal import resample_poly

from bridge import protocol as P
from bridge import synth
from bridge.client import Client, EngineError
from bridge.midi import read_midi, write_midi
from bridge.score import Score, Track, make_notes
from engine.cli.perform import DEFAULT_SAMPLE_RATE_HZ
from engine.tasks import perform as PF
from tests.engine.test_server import Engine

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(bool(synth.available()), reason=synth.available() or "")
CEILING = PF.TRUE_PEAK_CEILING_DBTP


def lufs(audio: np.ndarray, sample_rate_hz: int) -> float:
    """(2, n) or (n, 2) audio's integrated loudness, by pyloudnorm."""
    audio = audio if audio.shape[-1] == 2 else audio.T
    return pyloudnorm.Meter(sample_rate_hz).integrated_loudness(audio.astype(np.float64))


def true_peak_dbtp(audio: np.ndarray) -> float:
    return 20 * math.log10(np.abs(resample_poly(audio.astype(np.float64), 4, 1, axis=0)).max())


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


@pytest.fixture(scope="module")
def song(tmp_path_factory) -> Path:
    """The shipped example's first four bars."""
    piano = read_midi(ROOT / "examples" / "piano.mid")
    track = piano.tracks[0]
    path = tmp_path_factory.mktemp("song") / "song.mid"
    notes = track.notes[track.notes["time"] < 16 * piano.resolution]
    write_midi(Score(piano.resolution, [Track(track.name, track.program, notes=notes)],
                     piano.tempos, piano.meters, piano.keys), path)
    return path


def test_perform_writes_minus_18_lufs_by_default_and_the_raw_level_on_request(song, tmp_path):
    levels = {}
    for name, extra in (("default", []), ("raw", ["--loudness", "raw"]), ("quiet", ["--loudness", "-30"])):
        r = run("perform", str(song), "-o", str(tmp_path / f"{name}.wav"), *extra)
        assert r.returncode == 0, r.stderr
        rate, audio = wavfile.read(tmp_path / f"{name}.wav")
        assert rate == DEFAULT_SAMPLE_RATE_HZ
        levels[name] = (lufs(audio, rate), true_peak_dbtp(audio), audio)
    raw_lufs, raw_peak, raw = levels["raw"]
    assert raw_lufs < -25  # FluidSynth's own level: quiet
    for name, target in (("default", PF.DEFAULT_LOUDNESS_LUFS), ("quiet", -30.0)):
        got, peak, audio = levels[name]
        assert peak <= PF.TRUE_PEAK_CEILING_DBTP + 0.05
        # the target, or the ceiling held it back: either way it is the raw render times one gain
        assert got == pytest.approx(target, abs=0.05) or peak == pytest.approx(CEILING, abs=0.05)
        gain = float((audio * raw).sum() / (raw * raw).sum())
        assert abs(gain - 1) > 0.01
        np.testing.assert_allclose(audio, raw * gain, rtol=1e-5, atol=1e-6)
    assert "-18 LUFS" in run("perform", str(song), "-o", str(tmp_path / "again.wav")).stdout


@pytest.mark.parametrize("level", ["loud", "0", "-90"])
def test_a_bad_level_is_one_sentence_and_nothing_written(song, tmp_path, level):
    r = run("perform", str(song), "-o", str(tmp_path / "out.wav"), "--loudness", level)
    assert r.returncode == 2 and "--loudness" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "out.wav").exists()


@pytest.mark.timeout(300)
def test_the_engines_perform_job_levels_its_stream_and_says_by_how_much(tmp_path):
    notes = make_notes(np.arange(0, 24 * 16, 12), 60 + np.arange(32) % 12, 12, 40 + np.arange(32) * 2)
    engine = Engine(tmp_path).wait_ready()
    try:
        with Client(engine.endpoint, timeout_s=60.0) as c:
            performed = c.perform(notes, 44_100, qpm=100.0)
            levelled = performed.audio
            raw = np.concatenate([a for _, a in c.perform_chunks(notes, 44_100, qpm=100.0, raw_level=True)],
                                 1)
            louder = np.concatenate([a for _, a in c.perform_chunks(notes, 44_100, qpm=100.0,
                                                                     loudness_lufs=-14.0)], 1)
            with pytest.raises(EngineError, match="loudness must be -60..-5 LUFS") as err:
                list(c.perform_chunks(notes, 44_100, loudness_lufs=3.0))
            assert err.value.code == P.BAD_INPUT
            c.ping()  # still serving
        for audio, target in ((levelled, PF.DEFAULT_LOUDNESS_LUFS), (louder, -14.0)):
            got, peak = lufs(audio, 44_100), true_peak_dbtp(audio.T)
            assert peak <= PF.TRUE_PEAK_CEILING_DBTP + 0.05
            assert got == pytest.approx(target, abs=0.05) or peak == pytest.approx(CEILING, abs=0.05), peak
        assert lufs(raw, 44_100) < -25
        stats = performed.stats  # what was measured in the first pass, and the gain applied
        assert stats["loudness_lufs"] == PF.DEFAULT_LOUDNESS_LUFS
        assert stats["raw_lufs"] == pytest.approx(lufs(raw, 44_100), abs=0.02)
        assert stats["gain_db"] == pytest.approx(lufs(levelled, 44_100) - lufs(raw, 44_100), abs=0.02)
        with synth.Synth(44_100) as s:  # the raw stream is the renderer's own output
            parts = np.zeros(len(notes), np.int64)
            local = np.concatenate(list(PF.render_chunks(s, notes, parts, [], 24, 100.0)), 1)
        np.testing.assert_allclose(raw, local, atol=1e-6)
    finally:
        engine.stop()
