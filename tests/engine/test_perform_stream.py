"""`deep-musician perform` streams its audio into the output file: the file is the WAV scipy would
write, a restarted engine job overwrites from its first sample, and memory does not grow with the
length of the piece."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile

from bridge import synth
from bridge.midi import read_midi, write_midi
from bridge.score import Score, Track
from engine.cli.perform import WavWriter

ROOT = Path(__file__).resolve().parents[2]


def test_the_streamed_wav_is_the_file_scipy_writes(tmp_path):
    audio = np.random.default_rng(0).standard_normal((2, 10_000)).astype(np.float32)
    wavfile.write(tmp_path / "scipy.wav", 44_100, np.ascontiguousarray(audio.T))
    with WavWriter(tmp_path / "streamed.wav", 44_100) as wav:
        wav.write(0, audio[:, :4_096])
        wav.write(0, audio[:, :4_096])  # a restarted job sends its audio again from sample 0
        wav.write(4_096, audio[:, 4_096:])
    assert (tmp_path / "streamed.wav").read_bytes() == (tmp_path / "scipy.wav").read_bytes()
    rate, back = wavfile.read(tmp_path / "streamed.wav")
    assert rate == 44_100 and np.array_equal(back.T, audio)


def repeated(bars: int, path: Path) -> Path:
    """examples/piano.mid's opening four bars, repeated `bars // 4` times."""
    piano = read_midi(ROOT / "examples" / "piano.mid")
    span = 16 * piano.resolution
    notes = piano.tracks[0].notes
    notes = notes[notes["time"] + notes["duration"] <= span]
    copies = []
    for k in range(bars // 4):
        c = notes.copy()
        c["time"] += k * span
        copies.append(c)
    write_midi(Score(piano.resolution, [Track("Piano", 0, notes=np.concatenate(copies))], piano.tempos[:1],
                     piano.meters[:1], piano.keys[:1]), path)
    return path


def peak_rss_mb(midi: Path, wav: Path) -> float:
    """Peak RSS of a `perform` process (its own ru_maxrss, read as it exits)."""
    code = ("import resource, sys\nfrom engine.cli import main\nrc = main(sys.argv[1:])\n"
            "print('maxrss_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\nsys.exit(rc)\n")
    r = subprocess.run([sys.executable, "-c", code, "perform", str(midi), "-o", str(wav)],
                       capture_output=True, text=True, cwd=ROOT, timeout=900,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    return int(r.stdout.split("maxrss_kb")[-1]) / 1024


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.skipif(bool(synth.available()), reason=synth.available() or "")
def test_memory_stays_flat_whatever_the_length(tmp_path):
    short = peak_rss_mb(repeated(4, tmp_path / "short.mid"), tmp_path / "short.wav")  # ~12 s of audio
    long = peak_rss_mb(repeated(160, tmp_path / "long.mid"), tmp_path / "long.wav")  # ~8 minutes
    seconds = wavfile.read(tmp_path / "long.wav", mmap=True)[1].shape[0] / 48_000
    held_mb = seconds * 48_000 * 2 * 4 / 2**20  # what the whole render would take in memory
    assert seconds > 400 and held_mb > 150
    assert long - short < 0.25 * held_mb, f"peak RSS {short:.0f} MB -> {long:.0f} MB for {seconds:.0f} s"
