"""hairpin_gain: the swell FluidSynth gives a hairpin (the builder's velocity and CC11 ramps through
the SoundFont default modulators), as dB per note and as nats on the bands of a hairpin note's
harmonics; a score with no hairpin is left as it is."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from models.performer import expression as ex
from models.performer import render
from models.performer.hairpin_gain import NATS_PER_DB, controller_db, hairpin_offsets, note_gain_db
from models.performer.neural import NeuralRenderer


def run(hairpin: int, parts: int = 1) -> np.ndarray:
    """Four notes of 2 s at p in part 0 under ``hairpin``; with parts=2 a held low D in part 1, no hairpin."""
    soft = ex.DYNAMIC_NAMES.index("p")
    rows = [(0, p, 2.0 * i, 2.0, 50, soft, hairpin, 0) for i, p in enumerate((62, 64, 65, 67))]
    if parts == 2:
        rows.append((1, 38, 0.0, 8.0, 50, soft, 0, 0))
    marked = np.array(rows, ex.MARKED_DTYPE)
    performed = np.zeros(len(marked), ex.PERFORMED_DTYPE)
    for name in ex.MARKED_DTYPE.names:
        performed[name] = marked[name]
    performed["onset_s"], performed["duration_s"] = marked["onset_beats"], marked["duration_beats"]
    return performed


def test_the_law_is_fluidsynths_default_modulators():
    assert controller_db(127, 127) == 0.0
    assert controller_db(112, 100) == pytest.approx(40 * np.log10(1.12))
    assert controller_db(57, 50) == pytest.approx(-controller_db(50, 57))


def test_a_crescendo_ends_a_level_louder_and_a_diminuendo_softer_by_the_builders_ramps():
    times = np.array([0.0, 6.0, 7.0])
    up = note_gain_db(run(+1), times)
    down = note_gain_db(run(-1), times)
    p = ex.DYNAMIC_NAMES.index("p")
    level_v = np.interp([p, p + 0.5, p - 0.5], np.arange(len(ex.LEVEL_VELOCITY)), ex.LEVEL_VELOCITY)
    # the last note: its velocity half a level up, CC11 at its top from its onset on
    expected_up = controller_db(level_v[1], level_v[0]) + controller_db(ex.CC11_BASE + ex.CC11_PER_LEVEL,
                                                                        ex.CC11_BASE)
    assert up[3, 1] == pytest.approx(expected_up) and 3.5 < up[3, 1] < 5.0
    assert up[0, 0] == pytest.approx(0.0)  # the first note starts the hairpin at the steady level
    assert down[3, 2] < -3.5 and np.all(np.diff(up[3]) >= 0)
    assert not note_gain_db(run(0), times).any()


def test_offsets_reach_the_hairpin_notes_bands_and_leave_a_score_without_hairpins_alone():
    frames = int(8.5 * render.SAMPLE_RATE_HZ / render.HOP)
    assert hairpin_offsets(run(0), 0, frames) is None
    offsets = hairpin_offsets(run(+1, parts=2), 0, frames)
    assert offsets.shape == (render.N_MELS, frames) and offsets.dtype == torch.float32
    last = int(7.0 * render.SAMPLE_RATE_HZ / render.HOP)
    fb = np.asarray(render.mel_filterbank())
    low_d = int(round(73.4 * render.N_FFT / render.SAMPLE_RATE_HZ))  # D2's fundamental: no upper note there
    band = int(np.argmax(fb[:, low_d]))
    assert float(offsets[band, last]) == pytest.approx(0.0, abs=1e-6)  # the held D has no hairpin
    g4 = int(round(392.0 * render.N_FFT / render.SAMPLE_RATE_HZ))
    shared = np.flatnonzero(fb[:, g4] > 0)  # G4 (and D2's harmonic 5 + 6 nearby): averaged there
    gain = note_gain_db(run(+1, parts=2), np.array([7.0]))[3, 0] * NATS_PER_DB
    assert 0.0 < float(offsets[shared, last].max()) <= gain + 1e-5


def test_the_renderer_adds_the_swell_only_when_asked_and_only_under_hairpins():
    renderer = NeuralRenderer.load()
    plain, swelling = copy.copy(renderer), copy.copy(renderer)
    plain.hairpin_gain, swelling.hairpin_gain = False, True
    flat = run(0)
    assert np.array_equal(plain.render(flat, 60.0, "strings"), swelling.render(flat, 60.0, "strings"))
    sr = renderer.sample_rate_hz
    db = lambda a, t: 10 * np.log10(np.mean(a[int(t * sr):int((t + 0.3) * sr)] ** 2) + 1e-12)
    up, level = run(+1), run(0)
    swell = {}
    for name, r in (("plain", plain), ("swelling", swelling)):
        a, b = r.render(up, 60.0, "strings"), r.render(level, 60.0, "strings")
        swell[name] = (db(a, 6.5) - db(a, 0.5)) - (db(b, 6.5) - db(b, 0.5))
    assert swell["swelling"] > swell["plain"] + 2.0, swell
