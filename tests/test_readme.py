"""Every ```bash block of README.md, run top to bottom in one folder on tiny real inputs (as pedalboard
runs its README's examples), so the documentation cannot drift from the program.

Each line runs through bash with `deep-musician` on PATH (this checkout's `python -m engine.cli`),
HOME in the test folder, and the inputs the README names made there. A line is run as written,
run with a stated change (ADAPTED), started as a service (SERVICES), or not run for a stated reason
(NOT_RUN); any other line the test cannot run fails it.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bridge import synth
from bridge.midi import read_midi, write_midi
from bridge.score import Score, Track, make_notes

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"

NOT_RUN = {
    "bash scripts/setup.sh": "installs system packages and the package itself; CI runs it before the "
                             "tests (.ci/run), and test_ci_runs_the_readme_test_command checks that",
    "bash scripts/setup.sh --dev": "the same, with the development tools",
    ". .venv/bin/activate": "the virtual environment set-up makes; here `deep-musician` is this checkout's "
                            "`python -m engine.cli` (tests/test_setup.py runs the first command as written)",
    "python -m pytest": "the test suite this test is part of",
}
ADAPTED = {  # README line -> (the line run, why)
    "deep-musician data build bach": (
        "deep-musician data build bach --limit 24", "the first 24 chorales: the full set takes minutes"),
    "deep-musician data build quartets": (
        "deep-musician data build quartets --source ~/midi --ensemble string_quartet",
        "a tiny quartet file: music21 takes minutes to parse even one corpus quartet on two cores"),
    "deep-musician data build renaissance": (
        "deep-musician data build renaissance --limit 3", "the first three works"),
    "python -m models.arranger.train --data bach --arch lstm --no-online --out runs/bach-offline": (
        "python -m models.arranger.train --data bach --arch lstm --no-online --out runs/bach-offline "
        "--steps 2 --eval-every 1 --d-model 16 --n-layers 1 --limit-valid 2",
        "two steps of a tiny model: the real run takes hours"),
}
SERVICES = {"deep-musician serve"}  # started, pinged with bridge.client.Client, stopped after its block
NEEDS_FLUIDSYNTH = re.compile(r"deep-musician perform |--render ")


def bash_blocks() -> list[list[str]]:
    """The command lines of each ```bash block, comments stripped, `a && b` split into commands."""
    blocks = re.findall(r"^```bash\n(.*?)^```", README.read_text(), flags=re.S | re.M)
    return [[cmd.strip() for line in block.splitlines() if line.split(" #")[0].strip()
             for cmd in line.split(" #")[0].split("&&")] for block in blocks]


BLOCKS = bash_blocks()


def free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def make_inputs(folder: Path) -> None:
    """examples/piano.mid (the README's first command runs in a checkout), song.mid (its first four
    bars), song.musicxml (four chords, written with music21), take.wav (a recording of them) and
    ~/midi/quartet.mid (four tracks named as the string quartet's parts)."""
    import music21

    (folder / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "piano.mid", folder / "examples" / "piano.mid")
    piano = read_midi(ROOT / "examples" / "piano.mid")
    bars4 = 16 * piano.resolution
    tracks = [Track(t.name, t.program, t.is_drum, t.notes[t.notes["time"] < bars4]) for t in piano.tracks]
    write_midi(Score(piano.resolution, tracks, piano.tempos, piano.meters, piano.keys), folder / "song.mid")

    chords = (["C4", "E4", "G4", "C5"], ["F3", "A4", "C5", "F5"], ["G3", "B4", "D5", "G5"],
              ["C3", "G4", "C5", "E5"])
    part = music21.stream.Part()
    for chord in chords:
        part.append(music21.chord.Chord(chord, quarterLength=1.0))
    music21.stream.Score([part]).write("musicxml", fp=folder / "song.musicxml")
    # take.wav: those chords played a little slower (0.6 s each against the score's 0.5), as sines
    import soundfile

    sr, t = 22_050, np.arange(int(0.6 * 22_050)) / 22_050
    take = np.concatenate([sum(np.sin(2 * np.pi * music21.pitch.Pitch(p).frequency * t) for p in chord)
                           * np.exp(-3 * t) / 8 for chord in chords])
    soundfile.write(str(folder / "take.wav"), take.astype(np.float32), sr)

    home_midi = folder / "home" / "midi"
    home_midi.mkdir(parents=True)
    quartet = [Track(name, program, notes=make_notes(np.arange(16) * 240, pitch + np.arange(16) % 5, 240, 80))
               for name, program, pitch in (("Violin I", 40, 76), ("Violin II", 40, 69), ("Viola", 41, 62),
                                            ("Cello", 42, 48))]
    write_midi(Score(480, quartet), home_midi / "quartet.mid")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("readme")
    make_inputs(folder)
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "deep-musician"
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m engine.cli "$@"\n')
    wrapper.chmod(0o755)
    return folder


def environment(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DEEP_MUSICIAN_MODELS", "DEEP_MUSICIAN_DATA")}
    env.update(PATH=f"{folder / 'bin'}:{os.path.dirname(sys.executable)}:{env.get('PATH', '/usr/bin:/bin')}",
               PYTHONPATH=str(ROOT), HOME=str(folder / "home"), MPLBACKEND="Agg")
    return env


def start_service(command: str, endpoint: str, folder: Path) -> subprocess.Popen:
    from bridge.client import Client

    log = folder / "service.log"  # a file, not a pipe: an unread pipe would block the engine's logging
    with log.open("w") as out:
        proc = subprocess.Popen(["bash", "-c", f"exec {command} --endpoint {endpoint}"], cwd=folder,
                                env=environment(folder), stdout=out, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while "engine ready" not in log.read_text():  # printed once the models are loaded
        assert proc.poll() is None and time.monotonic() < deadline, \
            f"{command} did not start:\n{log.read_text()}"
        time.sleep(0.2)
    with Client(endpoint, timeout_s=30.0) as client:
        assert client.ping() >= 0
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(workdir: Path, index: int) -> None:
    endpoint = free_endpoint()  # not the default port: other test runs may share this machine
    services, skipped = [], []
    try:
        for command in BLOCKS[index]:
            if command in NOT_RUN:
                continue
            run = ADAPTED.get(command, (command, ""))[0].replace(DEFAULT_ENDPOINT, endpoint)
            if command in SERVICES:
                services.append(start_service(run, endpoint, workdir))
                continue
            if NEEDS_FLUIDSYNTH.search(command) and synth.available():
                skipped.append(command)
                continue
            assert command.startswith(("deep-musician ", "python -m ")), \
                f"README line {command!r} is neither run nor listed in NOT_RUN with a reason"
            r = subprocess.run(["bash", "-c", run], cwd=workdir, env=environment(workdir),
                               capture_output=True, text=True, timeout=600)
            assert r.returncode == 0, f"{command}\n{r.stdout}\n{r.stderr}"
            words = shlex.split(run)
            for flag in ("-o", "--render", "--plot"):
                if flag in words:
                    assert (workdir / words[words.index(flag) + 1]).is_file(), f"{command}: no {flag} file"
    finally:
        for proc in services:
            stop(proc)
    if skipped:
        pytest.skip(f"needs FluidSynth ({synth.available()}): " + "; ".join(skipped))


def test_every_block_is_found_and_every_line_accounted_for() -> None:
    assert len(BLOCKS) >= 4 and all(BLOCKS)
    for key in (*NOT_RUN, *ADAPTED, *SERVICES):
        assert any(key in block for block in BLOCKS), f"{key!r} is no longer in the README: drop it here"


def test_ci_runs_the_readme_test_command() -> None:
    """The README's second command is what CI runs, exactly."""
    readme_lines = re.search(r"^```bash\n(.*?)^```", README.read_text(), flags=re.S | re.M)[1].splitlines()
    ci = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln and not ln.startswith("#")]
    assert ci[-1] == readme_lines[1]
