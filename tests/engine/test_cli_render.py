"""`arrange --render` and `perform` share one path (engine.cli.perform.perform_score): the same audio
for the same parts, each part with its General MIDI program; without FluidSynth, one sentence and no
files."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from scipy.io import wavfile

from bridge import synth
from bridge.midi import read_midi, write_midi
from bridge.score import Score, Track
from engine import cli
from engine.cli.common import CliError
from engine.cli.perform import performance_input

ROOT = Path(__file__).resolve().parents[2]
needs_fluidsynth = pytest.mark.skipif(bool(synth.available()), reason=synth.available() or "")


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT), **env})


@pytest.fixture
def song(tmp_path: Path) -> Path:
    """The shipped example's first two bars (about six seconds)."""
    piano = read_midi(ROOT / "examples" / "piano.mid")
    track = piano.tracks[0]
    notes = track.notes[track.notes["time"] < 8 * piano.resolution]
    path = tmp_path / "song.mid"
    write_midi(Score(piano.resolution, [Track(track.name, track.program, notes=notes)], piano.tempos,
                     piano.meters, piano.keys), path)
    return path


@needs_fluidsynth
def test_arrange_render_is_the_perform_of_the_arranged_parts(song: Path, tmp_path: Path) -> None:
    out, wav, png = tmp_path / "quartet.mid", tmp_path / "quartet.wav", tmp_path / "roll.png"
    r = run("arrange", str(song), "-o", str(out), "--ensemble", "string_quartet", "--render", str(wav),
            "--plot", str(png))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1:] == [f"piano roll -> {png}", f"audio -> {wav}"]
    arranged = read_midi(out)
    assert performance_input(arranged)[2] == [40, 40, 41, 42]  # violins, viola, cello: each its program
    rate, audio = wavfile.read(wav)
    assert rate == 48_000 and audio.dtype.name == "float32" and audio.shape[1] == 2
    assert arranged.seconds() <= len(audio) / rate <= arranged.seconds() + 3.5  # plus the release tail
    assert abs(audio).max() > 0.01
    performed = tmp_path / "performed.wav"
    r = run("perform", str(out), "-o", str(performed))
    assert r.returncode == 0, r.stderr
    assert performed.read_bytes() == wav.read_bytes()  # one engine path for both verbs


def _only_one_sentence(stderr: str, expect: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deep-musician: error: ") and expect in lines[0], stderr


def test_render_without_a_soundfont_writes_nothing(song: Path, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.sf2")
    for verb, outputs in (("arrange", ["-o", "satb.mid", "--plot", "roll.png", "--render", "satb.wav"]),
                          ("perform", ["-o", "song.wav", "--plot", "spectrogram.png"])):
        r = run(verb, str(song), *[str(tmp_path / a) if "." in a else a for a in outputs],
                DEEP_MUSICIAN_SOUNDFONT=missing)
        assert r.returncode == 2, r.stdout + r.stderr
        _only_one_sentence(r.stderr, "DEEP_MUSICIAN_SOUNDFONT is set to")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["song.mid"]  # no output, no temporary


def test_render_without_fluidsynth_writes_nothing(song: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(synth, "_lib", None)
    monkeypatch.setattr(synth.ctypes.util, "find_library", lambda name: None)
    monkeypatch.setattr(synth, "_LIBRARY_NAMES", ("libno-such-fluidsynth.so",))
    code = cli.main(["arrange", str(song), "-o", str(tmp_path / "satb.mid"), "--plot",
                     str(tmp_path / "roll.png"), "--render", str(tmp_path / "satb.wav")])
    assert code == 2
    captured = capsys.readouterr()
    _only_one_sentence(captured.err, "libfluidsynth is not installed")
    assert captured.out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.mid"]


def test_a_score_without_pitched_notes_is_not_performed() -> None:
    with pytest.raises(CliError, match="no pitched notes"):
        performance_input(Score(480, [Track("Piano", 0)]))
