"""An in-process SoundFont synthesiser: libfluidsynth through ctypes, rendering into numpy buffers.

It serves the engine's ``perform`` jobs, live sessions and the CLI's ``perform`` and
``arrange --render``, which need audio block by block, sample-accurately, without a process per
request. Only the dozen C calls used here are bound, against FluidSynth 2.x's stable
API (Debian: ``libfluidsynth3``, installed with the ``fluidsynth`` package). FluidSynth shares the
samples of a SoundFont file among the synths of one process, so a synth per live session is cheap
after the first.

Events are given in samples: ``render(n, events)`` plays each event at its offset in the block.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

SOUNDFONT_ENV = "DEEP_MUSICIAN_SOUNDFONT"
SOUNDFONT_PATHS = (Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"), Path("/usr/share/sounds/sf2/default-GM.sf2"))
SOUNDFONT_DIRS = (Path("/usr/share/soundfonts"),)
SAMPLE_RATES_HZ = (8000, 96000)  # FluidSynth's synth.sample-rate range
GAIN = 0.6  # FluidSynth's default 0.2 renders a solo piano far below full scale
EVENT_DTYPE = np.dtype([("sample", "<i8"), ("on", "u1"), ("channel", "u1"), ("pitch", "u1"),
                        ("velocity", "u1")])
_LIBRARY_NAMES = ("fluidsynth", "libfluidsynth.so.3", "libfluidsynth.so.2", "libfluidsynth.3.dylib")
_lib: ctypes.CDLL | None = None
_lib_lock = threading.Lock()


def find_soundfont() -> Path | None:
    """The SoundFont to render with: ``$DEEP_MUSICIAN_SOUNDFONT``, then Debian's GM fonts, then any
    ``.sf2`` in /usr/share/soundfonts. None when there is none."""
    configured = os.environ.get(SOUNDFONT_ENV)
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"{SOUNDFONT_ENV} is set to {configured}, but there is no file there; "
                "point it at an existing .sf2 file or unset it to use the system SoundFont"
            )
        return path
    for path in SOUNDFONT_PATHS:
        if path.is_file():
            return path
    for folder in SOUNDFONT_DIRS:
        found = sorted(folder.glob("*.sf2")) if folder.is_dir() else []
        if found:
            return found[0]
    return None


class SynthUnavailable(RuntimeError):
    """libfluidsynth or a SoundFont is missing; the message says what to install."""


def _load_library() -> ctypes.CDLL:
    global _lib
    with _lib_lock:
        if _lib is not None:
            return _lib
        names = [ctypes.util.find_library("fluidsynth"), *_LIBRARY_NAMES]
        for name in filter(None, names):
            try:
                lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        else:
            raise SynthUnavailable("libfluidsynth is not installed; install it (Debian/Ubuntu: apt-get "
                                   "install fluidsynth, macOS: brew install fluid-synth)")
        vp, c, i, d = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_double
        for fn, args, res in (
                ("new_fluid_settings", [], vp), ("delete_fluid_settings", [vp], None),
                ("fluid_settings_setnum", [vp, c, d], i), ("fluid_settings_setint", [vp, c, i], i),
                ("new_fluid_synth", [vp], vp), ("delete_fluid_synth", [vp], None),
                ("fluid_synth_sfload", [vp, c, i], i), ("fluid_synth_program_change", [vp, i, i], i),
                ("fluid_synth_noteon", [vp, i, i, i], i), ("fluid_synth_noteoff", [vp, i, i], i),
                ("fluid_synth_all_notes_off", [vp, i], i), ("fluid_synth_all_sounds_off", [vp, i], i),
                ("fluid_synth_write_float", [vp, i, vp, i, i, vp, i, i], i),
                ("fluid_set_log_function", [i, vp, vp], vp)):
            f = getattr(lib, fn)
            f.argtypes, f.restype = args, res
        for level in (2, 3, 4):  # FLUID_WARN, INFO, DBG: not for users' logs; errors still print
            lib.fluid_set_log_function(level, None, None)
        _lib = lib
        return lib


def available() -> str:
    """An empty string when synths can be made here, else what is missing (for `doctor`)."""
    try:
        _load_library()
        if find_soundfont() is None:
            return (f"no SoundFont found; install fluid-soundfont-gm or set {SOUNDFONT_ENV} to a "
                    ".sf2 file")
    except (SynthUnavailable, FileNotFoundError) as exc:
        return str(exc)
    return ""


class Synth:
    """One FluidSynth instance: 16 MIDI channels, stereo float output. Not thread-safe: use one
    synth from one thread at a time (the engine gives each job or live session its own)."""

    def __init__(self, sample_rate_hz: int = 48_000, soundfont: str | Path | None = None,
                 gain: float = GAIN, free_on: Callable[[Callable[[], None]], None] | None = None) -> None:
        """``free_on``, if given, takes the call that frees the native synthesiser and runs it where
        it chooses (the engine frees each synth on the thread that made it: see SynthFactory)."""
        self._free_on = free_on
        if not SAMPLE_RATES_HZ[0] <= sample_rate_hz <= SAMPLE_RATES_HZ[1]:
            raise ValueError(f"sample_rate_hz must be {SAMPLE_RATES_HZ[0]}..{SAMPLE_RATES_HZ[1]} for "
                             f"FluidSynth, got {sample_rate_hz}")
        self._lib = lib = _load_library()
        path = Path(soundfont) if soundfont is not None else find_soundfont()
        if path is None:
            raise SynthUnavailable(f"no SoundFont found; install one (Debian/Ubuntu: apt-get install "
                                   f"fluid-soundfont-gm) or set {SOUNDFONT_ENV} to a .sf2 file")
        if not path.is_file():
            raise FileNotFoundError(f"no SoundFont at {path}; pass an existing .sf2 file")
        self.sample_rate_hz, self.soundfont = sample_rate_hz, path
        self._settings = lib.new_fluid_settings()
        lib.fluid_settings_setnum(self._settings, b"synth.sample-rate", float(sample_rate_hz))
        lib.fluid_settings_setnum(self._settings, b"synth.gain", float(gain))
        lib.fluid_settings_setint(self._settings, b"synth.threadsafe-api", 0)  # one thread per synth
        self._synth = lib.new_fluid_synth(self._settings)
        if not self._synth:
            lib.delete_fluid_settings(self._settings)
            raise SynthUnavailable("FluidSynth could not create a synthesiser (out of memory?)")
        if lib.fluid_synth_sfload(self._synth, str(path).encode(), 1) < 0:
            self.close()
            raise SynthUnavailable(f"FluidSynth could not load the SoundFont {path}; check that it is "
                                   "a valid .sf2 file")

    def program(self, channel: int, program: int) -> None:
        self._lib.fluid_synth_program_change(self._synth, channel, program)

    def note_on(self, channel: int, pitch: int, velocity: int) -> None:
        self._lib.fluid_synth_noteon(self._synth, channel, pitch, velocity)

    def note_off(self, channel: int, pitch: int) -> None:
        self._lib.fluid_synth_noteoff(self._synth, channel, pitch)

    def all_notes_off(self, immediately: bool = False) -> None:
        """Release every note (with its release tail), or cut all sound at once."""
        fn = self._lib.fluid_synth_all_sounds_off if immediately else self._lib.fluid_synth_all_notes_off
        fn(self._synth, -1)

    def render(self, n_samples: int, events: np.ndarray | None = None) -> np.ndarray:
        """The next `n_samples` of output as a (2, n) float32 array; `events` (EVENT_DTYPE, sorted by
        sample) are played at their `sample` offset into this block (clipped to the block)."""
        out = np.empty((2, n_samples), np.float32)
        if n_samples == 0:
            return out
        done = 0
        if events is not None and len(events):
            offsets = np.clip(events["sample"], 0, n_samples - 1)
            for offset, ev in zip(offsets.tolist(), events.tolist()):
                if offset > done:
                    self._write(out, done, offset)
                    done = offset
                _, on, channel, pitch, velocity = ev
                if on:
                    self.note_on(channel, pitch, velocity)
                else:
                    self.note_off(channel, pitch)
        self._write(out, done, n_samples)
        return out

    def _write(self, out: np.ndarray, start: int, stop: int) -> None:
        left, right = out[0, start:stop], out[1, start:stop]
        self._lib.fluid_synth_write_float(self._synth, stop - start, left.ctypes.data, 0, 1,
                                          right.ctypes.data, 0, 1)

    def close(self) -> None:
        # a synth whose __init__ failed part way is closed too (by __del__): only what it made
        lib, synth = getattr(self, "_lib", None), getattr(self, "_synth", None)
        settings = getattr(self, "_settings", None)
        self._synth = self._settings = None
        if lib is None or not (synth or settings):
            return

        def free() -> None:
            if synth:
                lib.delete_fluid_synth(synth)
            if settings:
                lib.delete_fluid_settings(settings)

        free_on = getattr(self, "_free_on", None)
        if free_on is None:
            free()
        else:
            free_on(free)

    def __enter__(self) -> Synth:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
