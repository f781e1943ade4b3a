"""Performed notes to audio (FluidSynth through ``bridge.synth``) and audio to log-mel frames.

A *performer* is a SoundFont and a General MIDI preset: the same notes through another font or
another preset of the instrument sound like another player. ``PERFORMERS`` is the fixed table
(ids are its indices, so a model's performer embedding means the same on every machine); only the
fonts installed here can render, and ``installed_performers`` says which.

``bridge.synth.Synth`` plays notes but has no control-change call; CC11 (expression) goes through
libfluidsynth's ``fluid_synth_cc``, bound here on the library ``bridge.synth`` already loaded.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bridge import synth as fluid

# Log-mel settings of every set built here (HiFi-GAN's 22.05 kHz recipe, mono)
SAMPLE_RATE_HZ = 22_050
N_FFT = 1024
HOP = 256  # 11.6 ms frames
WIN = 1024
N_MELS = 80
FMIN_HZ, FMAX_HZ = 0.0, 8000.0
LOG_FLOOR = 1e-5  # log(max(mel, floor)), natural log of magnitude
TAIL_S = 1.0  # rendered after the last note-off: the release
EXPRESSION_CC = 11

FONT_DIRS = (Path("/usr/share/sounds/sf2"), Path("/usr/share/sounds/sf3"), Path("/usr/share/soundfonts"))
# font stem -> file names it may have on Debian
FONTS = {"FluidR3_GM": ("FluidR3_GM.sf2",),
         "MuseScore_General": ("MuseScore_General.sf2", "MuseScore_General.sf3"),
         "TimGM6mb": ("TimGM6mb.sf2",)}


@dataclass(frozen=True)
class Performer:
    name: str
    font: str  # a key of FONTS
    program: int  # GM preset; -1 keeps each part's own program


_PRESETS = (("piano", 0), ("organ", 19), ("strings", 48), ("choir", 52), ("flute", 73),
            ("oboe", 68), ("violin", 40), ("clarinet", 71), ("parts", -1))
PERFORMERS = tuple(Performer(f"{font}:{name}", font, program) for font in FONTS for name, program in _PRESETS)
PERFORMER_IDS = {p.name: i for i, p in enumerate(PERFORMERS)}


def font_path(font: str) -> Path | None:
    for folder in FONT_DIRS:
        for name in FONTS[font]:
            if (folder / name).is_file():
                return folder / name
    return None


def installed_performers(presets: tuple[str, ...] | None = None,
                         fonts: tuple[str, ...] | None = None) -> list[int]:
    """Ids of performers whose font is installed, optionally only these presets and fonts."""
    unknown = [f for f in fonts or () if f not in FONTS]
    if unknown:
        raise ValueError(f"unknown font {unknown[0]!r}; fonts are {', '.join(FONTS)}")
    return [i for i, p in enumerate(PERFORMERS)
            if font_path(p.font) is not None and (presets is None or p.name.split(":")[1] in presets)
            and (not fonts or p.font in fonts)]


def _bind_cc(lib: ctypes.CDLL):
    fn = lib.fluid_synth_cc
    fn.argtypes, fn.restype = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int], ctypes.c_int
    return fn


def render(performed: np.ndarray, cc11: list[np.ndarray], performer_id: int,
           programs: list[int] | None = None, sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """Mono float32 audio of performed notes (``expression.PERFORMED_DTYPE``): part p on its own
    channel, with its CC11 curve. ``programs`` are the parts' own GM programs (for the ``parts``
    preset)."""
    from bridge.score import PITCHED_CHANNELS

    performer = PERFORMERS[performer_id]
    path = font_path(performer.font)
    if path is None:
        raise fluid.SynthUnavailable(f"performer {performer.name} needs the {performer.font} SoundFont, "
                                     f"which is not installed in {', '.join(map(str, FONT_DIRS))}")
    n_parts = int(performed["part"].max()) + 1 if len(performed) else 0
    if n_parts > len(PITCHED_CHANNELS):
        raise ValueError(f"at most {len(PITCHED_CHANNELS)} parts can render, got {n_parts}")
    # (sample, order, kind, channel, a, b): note-offs sort before note-ons at the same sample
    events = []
    for n in performed:
        ch = PITCHED_CHANNELS[int(n["part"])]
        on = int(round(n["onset_s"] * sample_rate_hz))
        off = int(round((n["onset_s"] + n["duration_s"]) * sample_rate_hz))
        events.append((on, 2, ch, int(n["pitch"]), int(n["performed_velocity"])))
        events.append((off, 0, ch, int(n["pitch"]), 0))
    for p, curve in enumerate(cc11):
        for t, value in curve:
            events.append((int(round(t * sample_rate_hz)), 1, PITCHED_CHANNELS[p], EXPRESSION_CC, int(value)))
    events.sort()
    total = (max((e[0] for e in events), default=0)) + int(TAIL_S * sample_rate_hz)
    out = np.zeros(total, np.float32)
    with fluid.Synth(sample_rate_hz, path) as synth:
        cc = _bind_cc(synth._lib)
        for p in range(n_parts):
            program = performer.program if performer.program >= 0 else (programs or [0] * n_parts)[p]
            synth.program(PITCHED_CHANNELS[p], int(program))
        done = 0
        for sample, kind, ch, a, b in events:
            if sample > done:
                out[done:sample] = synth.render(sample - done).mean(axis=0)
                done = sample
            if kind == 2:
                synth.note_on(ch, a, b)
            elif kind == 1:
                cc(synth._synth, ch, a, b)
            else:
                synth.note_off(ch, a)
        out[done:] = synth.render(total - done).mean(axis=0)
    return out


def mel_filterbank(sample_rate_hz: int = SAMPLE_RATE_HZ, n_fft: int = N_FFT, n_mels: int = N_MELS,
                   fmin_hz: float = FMIN_HZ, fmax_hz: float = FMAX_HZ) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters on the Slaney mel scale, area-normalised (as
    librosa's default, which HiFi-GAN's features use)."""
    def hz_to_mel(f):
        f = np.asarray(f, np.float64)
        return np.where(f < 1000, 3 * f / 200, 15 + 27 * np.log(np.maximum(f, 1e-9) / 1000) / np.log(6.4))

    def mel_to_hz(m):
        return np.where(m < 15, 200 * m / 3, 1000 * np.exp(np.log(6.4) * (m - 15) / 27))

    freqs = np.linspace(0, sample_rate_hz / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin_hz), hz_to_mel(fmax_hz), n_mels + 2))
    lower = (freqs[None, :] - edges[:-2, None]) / np.diff(edges)[:-1, None]
    upper = (edges[2:, None] - freqs[None, :]) / np.diff(edges)[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper)) * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return torch.from_numpy(weights.astype(np.float32))


_FILTERS: dict[int, torch.Tensor] = {}


def log_mel(audio: np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """(n_mels, frames) float32 natural-log mel magnitudes; frame i is centred on sample i * HOP."""
    if sample_rate_hz not in _FILTERS:
        _FILTERS[sample_rate_hz] = mel_filterbank(sample_rate_hz)
    x = torch.from_numpy(np.ascontiguousarray(audio, np.float32))
    spec = torch.stft(x, N_FFT, HOP, WIN, torch.hann_window(WIN), center=True, pad_mode="reflect",
                      return_complex=True).abs()  # (F, frames)
    return torch.log(torch.clamp(_FILTERS[sample_rate_hz] @ spec, min=LOG_FLOOR)).numpy()
