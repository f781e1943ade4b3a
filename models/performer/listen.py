"""Listening to a render with tools the project did not write.

- **Transcription**: Spotify's basic-pitch (its ICASSP 2022 model as the ONNX file its wheel ships,
  run by onnxruntime) turns audio into notes; mir_eval scores them against the notes the render was
  asked to play (onset within 50 ms and the same pitch; offsets ignored), and gives each matched
  note's onset error.
- **Pitch of a monophonic part**: an f0 tracker, librosa's pyin or SwiftF0 (``swift-f0``: a small
  CNN whose ONNX file its wheel ships, the tracker the project's pitch target names; the audio is
  scaled to a peak of 0.5 first, as its README asks of quiet audio), tracks f0 (``f0_track``);
  mir_eval's raw pitch accuracy (within 50 cents, on the frames the score says sound) compares it
  with the score's pitches.

Both are optional dependencies (the ``dev`` extra and ``scripts/setup.sh --dev``; basic-pitch goes
in without its own dependencies, whose TensorFlow only its TF backend needs). ``needs()`` names
what is missing. A reference is a ``(n, 3)`` array of onset and offset in seconds and MIDI pitch.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import tempfile
import warnings

import numpy as np

ONSET_TOLERANCE_S = 0.05  # mir_eval's default: a note counts when its onset is within 50 ms
PYIN_SAMPLE_RATE_HZ = 22_050
PYIN_HOP = 256
TRACKERS = ("pyin", "swift-f0")


def needs() -> list[str]:
    """The packages listening needs that are not installed (empty when all are)."""
    return [m for m in ("basic_pitch", "onnxruntime", "mir_eval", "librosa", "soundfile")
            if importlib.util.find_spec(m) is None]


def _require() -> None:
    missing = needs()
    if missing:
        raise RuntimeError(f"listening needs {', '.join(missing)}; run `bash scripts/setup.sh --dev` "
                           "(basic-pitch is installed with --no-deps there)")


_MODEL = None


def _model():
    global _MODEL
    if _MODEL is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import logging

            logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # its backend notes
            from basic_pitch import ICASSP_2022_MODEL_PATH
            from basic_pitch.inference import Model

        onnx = ICASSP_2022_MODEL_PATH.with_suffix(".onnx") if ICASSP_2022_MODEL_PATH.suffix != ".onnx" \
            else ICASSP_2022_MODEL_PATH
        _MODEL = Model(onnx)
    return _MODEL


def transcribe(audio: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    """basic-pitch's notes of mono ``audio``: (n, 3) onset s, offset s, MIDI pitch, by onset."""
    _require()
    import soundfile
    from basic_pitch.inference import predict

    fd, path = tempfile.mkstemp(suffix=".wav")
    os.close(fd)
    try:
        soundfile.write(path, np.asarray(audio, np.float32), sample_rate_hz)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # it prints per file
            warnings.simplefilter("ignore")
            _, _, events = predict(path, _model())
    finally:
        os.unlink(path)
    notes = np.array([(e[0], e[1], e[2]) for e in events], np.float64).reshape(-1, 3)
    return notes[np.argsort(notes[:, 0], kind="stable")]


def _hz(pitch: np.ndarray) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(pitch, np.float64) - 69.0) / 12.0)


def _intervals(notes: np.ndarray) -> np.ndarray:
    iv = notes[:, :2].astype(np.float64).copy()
    iv[:, 1] = np.maximum(iv[:, 1], iv[:, 0] + 1e-3)  # mir_eval wants positive lengths
    return iv


def transcription_scores(reference: np.ndarray, estimated: np.ndarray,
                         onset_tolerance_s: float = ONSET_TOLERANCE_S) -> dict[str, float]:
    """Precision, recall and F1 of ``estimated`` notes against ``reference`` (onset and pitch), and
    the mean and median absolute onset error of the matched notes, in ms."""
    _require()
    import mir_eval

    reference, estimated = np.asarray(reference).reshape(-1, 3), np.asarray(estimated).reshape(-1, 3)
    if not len(reference):
        raise ValueError("the reference has no notes; nothing to score the transcription against")
    if not len(estimated):
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0, "matched": 0,
                "onset_error_ms_mean": float("nan"), "onset_error_ms_median": float("nan")}
    ref_iv, est_iv = _intervals(reference), _intervals(estimated)
    ref_hz, est_hz = _hz(reference[:, 2]), _hz(estimated[:, 2])
    p, r, f, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ref_iv, ref_hz, est_iv, est_hz, onset_tolerance=onset_tolerance_s, offset_ratio=None)
    matched = mir_eval.transcription.match_notes(ref_iv, ref_hz, est_iv, est_hz,
                                                 onset_tolerance=onset_tolerance_s, offset_ratio=None)
    errors = np.array([abs(ref_iv[i, 0] - est_iv[j, 0]) * 1000 for i, j in matched])
    return {"precision": float(p), "recall": float(r), "f1": float(f), "matched": len(matched),
            "onset_error_ms_mean": float(errors.mean()) if len(errors) else float("nan"),
            "onset_error_ms_median": float(np.median(errors)) if len(errors) else float("nan")}


