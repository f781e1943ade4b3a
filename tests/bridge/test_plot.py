"""Piano-roll plots, and the shipped example's generator."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from bridge.midi import read_midi
from bridge.plot import plot_piano_roll
from bridge.score import METER_DTYPE, TEMPO_DTYPE, Score, Track, make_notes

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def two_bar_score() -> Score:
    """Two bars at 120 qpm = 4 seconds: a C major arpeggio over a held bass, plus a hi-hat."""
    melody = make_notes([0, 24, 48, 72, 96, 120, 144, 168], [60, 64, 67, 72, 67, 64, 60, 64], 24, 100)
    bass = make_notes([0, 96], [36, 43], 96, 90)
    hats = make_notes(np.arange(0, 192, 12), 42, 6, 70)
    return Score(
        24,
        [Track("Melody", 0, False, melody), Track("Bass", 32, False, bass), Track("Hats", 0, True, hats)],
        tempos=np.array([(0, 120.0)], TEMPO_DTYPE),
        meters=np.array([(0, 4, 4)], METER_DTYPE),
    )


def test_plot_writes_png(tmp_path: Path) -> None:
    out = plot_piano_roll(two_bar_score(), tmp_path / "roll.png", title="Arpeggio")
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 5_000


def test_plot_empty_score_and_long_piece_width(tmp_path: Path) -> None:
    assert (plot_piano_roll(Score(), tmp_path / "empty.png")).read_bytes().startswith(PNG_MAGIC)
    long = Score(24, [Track("Drone", 0, False, make_notes(np.arange(2000) * 24, 60, 24))])
    plot_piano_roll(long, tmp_path / "long.png")
    width_px = int.from_bytes((tmp_path / "long.png").read_bytes()[16:20], "big")  # IHDR width
    assert width_px <= 2400


def test_make_example_is_deterministic(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_example", EXAMPLES / "make_example.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.main(tmp_path / "piano.mid")
    assert out.read_bytes() == (EXAMPLES / "piano.mid").read_bytes()
    notes = read_midi(out).tracks[0].notes
    for voice, (low, high) in module.VOICE_RANGES.items():
        voice_notes = module.parse_voice(voice, module.VOICES[voice], 64)
        assert low <= voice_notes["pitch"].min() and voice_notes["pitch"].max() <= high
        assert voice_notes["time"].max() + voice_notes["duration"].max() <= 16 * 4 * module.RESOLUTION
    assert len(notes) == sum(len(module.parse_voice(v, t, 64)) for v, t in module.VOICES.items())
