"""The listening tools (basic-pitch through onnxruntime, pyin, mir_eval) on real FluidSynth renders:
they hear the notes a render plays, and not notes it does not."""
from __future__ import annotations

import numpy as np
import pytest

from models.performer import listen
from models.performer.expression import PERFORMED_DTYPE
from models.performer.render import SAMPLE_RATE_HZ, installed_performers, render

MELODY = [60, 62, 64, 65, 67, 69, 67, 65, 64, 62, 60, 67]


def _performed(pitches: list[int], step_s: float = 0.4, length_s: float = 0.35) -> np.ndarray:
    notes = np.zeros(len(pitches), PERFORMED_DTYPE)
    notes["pitch"] = pitches
    notes["onset_s"] = 0.2 + np.arange(len(pitches)) * step_s
    notes["duration_s"] = length_s
    notes["performed_velocity"] = 90
    return notes


def _reference(notes: np.ndarray) -> np.ndarray:
    return np.stack([notes["onset_s"], notes["onset_s"] + notes["duration_s"], notes["pitch"]], 1)


@pytest.fixture(scope="module")
def piano() -> tuple[np.ndarray, np.ndarray]:
    assert not listen.needs(), f"install {listen.needs()} (bash scripts/setup.sh --dev)"
    performer = next(iter(installed_performers(("piano",))))
    notes = _performed(MELODY)
    return render(notes, [np.zeros((0, 2))], performer), _reference(notes)


@pytest.mark.slow
def test_a_render_is_transcribed_as_the_notes_it_plays(piano) -> None:
    audio, reference = piano
    scores = listen.transcription_scores(reference, listen.transcribe(audio, SAMPLE_RATE_HZ))
    assert scores["f1"] >= 0.9, scores
    assert scores["onset_error_ms_median"] < 50


@pytest.mark.slow
def test_notes_the_render_does_not_play_score_nothing(piano) -> None:
    audio, reference = piano
    heard = listen.transcribe(audio, SAMPLE_RATE_HZ)
    a_tone_up = reference.copy()
    a_tone_up[:, 2] += 2
    assert listen.transcription_scores(a_tone_up, heard)["f1"] < 0.2
    silence = listen.transcribe(np.zeros(SAMPLE_RATE_HZ * 2, np.float32), SAMPLE_RATE_HZ)
    assert listen.transcription_scores(reference, silence)["f1"] == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("tracker", listen.TRACKERS)
def test_pitch_accuracy_of_a_monophonic_render(piano, tracker) -> None:
    audio, reference = piano
    assert listen.pitch_accuracy(audio, SAMPLE_RATE_HZ, reference, tracker) >= 0.9
    a_fifth_up = reference.copy()
    a_fifth_up[:, 2] += 7
    assert listen.pitch_accuracy(audio, SAMPLE_RATE_HZ, a_fifth_up, tracker) < 0.2
    # the level does not matter to either: 40 dB quieter (swift-f0 is fed a peak of 0.5)
    assert listen.pitch_accuracy(audio / 100, SAMPLE_RATE_HZ, reference, tracker) >= 0.9


def test_an_unknown_tracker_is_named() -> None:
    with pytest.raises(ValueError, match="tracker must be one of pyin, swift-f0, got 'crepe'"):
        listen.f0_track(np.zeros(100, np.float32), SAMPLE_RATE_HZ, 60, 72, "crepe")


def test_an_empty_reference_is_refused() -> None:
    with pytest.raises(ValueError, match="no notes"):
        listen.transcription_scores(np.zeros((0, 3)), np.zeros((0, 3)))
