"""Pair a real recording with its score: dynamic time warping over chroma and chroma-onset features.

    deep-musician data align score.musicxml take.wav -o performed.mid [--json notes.json]

For users with recordings of what they have scores for (the Bach Violin Dataset, URMP, MAESTRO
layouts: one audio file per score): the performed onset and end of every score note, the target the
alignment model learns (``models.performer.expression.PERFORMED_DTYPE``'s ``onset_s``).

Features, both at ``HOP`` samples of 22,050 Hz (23 ms): the audio's CQT chroma and its half-wave
rectified frame-to-frame increase (where notes start); the score's own, from its notes directly (a
pitch-class roll with a decay, and the pitch classes struck at each frame), so no synthesiser is
needed. Both are normalised per frame and compared by cosine distance; librosa's DTW finds the
cheapest monotonic path, and each note's score time maps to the mean audio time of the frames the
path pairs with it, interpolated between frames. Chroma rises late on slow attacks (organ, strings:
~60 ms after the note starts), so each aligned onset then moves to the nearest onset the recording
shows (librosa's spectral-flux onsets, backtracked to the energy minimum before each) when one lies
within ``SNAP_S``. Measured on rendered held-out chorales (``benchmarks/perform_dtw.py``).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_RATE_HZ = 22_050
HOP = 256  # 11.6 ms (512 was 10 % worse on the benchmark below)
ONSET_WEIGHT = 1.0  # chroma-onset features beside plain chroma, relative weight (0.5 and 2 were worse)
DECAY_S = 0.6  # the score roll fades over this time, as a plucked or struck note does
SNAP_S = 0.15  # an aligned onset moves to the recording's nearest detected onset this close


@dataclass
class Alignment:
    """The warping path in seconds (score, audio), and the map it defines."""
    score_s: np.ndarray
    audio_s: np.ndarray

    def __call__(self, score_seconds) -> np.ndarray:
        return np.interp(np.asarray(score_seconds, np.float64), self.score_s, self.audio_s)


def _normalise(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=0, keepdims=True)
    return x / np.maximum(norm, 1e-9)


def score_features(onset_s: np.ndarray, duration_s: np.ndarray, pitch: np.ndarray, n_frames: int,
                   hop_s: float) -> np.ndarray:
    """(24, n_frames): chroma of the sounding notes (fading after each onset) and the pitch classes
    struck in each frame."""
    chroma = np.zeros((12, n_frames))
    onsets = np.zeros((12, n_frames))
    for t, d, p in zip(onset_s, duration_s, pitch):
        a = min(int(round(t / hop_s)), n_frames - 1)
        b = max(a + 1, min(int(round((t + d) / hop_s)), n_frames))
        ages = np.arange(b - a) * hop_s
        chroma[int(p) % 12, a:b] += np.exp(-ages / DECAY_S)
        onsets[int(p) % 12, a] += 1.0
    return np.vstack([_normalise(chroma), ONSET_WEIGHT * _normalise(onsets)])


def audio_features(audio: np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """(24, frames): CQT chroma of the audio and its half-wave rectified increase per frame."""
    import librosa

    if sample_rate_hz != SAMPLE_RATE_HZ:
        audio = librosa.resample(audio, orig_sr=sample_rate_hz, target_sr=SAMPLE_RATE_HZ)
    chroma = librosa.feature.chroma_cqt(y=np.asarray(audio, np.float32), sr=SAMPLE_RATE_HZ, hop_length=HOP)
    rise = np.maximum(np.diff(chroma, axis=1, prepend=chroma[:, :1]), 0.0)
    return np.vstack([_normalise(chroma), ONSET_WEIGHT * _normalise(rise)])


def align(onset_s: np.ndarray, duration_s: np.ndarray, pitch: np.ndarray, audio: np.ndarray,
          sample_rate_hz: int = SAMPLE_RATE_HZ) -> Alignment:
    """The map from score seconds (the notes at the score's tempo) to the recording's seconds."""
    import librosa

    if not len(onset_s):
        raise ValueError("the score has no notes to align; give a score with notes")
    if len(audio) < HOP * 4:
        raise ValueError(f"the recording is {len(audio) / sample_rate_hz:.2f} s long: too short to align")
    hop_s = HOP / SAMPLE_RATE_HZ
    heard = audio_features(audio, sample_rate_hz)
    end_s = float(np.max(np.asarray(onset_s) + np.asarray(duration_s)))
    written = score_features(onset_s, duration_s, pitch, int(end_s / hop_s) + 2, hop_s)
    # cosine distance of the normalised frames; a silent frame (all zero) is 1 from everything
    cost = 1.0 - (written.T @ heard) / (1.0 + ONSET_WEIGHT ** 2)
    _, path = librosa.sequence.dtw(C=cost)
    path = path[::-1]  # librosa returns it end first
    frames = np.unique(path[:, 0])
    audio_frame = np.array([path[path[:, 0] == f, 1].mean() for f in frames])
    return Alignment(score_s=frames * hop_s, audio_s=audio_frame * hop_s)


def snap_to_onsets(times_s: np.ndarray, audio: np.ndarray, sample_rate_hz: int,
                   window_s: float = SNAP_S) -> np.ndarray:
    """Each time moved to the recording's nearest detected onset when one lies within ``window_s``."""
    import librosa

    onsets = librosa.onset.onset_detect(y=np.asarray(audio, np.float32), sr=sample_rate_hz, hop_length=HOP,
                                        backtrack=True, units="time")
    times_s = np.asarray(times_s, np.float64)
    if not len(onsets):
        return times_s
    i = np.clip(np.searchsorted(onsets, times_s), 1, max(len(onsets) - 1, 1))
    before, after = onsets[i - 1], onsets[np.minimum(i, len(onsets) - 1)]
    nearest = np.where(np.abs(before - times_s) <= np.abs(after - times_s), before, after)
    return np.where(np.abs(nearest - times_s) <= window_s, nearest, times_s)


def align_notes(onset_s: np.ndarray, duration_s: np.ndarray, pitch: np.ndarray, audio: np.ndarray,
                sample_rate_hz: int = SAMPLE_RATE_HZ, snap: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Performed onsets and ends (seconds in the recording) of notes given at the score's tempo."""
    warp = align(onset_s, duration_s, pitch, audio, sample_rate_hz)
    onsets = warp(onset_s)
    if snap:
        onsets = snap_to_onsets(onsets, audio, sample_rate_hz)
    ends = np.maximum(warp(np.asarray(onset_s) + np.asarray(duration_s)), onsets + 0.01)
    return onsets, ends


def align_score(score, audio: np.ndarray, sample_rate_hz: int) -> list[dict]:
    """Every note of a ``bridge.score.Score`` with its score and performed seconds."""
    from bridge.score import tick_to_seconds

    rows = [(ti, n) for ti, track in enumerate(score.tracks) for n in track.notes.tolist()]
    if not rows:
        raise ValueError("the score has no notes to align; give a score with notes")
    ticks = np.array([n[0] for _, n in rows], np.float64)
    ends = ticks + np.array([n[2] for _, n in rows], np.float64)
    onset_s, end_s = tick_to_seconds(score, ticks), tick_to_seconds(score, ends)
    pitch = np.array([n[1] for _, n in rows])
    performed_on, performed_end = align_notes(onset_s, end_s - onset_s, pitch, audio, sample_rate_hz)
    return [{"track": score.tracks[ti].name, "pitch": int(n[1]), "velocity": int(n[3]),
             "score_onset_s": round(float(a), 4), "score_end_s": round(float(b), 4),
             "onset_s": round(float(c), 4), "end_s": round(float(d), 4)}
            for (ti, n), a, b, c, d in zip(rows, onset_s, end_s, performed_on, performed_end)]


def performed_score(score, notes: list[dict]):
    """The score's tracks with every note at its performed time (120 qpm: a tick is 1/960 s)."""
    from bridge.score import TEMPO_DTYPE, Score, Track, make_notes

    resolution, per_s = 480, 960.0
    tracks = []
    for track in score.tracks:
        mine = [n for n in notes if n["track"] == track.name]
        on = np.array([n["onset_s"] for n in mine]) * per_s
        end = np.array([n["end_s"] for n in mine]) * per_s
        tracks.append(Track(name=track.name, program=track.program, is_drum=track.is_drum, notes=make_notes(
            np.round(on), [n["pitch"] for n in mine], np.maximum(np.round(end - on), 1),
            [n["velocity"] for n in mine])))
    return Score(resolution=resolution, tracks=tracks, tempos=np.array([(0, 120.0)], TEMPO_DTYPE),
                 title=score.title, composer=score.composer)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("score", type=Path, help="the score (MusicXML, MIDI, ABC...)")
    p.add_argument("audio", type=Path, help="the recording (WAV, FLAC, OGG: what soundfile reads)")
    p.add_argument("-o", "--out", type=Path, required=True,
                   help="MIDI file of the notes at their performed times")
    p.add_argument("--json", type=Path, help="also every note's score and performed seconds as JSON")


def run(args: argparse.Namespace) -> int:
    """Align a recording to its score; one sentence and 2 on bad input, nothing written."""
    import soundfile

    from bridge.midi import write_midi
    from bridge.scorefile import read_score

    for path in (args.out, args.json):
        if path is not None and path.exists():
            print(f"error: {path} exists; give another output path (nothing is overwritten)", file=sys.stderr)
            return 2
    try:
        score = read_score(args.score)
        audio, sr = soundfile.read(str(args.audio), dtype="float32", always_2d=True)
        notes = align_score(score, audio.mean(axis=1), sr)
        performed = performed_score(score, notes)
    except (OSError, ValueError, RuntimeError) as e:  # soundfile raises RuntimeError subclasses
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_midi(performed, args.out)
    if args.json:
        args.json.write_text("[\n" + ",\n".join(json.dumps(n) for n in notes) + "\n]\n")
    print(f"aligned {len(notes)} notes of {args.score.name} to {args.audio.name} "
          f"({len(audio) / sr:.1f} s) -> {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m models.data.audio_align",
                                description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
