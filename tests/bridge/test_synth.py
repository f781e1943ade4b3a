"""Finding the SoundFont and refusing without one: no FluidSynth needed."""
from __future__ import annotations

from pathlib import Path

import pytest

from bridge import synth


def test_find_soundfont_prefers_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    font = tmp_path / "mine.sf2"
    font.write_bytes(b"RIFF")
    monkeypatch.setenv(synth.SOUNDFONT_ENV, str(font))
    assert synth.find_soundfont() == font
    monkeypatch.setenv(synth.SOUNDFONT_ENV, str(tmp_path / "missing.sf2"))
    with pytest.raises(FileNotFoundError, match="DEEP_MUSICIAN_SOUNDFONT is set to .*missing.sf2"):
        synth.find_soundfont()


def test_a_synth_without_a_soundfont_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synth, "_load_library", lambda: None)
    monkeypatch.setattr(synth, "find_soundfont", lambda: None)
    with pytest.raises(synth.SynthUnavailable, match="fluid-soundfont-gm"):
        synth.Synth(48_000)


def test_a_missing_library_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synth, "_lib", None)
    monkeypatch.setattr(synth.ctypes.util, "find_library", lambda name: None)
    monkeypatch.setattr(synth, "_LIBRARY_NAMES", ("libno-such-fluidsynth.so",))
    with pytest.raises(synth.SynthUnavailable, match="apt-get install fluidsynth"):
        synth.Synth(48_000)
    assert "apt-get install fluidsynth" in synth.available()
