"""The DTW aligner on a real render: a held-out chorale performed with rubato (the alignment target
known note by note), rendered by FluidSynth, aligned back to its score."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("librosa")
needs_synth = pytest.mark.skipif(shutil.which("fluidsynth") is None,
                                 reason="FluidSynth is not installed (bash scripts/setup.sh)")


@pytest.fixture(scope="module")
def performance():
    from music21 import corpus

    from models.data.performance import read_piece
    from models.performer import expression, render

    marked, qpm, programs = read_piece(str(corpus.getWork("bach/bwv103.6.mxl")), None)
    performed, cc11 = expression.realise(marked, qpm, expression.Style.of(0), seed=3)
    piano = render.installed_performers(("piano",))
    if not piano:
        pytest.skip("no General MIDI SoundFont with a piano is installed")
    return performed, render.render(performed, cc11, piano[0], programs), render.SAMPLE_RATE_HZ


@needs_synth
def test_onsets_come_back_within_50_ms_and_beat_a_linear_map(performance):
    from models.data.audio_align import align_notes

    notes, audio, sr = performance
    onsets, ends = align_notes(notes["score_onset_s"], notes["score_duration_s"], notes["pitch"], audio, sr)
    error = np.abs(onsets - notes["onset_s"])
    scale = notes["onset_s"].max() / notes["score_onset_s"].max()
    linear = np.abs(notes["score_onset_s"] * scale - notes["onset_s"])
    assert np.median(error) < 0.05 and np.mean(error < 0.05) > 0.7
    assert np.median(error) < np.median(linear) / 2
    assert np.all(ends > onsets)


@needs_synth
def test_the_cli_writes_the_performed_midi_and_refuses_bad_input(performance, tmp_path: Path):
    import soundfile
    from music21 import corpus

    from bridge.midi import read_midi
    from engine.cli import main

    _, audio, sr = performance
    wav, score = tmp_path / "take.wav", str(corpus.getWork("bach/bwv103.6.mxl"))
    soundfile.write(str(wav), audio, sr)
    out, notes = tmp_path / "performed.mid", tmp_path / "notes.json"
    assert main(["data", "align", score, str(wav), "-o", str(out), "--json", str(notes)]) == 0
    rows = json.loads(notes.read_text())
    assert len(rows) == read_midi(out).n_notes > 200
    assert {"onset_s", "end_s", "score_onset_s", "pitch", "track"} <= set(rows[0])
    # nothing is overwritten; a silent take and a missing score are refused
    assert main(["data", "align", score, str(wav), "-o", str(out)]) == 2
    soundfile.write(str(tmp_path / "short.wav"), np.zeros(100, np.float32), sr)
    assert main(["data", "align", score, str(tmp_path / "short.wav"), "-o", str(tmp_path / "x.mid")]) == 2
    assert main(["data", "align", str(tmp_path / "none.mxl"), str(wav), "-o", str(tmp_path / "y.mid")]) == 2
    assert not (tmp_path / "x.mid").exists() and not (tmp_path / "y.mid").exists()
