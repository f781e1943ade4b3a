"""The neural performer with the shipped files (performer-synth, performer-vocoder, performer-align):
non-silent audio of the notes' length plus the release tail, the same seed gives the same audio,
chunking changes nothing and leaves no step at the joins, the float16 file loads as float32, and
bad options are ValueErrors that name the choices."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from models.format import load_scripted
from models.performer.expression import MARKED_DTYPE, PERFORMED_DTYPE
from models.performer.neural import (
    DEFAULT_ALIGN,
    DEFAULT_SYNTH,
    DEFAULT_VOCODER,
    FADE_SAMPLES,
    NeuralRenderer,
    join_steps,
    vocoder_file,
)
from models.performer.render import TAIL_S


@pytest.fixture(scope="module")
def renderer() -> NeuralRenderer:
    torch.set_num_threads(1)
    return NeuralRenderer.load()


def scale(n: int = 8, qpm: float = 120.0) -> np.ndarray:
    """Score notes: a C major scale in quarters, two parts an octave apart from the fifth note."""
    rows = [(0, 60 + (0, 2, 4, 5, 7, 9, 11, 12)[i % 8], i, 1.0, 80, 4, 0, 0) for i in range(n)]
    rows += [(1, 48 + (0, 2, 4, 5, 7, 9, 11, 12)[i % 8], i, 1.0, 70, 4, 0, 0) for i in range(4, n)]
    return np.array(rows, MARKED_DTYPE)


def test_score_notes_render_non_silent_audio_of_the_right_length(renderer):
    notes = scale()
    audio = renderer.render(notes, 120.0, performer="piano")
    assert audio.dtype == np.float32 and audio.ndim == 1 and renderer.sample_rate_hz == 22_050
    end_s = 8 * 0.5  # eight quarters at 120 qpm
    frames = int(np.ceil((end_s + TAIL_S) * renderer.sample_rate_hz / renderer.hop)) + 1
    assert len(audio) == (frames - 1) * renderer.hop
    rms = lambda a: float(np.sqrt(np.mean(a.astype(np.float64) ** 2)))
    sounding, tail = audio[:int(end_s * 22_050)], audio[-2_000:]
    assert np.isfinite(audio).all() and rms(sounding) > 1e-3 and rms(sounding) > 3 * rms(tail)


def test_performed_notes_play_at_their_own_times(renderer):
    performed = np.zeros(2, PERFORMED_DTYPE)
    performed["pitch"], performed["velocity"], performed["performed_velocity"] = 67, 90, 90
    performed["dynamic"], performed["onset_s"], performed["duration_s"] = 4, (0.0, 2.0), 0.5
    audio = renderer.render(performed, 90.0, performer="organ")
    envelope = np.abs(audio[:int(3 * 22_050)]).reshape(-1, 2_205).mean(axis=1)  # 0.1 s blocks
    assert envelope[1:4].mean() > 2 * envelope[12:17].mean()  # the gap between the notes is quieter
    assert envelope[21:24].mean() > 2 * envelope[12:17].mean()


def test_same_seed_same_audio_other_seed_other_audio(renderer):
    notes = scale()
    a = renderer.render(notes, 120.0, performer="strings", latent=3)
    np.testing.assert_array_equal(a, renderer.render(notes, 120.0, performer="strings", latent=3))
    assert np.abs(a - renderer.render(notes, 120.0, performer="strings", latent=4)).max() > 1e-3
    z = renderer.latent(3).tolist()
    np.testing.assert_allclose(renderer.render(notes, 120.0, performer="strings", latent=z), a, atol=1e-6)


@pytest.mark.parametrize("vocoder", ["performer-vocoder", "performer-vocoder-gl", "performer-vocoder-pghi"])
def test_chunks_join_without_a_step_and_the_trained_vocoders_change_nothing(vocoder):
    """The trained vocoder sees more than its receptive field at every join: chunked audio is the
    whole render's. Griffin-Lim estimates each chunk's phase anew: other samples, the same sound
    (each chunk's loudness within 1 dB of the whole render's there), and no step at the joins."""
    renderer = NeuralRenderer.load(DEFAULT_SYNTH, vocoder_file(vocoder))
    notes = scale(24, qpm=150.0)
    whole = renderer.render(notes, 150.0, performer="choir", chunk_frames=4_096)
    chunks = list(renderer.render_chunks(notes, 150.0, performer="choir", chunk_frames=64))
    assert len(chunks) > 5 and all(len(c) == 64 * renderer.hop for c in chunks[1:-1])
    chunked = np.concatenate(chunks)
    steps = join_steps(chunked, 64 * renderer.hop)
    assert steps["max_step_at_joins"] <= steps["max_step_inside"], steps
    if vocoder == "performer-vocoder":
        np.testing.assert_allclose(chunked, whole, atol=1e-4)
        return
    assert len(chunked) == len(whole)
    n = 64 * renderer.hop
    db = lambda a, i: 10 * np.log10(np.mean(a[i:i + n].astype(np.float64) ** 2) + 1e-12)
    for i in range(n, len(whole) - 2 * n, n):  # the chunks that sound (the release tail dies away)
        if db(whole, i) > -60:
            assert abs(db(chunked, i) - db(whole, i)) < 1.0, i // n


def test_a_short_first_chunk_starts_the_stream_and_changes_nothing():
    """A stream's first chunk can be short (``first_chunk_frames``: the engine's first reply), the
    others keep their length, and with the trained vocoder the audio is the whole render's."""
    renderer = NeuralRenderer.load(DEFAULT_SYNTH, vocoder_file("performer-vocoder"))
    notes = scale(16, qpm=150.0)
    whole = renderer.render(notes, 150.0, performer="piano", chunk_frames=4_096)
    chunks = list(renderer.render_chunks(notes, 150.0, performer="piano", chunk_frames=64,
                                         first_chunk_frames=16))
    assert len(chunks[0]) == 16 * renderer.hop - FADE_SAMPLES  # its crossfade goes out with the next
    assert all(len(c) == 64 * renderer.hop for c in chunks[1:-1])
    np.testing.assert_allclose(np.concatenate(chunks), whole, atol=1e-4)
    with pytest.raises(ValueError, match="first_chunk_frames must be at least 8"):
        next(renderer.render_chunks(notes, 150.0, first_chunk_frames=4))