_SWIFT = None


def _swift():
    global _SWIFT
    if _SWIFT is None:
        if importlib.util.find_spec("swift_f0") is None:
            raise RuntimeError("the swift-f0 tracker needs the swift-f0 package; run "
                               "`bash scripts/setup.sh --dev`")
        from swift_f0 import SwiftF0

        _SWIFT = SwiftF0(threads=1)
    return _SWIFT


def f0_track(audio: np.ndarray, sample_rate_hz: int, lowest_pitch: float, highest_pitch: float,
             tracker: str = "pyin") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(times s, f0 Hz, voiced) of monophonic audio, searched from an octave below MIDI
    ``lowest_pitch`` to an octave above ``highest_pitch``: pyin (frames of 256 at 22,050 Hz) or
    swift-f0 (16 ms frames at 16 kHz; voiced at its confidence 0.5)."""
    _require()
    import librosa

    if tracker not in TRACKERS:
        raise ValueError(f"tracker must be one of {', '.join(TRACKERS)}, got {tracker!r}")
    fmin = float(librosa.midi_to_hz(max(24, lowest_pitch - 12)))
    fmax = float(librosa.midi_to_hz(min(108, highest_pitch + 12)))
    y = np.asarray(audio, np.float32)
    if tracker == "swift-f0":
        from swift_f0 import FMAX, FMIN

        peak = float(np.abs(y).max()) if len(y) else 0.0
        result = _swift().detect(y * (0.5 / peak) if peak > 0 else y, sample_rate_hz,
                                 fmin=max(fmin, FMIN), fmax=min(fmax, FMAX))
        return result.timestamps, result.pitch_hz, result.confidence >= 0.5
    if sample_rate_hz != PYIN_SAMPLE_RATE_HZ:
        y = librosa.resample(y, orig_sr=sample_rate_hz, target_sr=PYIN_SAMPLE_RATE_HZ)
    f0, voiced, _ = librosa.pyin(y, fmin=fmin, fmax=fmax, sr=PYIN_SAMPLE_RATE_HZ, hop_length=PYIN_HOP)
    return librosa.times_like(f0, sr=PYIN_SAMPLE_RATE_HZ, hop_length=PYIN_HOP), f0, voiced


def pitch_accuracy(audio: np.ndarray, sample_rate_hz: int, reference: np.ndarray,
                   tracker: str = "pyin") -> float:
    """Raw pitch accuracy (within 50 cents) of ``tracker``'s f0 (``f0_track``) on the frames where
    the monophonic ``reference`` sounds a note."""
    _require()
    import mir_eval

    reference = np.asarray(reference).reshape(-1, 3)
    if not len(reference):
        raise ValueError("the reference has no notes; nothing to compare the pitch with")
    times, f0, voiced = f0_track(audio, sample_rate_hz, reference[:, 2].min(), reference[:, 2].max(), tracker)
    ref_hz = np.zeros(len(times))
    for onset, offset, pitch in reference:  # a later note takes over where two overlap (legato)
        ref_hz[(times >= onset) & (times < offset)] = _hz(pitch)
    est_hz = np.where(voiced & np.isfinite(f0), np.nan_to_num(f0), 0.0)
    ref_freq, ref_voicing = mir_eval.melody.freq_to_voicing(ref_hz)
    est_freq, est_voicing = mir_eval.melody.freq_to_voicing(est_hz)
    return float(mir_eval.melody.raw_pitch_accuracy(ref_voicing, mir_eval.melody.hz2cents(ref_freq),
                                                    est_voicing, mir_eval.melody.hz2cents(est_freq)))
