"""rise_limit: a log-mel band rises faster than the limit only where a starting note's harmonics
reach it; the vectorised limit is the recursion it stands for; and through the shipped synthesis
model a held low C's own bands no longer jump when an upper voice starts a note."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from models.performer import render
from models.performer.expression import MARKED_DTYPE
from models.performer.neural import NeuralRenderer, vocoder_file
from models.performer.rise_limit import onset_bands, rise_limited


def recursion(mel: torch.Tensor, free: torch.Tensor, rate: float) -> torch.Tensor:
    out = mel.clone()
    for t in range(1, mel.shape[1]):
        out[:, t] = torch.where(free[:, t], mel[:, t], torch.minimum(mel[:, t], out[:, t - 1] + rate))
    return out


@pytest.mark.parametrize("rate", [0.0, 0.02, 0.5])
def test_the_vectorised_limit_is_the_recursion(rate):
    g = torch.Generator().manual_seed(0)
    mel = torch.cumsum(torch.randn(6, 400, generator=g) * 0.3, dim=1) - 5.0
    free = torch.rand(6, 400, generator=g) < 0.05
    out = rise_limited(mel, free, rate)
    torch.testing.assert_close(out.double(), recursion(mel.double(), free, rate), atol=1e-5, rtol=0)
    rises = (out[:, 1:] - out[:, :-1])[~free[:, 1:]]
    assert float(rises.max()) <= rate + 1e-5  # away from free frames no band rises faster
    assert torch.all(out <= mel)  # it only ever lowers: falls pass as they are
    assert torch.equal(rise_limited(mel, torch.ones_like(free), rate), mel)  # all free: untouched
    with pytest.raises(ValueError, match="rate must be >= 0"):
        rise_limited(mel, free, -0.1)


def test_a_starting_note_frees_the_bands_of_its_harmonics_around_its_onset_only():
    per_frame = render.SAMPLE_RATE_HZ / render.HOP
    free = onset_bands(np.array([20 / per_frame]), np.array([57], np.uint8), 0, 60)  # A3, 220 Hz, frame 20
    assert free.shape == (render.N_MELS, 60)
    fb = np.asarray(render.mel_filterbank())
    a3 = int(round(220.0 * render.N_FFT / render.SAMPLE_RATE_HZ))
    bands = np.flatnonzero(fb[:, a3] > 0)
    assert free[bands][:, 18:29].all() and not free[:, :18].any() and not free[:, 29:].any()
    below = np.flatnonzero(fb[:, :a3 - 2].sum(1) > 0)
    below = below[fb[below, a3 - 1:].sum(1) == 0]  # bands that hear only bins under the fundamental
    assert len(below) and not free[below].any()
    # frames counted from first_frame: the same note seen from frame 10 is free from frame 8 of the window
    assert torch.equal(onset_bands(np.array([20 / per_frame]), np.array([57]), 10, 50), free[:, 10:])


def test_a_held_notes_bands_do_not_jump_when_another_voice_starts():
    """C3 held 8 s on the piano while an upper voice plays six notes: the shipped model's mel raises
    the C3's own bands (those no upper note reaches) by about 2-3 nats at each upper onset, which a
    transcriber hears as the C3 re-attacked; with the limit they rise at most its rate per frame, and
    the upper notes' own bands keep their attacks."""
    renderer = NeuralRenderer.load()
    notes = np.array([(0, 48, 0, 8.0, 80, 4, 0, 0)]
                     + [(1, 67 + (i % 2) * 5, 1 + i, 1.0, 80, 4, 0, 0) for i in range(6)], MARKED_DTYPE)
    pid, z = renderer.performer_id("piano"), renderer.latent(None)
    performed = renderer.perform(notes, 60.0, pid)
    n = renderer.n_frames(performed)
    plain = copy.copy(renderer)
    plain.rise_limit = None
    limited = copy.copy(renderer)
    limited.rise_limit = 0.02
    upper = onset_bands(performed["onset_s"][1:], performed["pitch"][1:], 0, n).any(dim=1)
    low_c = onset_bands(performed["onset_s"][:1], performed["pitch"][:1], 0, n).any(dim=1)
    held_only = (low_c & ~upper).nonzero().flatten()
    assert len(held_only) >= 5
    after_first = slice(int(0.5 * renderer.frames_per_s), n)
    mels = {name: r.mel(performed, 60.0, pid, z, n, 0, n)
            for name, r in (("plain", plain), ("limited", limited))}
    rise = {name: float((mel[held_only, 1:] - mel[held_only, :-1])[:, after_first].max())
            for name, mel in mels.items()}
    assert rise["plain"] > 1.0  # the artefact, as the model makes it
    assert rise["limited"] <= 0.02 + 1e-4
    free = onset_bands(performed["onset_s"], performed["pitch"], 0, n)
    assert torch.equal(mels["limited"][free], mels["plain"][free])  # every note's attack as it was


