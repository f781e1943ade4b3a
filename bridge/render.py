"""Audio previews of a ``Score`` through the FluidSynth command-line synthesiser and a GM SoundFont.

The CLI is used instead of Python bindings: Debian's ``fluidsynth`` package is all it takes, and a
synthesiser crash cannot take the caller down with it. The SoundFont finder, the gain and the
sample-rate range are the in-process synthesiser's (``bridge.synth``), so both render alike.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from bridge.midi import write_midi
from bridge.score import Score
from bridge.synth import GAIN, SAMPLE_RATES_HZ, SOUNDFONT_ENV, find_soundfont


def render_audio(
    score: Score,
    wav_path: str | os.PathLike,
    sample_rate_hz: int = 44100,
    soundfont: str | os.PathLike | None = None,
) -> Path:
    """Render a score to a 16-bit stereo WAV file with FluidSynth; returns ``wav_path``.

    FluidSynth keeps rendering about three seconds past the last note off (FluidSynth 2.3), so the
    file is that much longer than ``score.seconds()``; the release and reverb fade out within it.
    """
    if not SAMPLE_RATES_HZ[0] <= sample_rate_hz <= SAMPLE_RATES_HZ[1]:
        raise ValueError(
            f"sample_rate_hz must be {SAMPLE_RATES_HZ[0]}..{SAMPLE_RATES_HZ[1]} for FluidSynth, "
            f"got {sample_rate_hz}"
        )
    if score.n_notes == 0:
        raise ValueError(
            "the score has no notes, so there is nothing to render; check that it was read correctly"
        )
    executable = shutil.which("fluidsynth")
    if executable is None:
        raise RuntimeError(
            "the fluidsynth program is not on PATH; install it (Debian/Ubuntu: "
            "apt-get install fluidsynth, macOS: brew install fluid-synth)"
        )
    soundfont = Path(soundfont) if soundfont is not None else find_soundfont()
    if soundfont is None:
        raise RuntimeError(
            f"no SoundFont found; install one (Debian/Ubuntu: apt-get install fluid-soundfont-gm) "
            f"or set {SOUNDFONT_ENV} to a .sf2 file"
        )
    if not soundfont.is_file():
        raise FileNotFoundError(f"no SoundFont at {soundfont}; pass an existing .sf2 file")
    wav_path = Path(wav_path)
    if not wav_path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {wav_path}: the folder {wav_path.parent} does not exist")

    with tempfile.TemporaryDirectory(prefix="deep-musician-render-") as tmp:
        midi_path = Path(tmp) / "score.mid"
        write_midi(score, midi_path)
        # -n: no MIDI input driver, -i: no interactive shell, -q: no banner; options go before the files.
        command = [
            executable,
            "-n",
            "-i",
            "-q",
            "-g",
            str(GAIN),
            "-r",
            str(sample_rate_hz),
            "-T",
            "wav",
            "-F",
            str(wav_path),
            str(soundfont),
            str(midi_path),
        ]
        try:
            # Fast rendering runs many times faster than real time; the limit only catches a hang.
            result = subprocess.run(command, capture_output=True, text=True, timeout=60 + score.seconds())
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"fluidsynth did not finish rendering within {exc.timeout:.0f} s") from exc
    if result.returncode != 0 or not wav_path.is_file() or wav_path.stat().st_size <= 44:
        detail = (result.stderr or result.stdout).strip()[-800:]
        raise RuntimeError(
            f"fluidsynth failed to render {wav_path.name} (exit code {result.returncode}): "
            f"{detail or 'no output'}"
        )
    return wav_path