def test_unknown_style_and_bad_latent_are_value_errors_naming_the_choices(renderer):
    with pytest.raises(ValueError, match=r"style 'banjo'.*choir, organ, piano, strings"):
        renderer.render(scale(), 120.0, performer="banjo")
    with pytest.raises(ValueError, match="latent must be 8 finite numbers or an integer seed"):
        renderer.render(scale(), 120.0, latent=[0.1, 0.2])
    with pytest.raises(ValueError, match="notes must be"):
        renderer.render(np.zeros(3, np.float32), 120.0)


def test_the_alignment_model_moves_score_notes(renderer):
    aligned = NeuralRenderer.load(align_path=DEFAULT_ALIGN)
    notes = scale(16)
    pid = aligned.performer_id("piano")
    plain, performed = renderer.perform(notes, 120.0, pid), aligned.perform(notes, 120.0, pid)
    assert np.abs(performed["onset_s"] - plain["onset_s"]).max() > 0.005
    assert (np.diff(performed["onset_s"]) >= 0).all() and performed["onset_s"].min() >= 0
    assert len(aligned.render(notes, 120.0, performer="piano")) > 0


def test_the_half_precision_file_loads_as_float32():
    module, meta = load_scripted(DEFAULT_SYNTH)
    assert meta["weights_dtype"] == "float16" and meta["task"] == "perform_synth"
    assert all(p.dtype == torch.float32 for p in module.parameters())
    assert DEFAULT_SYNTH.stat().st_size < 5e6


def test_a_corrupt_or_wrong_file_is_one_sentence(tmp_path):
    bad = tmp_path / "performer-synth.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="is not a readable perform_synth model file"):
        NeuralRenderer.load(bad)
    with pytest.raises(ValueError, match="is a 'perform_vocoder' model, not a perform_synth model"):
        NeuralRenderer.load(DEFAULT_VOCODER)


def test_a_held_chord_is_not_re_attacked_where_the_synthesis_windows_meet():
    """A C-E-G chord over a low C held 12 s on the piano: basic-pitch hears each note begin once at
    the start and not again around the first seam of the synthesis windows (192 frames, 2.23 s),
    where a cut from one window's mel to the next (``seam_fade = 0``, the way before) re-attacked all
    four; the crossfade (``synth_model.SEAM_FADE``) hands over without a step."""
    import copy

    from models.performer import listen

    renderer = NeuralRenderer.load()
    seam_s = (renderer.window - 2 * renderer.context) * renderer.hop / renderer.sample_rate_hz
    notes = np.array([(0, p, 0, 12.0, 80, 4, 0, 0) for p in (48, 60, 64, 67)], MARKED_DTYPE)

    def onsets_near_seam(r) -> int:
        est = listen.transcribe(r.render(notes, 60.0, performer="piano"), r.sample_rate_hz)
        return int(np.sum(np.isin(est[:, 2], (48, 60, 64, 67)) & (np.abs(est[:, 0] - seam_s) < 0.1)))

    faded = copy.copy(renderer)
    faded.rise_limit = None  # the crossfade alone (the rise limit hides a cut's re-attacks too)
    cut = copy.copy(faded)
    cut.seam_fade = 0
    assert onsets_near_seam(cut) >= 3  # the artefact, as it was
    assert onsets_near_seam(faded) == 0
    assert onsets_near_seam(renderer) == 0  # the defaults: both