def test_chunked_renders_with_the_limit_are_the_whole_render():
    """The limit runs from LOOKBACK_FRAMES before each chunk's frames: with the trained vocoder
    (chunking changes no sample) the chunks joined are the whole render."""
    from tests.models.performer.test_neural import scale

    renderer = NeuralRenderer.load(vocoder_path=vocoder_file("performer-vocoder"))
    renderer.rise_limit = 0.02
    notes = scale(16, qpm=150.0)
    whole = renderer.render(notes, 150.0, performer="piano", chunk_frames=4_096)
    chunked = np.concatenate(list(renderer.render_chunks(notes, 150.0, performer="piano", chunk_frames=64)))
    np.testing.assert_allclose(chunked, whole, atol=1e-4)


def test_a_rate_map_is_the_recursion_too():
    g = torch.Generator().manual_seed(1)
    mel = torch.cumsum(torch.randn(4, 300, generator=g) * 0.3, dim=1)
    free = torch.rand(4, 300, generator=g) < 0.05
    rate = torch.rand(4, 300, generator=g) * 0.2
    out = rise_limited(mel, free, rate)
    expected = mel.double().clone()
    for t in range(1, 300):
        expected[:, t] = torch.where(free[:, t], expected[:, t],
                                     torch.minimum(expected[:, t], expected[:, t - 1] + rate[:, t].double()))
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=0)
    same = rise_limited(mel, free, torch.full_like(mel, 0.05))
    torch.testing.assert_close(same, rise_limited(mel, free, 0.05))


def test_notes_that_continue_a_slur_are_not_freed_but_rise_at_the_legato_rate():
    from models.performer.expression import PERFORMED_DTYPE, SLUR, SLUR_END
    from models.performer.rise_limit import LEGATO_POST_FRAMES, legato_notes, rise_rates

    notes = np.zeros(5, PERFORMED_DTYPE)
    notes["part"] = [0, 0, 0, 0, 1]
    notes["pitch"] = [60, 62, 64, 65, 48]
    notes["onset_s"] = [0.0, 0.5, 1.0, 1.5, 0.5]
    notes["duration_s"] = 0.5
    notes["marks"] = [SLUR, SLUR, SLUR | SLUR_END, 0, SLUR]  # a slur over the first three; part 1 alone
    assert legato_notes(notes).tolist() == [False, True, True, False, False]
    per_frame = render.SAMPLE_RATE_HZ / render.HOP
    free, rate = rise_rates(notes, 0, 200, 0.01, legato_rate=0.3)
    assert torch.equal(free, onset_bands(notes["onset_s"][[0, 3, 4]], notes["pitch"][[0, 3, 4]], 0, 200))
    e4 = int(np.floor(1.0 * per_frame))
    fb = np.asarray(render.mel_filterbank())
    band = int(np.argmax(fb[:, int(round(329.6 * render.N_FFT / render.SAMPLE_RATE_HZ))]))
    assert not free[band, e4 + 1] and float(rate[band, e4 + 1]) == pytest.approx(0.3)
    assert float(rate[band, e4 + LEGATO_POST_FRAMES + 1]) == pytest.approx(0.01)  # the legato window ends
    free_plain, rate_plain = rise_rates(notes, 0, 200, 0.01)  # no legato rate: every onset frees
    assert torch.equal(free_plain, onset_bands(notes["onset_s"], notes["pitch"], 0, 200))
    assert rate_plain == 0.01


def test_the_renderer_plays_slurs_legato_on_strings_and_not_on_the_piano():
    from models.performer.expression import SLUR, SLUR_END
    from tests.models.performer.test_neural import scale

    renderer = NeuralRenderer.load()
    notes = scale(8, qpm=120.0)[:8]
    notes["marks"] = SLUR
    notes["marks"][-1] |= SLUR_END
    for style, changes in (("strings", True), ("piano", False)):
        pid, z = renderer.performer_id(style), renderer.latent(None)
        performed = renderer.perform(notes, 120.0, pid)
        n = renderer.n_frames(performed)
        plain, legato = copy.copy(renderer), copy.copy(renderer)
        plain.legato_rate, legato.legato_rate = None, 0.3
        a = plain.mel(performed, 120.0, pid, z, n, 0, n)
        b = legato.mel(performed, 120.0, pid, z, n, 0, n)
        assert bool((a != b).any()) is changes, style
