from __future__ import annotations

import numpy as np
import pytest

from bridge import synth
from models.performer import expression as ex
from models.performer import render

pytestmark = pytest.mark.skipif(synth.available() != "" or not render.installed_performers(),
                                reason="needs libfluidsynth and a GM SoundFont")


def performed(velocities, staccato=False):
    notes = np.zeros(len(velocities), ex.MARKED_DTYPE)
    notes["pitch"], notes["onset_beats"], notes["duration_beats"] = 60, np.arange(len(velocities)), 1.0
    notes["marks"] = ex.STACCATO if staccato else ex.TENUTO
    out, cc11 = ex.realise(notes, 120.0, ex.Style(jitter_ms=0, velocity_jitter=0, rubato_depth=0), 0)
    out["performed_velocity"] = velocities
    return out, cc11


def rms_db(audio):
    return 20 * np.log10(np.sqrt(np.mean(audio ** 2)) + 1e-12)


def test_render_is_mono_at_the_set_rate_and_loudness_follows_velocity():
    piano = render.PERFORMER_IDS["FluidR3_GM:piano"]
    loud = render.render(*performed([110, 110]), piano)
    soft = render.render(*performed([30, 30]), piano)
    assert loud.ndim == 1 and loud.dtype == np.float32
    assert len(loud) == pytest.approx((1.0 + render.TAIL_S) * render.SAMPLE_RATE_HZ, rel=0.05)
    assert rms_db(loud) > rms_db(soft) + 6


def test_staccato_sounds_shorter_than_tenuto():
    organ = render.PERFORMER_IDS["FluidR3_GM:organ"]  # no decay: the length is the note's
    short = render.render(*performed([90], staccato=True), organ)
    long = render.render(*performed([90]), organ)

    def sounding_s(a):
        env = np.abs(a) > 0.05 * np.abs(a).max()
        return np.flatnonzero(env)[-1] / render.SAMPLE_RATE_HZ

    assert sounding_s(short) < 0.8 * sounding_s(long)


def test_cc11_curve_reaches_the_synth():
    strings = render.PERFORMER_IDS["FluidR3_GM:strings"]
    notes, cc = performed([90, 90, 90, 90])
    quiet = [np.array([[0.0, 20.0]])]
    assert rms_db(render.render(notes, quiet, strings)) < rms_db(render.render(notes, cc, strings)) - 6


def test_log_mel_frames_and_filters():
    audio = np.sin(2 * np.pi * 440 * np.arange(render.SAMPLE_RATE_HZ) / render.SAMPLE_RATE_HZ)
    mel = render.log_mel(audio.astype(np.float32))
    assert mel.shape == (render.N_MELS, render.SAMPLE_RATE_HZ // render.HOP + 1)
    fb = render.mel_filterbank()
    assert fb.shape == (render.N_MELS, render.N_FFT // 2 + 1) and (fb.sum(1) > 0).all()
    peak = int(mel[:, 10:-10].mean(1).argmax())
    assert 5 < peak < render.N_MELS // 3  # 440 Hz sits low on the mel scale, above the bottom bands


def test_unknown_font_is_a_sentence():
    with pytest.raises(ValueError, match="unknown font"):
        render.installed_performers(fonts=("NoSuchFont",))


def test_marking_margins_reports_forte_louder_and_staccato_shorter():
    from models.performer.evaluate import marking_margins

    m = marking_margins(("organ",))["organ"]
    assert m["f_over_p_db"] > 6 and m["staccato_s"] < m["tenuto_s"]


@pytest.mark.parametrize("font", ["TimGM6mb", "MuseScore_General"])
def test_another_font_is_another_performer_of_the_same_notes(font):
    if render.font_path(font) is None:
        pytest.skip(f"the {font} SoundFont is not installed (bash scripts/setup.sh --dev installs it)")
    notes = performed([90, 70])
    ours = render.render(*notes, render.PERFORMER_IDS["FluidR3_GM:piano"])
    theirs = render.render(*notes, render.PERFORMER_IDS[f"{font}:piano"])
    assert len(theirs) == len(ours) and rms_db(theirs) > -60  # the same length, and it sounds
    spectra = [np.abs(np.fft.rfft(a[:render.SAMPLE_RATE_HZ])) for a in (ours, theirs)]
    spectra = [s / np.linalg.norm(s) for s in spectra]
    assert float(spectra[0] @ spectra[1]) < 0.95  # but another piano: the spectra differ
