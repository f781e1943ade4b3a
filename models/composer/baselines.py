"""Rule-based baselines the composer is measured against.

``infill_voice`` is the voice-infilling baseline for chorales: hide one of soprano, alto, tenor and
bass, and write it again from the other three and the chords. Its rhythm is a neighbouring
voice's (or the beat); each note is the chord tone inside the voice's range that costs least: the
distance from the previous note, plus penalties for crossing or touching the neighbouring voices,
for spacing wider than an octave between upper voices, for doubling while a chord tone is missing,
and, in the bass, for leaving the chord's bass note (its root where the chords come from the upper
voices). ``evaluate_infill`` scores it by note F1
(onset and pitch) on held-out chorales.
"""
from __future__ import annotations

import numpy as np

from bridge.chords import chord_at, chord_pitch_classes, identify_chords
from bridge.score import NOTE_DTYPE
from models.composer.metrics import note_f1
from models.data.instruments import INSTRUMENTS
from models.data.multitrack import MultiPiece

VOICES = ("soprano", "alto", "tenor", "bass")
RHYTHMS = ("beats", "neighbour")
CHORD_SOURCES = ("visible", "data")

# Where each voice usually sings in the chorales (MIDI): the first note starts there, and every
# note is pulled toward it a little (GRAVITY per semitone) so a line cannot drift an octave away.
CENTRES = (69, 63, 57, 50)
GRAVITY = 0.5
# Penalties in semitones of melodic motion.
CROSSING = 12
UNISON = 6
WIDE_SPACING = 4
DOUBLING = 3
NOT_THE_BASS = 8


def satb(piece: MultiPiece) -> list[int] | None:
    """Track index of soprano, alto, tenor and bass (the first track of each), or None where the
    piece lacks one."""
    tracks = [piece.instruments.index(v) if v in piece.instruments else None for v in VOICES]
    return None if None in tracks else tracks


def _sounding(notes: np.ndarray, length: int) -> np.ndarray:
    """(length,) the highest pitch a track sounds at each tick, -1 where it rests."""
    out = np.full(length, -1, np.int64)
    for n in notes[np.argsort(notes["pitch"], kind="stable")]:
        out[int(n["time"]):int(n["time"] + n["duration"])] = int(n["pitch"])
    return out


def _rhythm(voices: dict[int, np.ndarray], hidden: int, rhythm: str, resolution: int,
            length: int) -> tuple[np.ndarray, np.ndarray]:
    """(onsets, ends) of the notes to write: a neighbouring voice's (the one below, the soprano's
    neighbour being the alto) or one note per beat."""
    if rhythm == "beats":
        onsets = np.arange(0, length, resolution)
        return onsets, np.minimum(onsets + resolution, length)
    order = [v for v in (hidden + 1, hidden - 1) if v in voices]
    source = voices[order[0]]
    _, first = np.unique(source["time"], return_index=True)
    return source["time"][first], (source["time"] + source["duration"])[first]


def infill_voice(piece: MultiPiece, hidden: int, chords: np.ndarray | None = None,
                 rhythm: str = "beats") -> np.ndarray:
    """Notes (``NOTE_DTYPE``) for the SATB voice at position ``hidden`` (0 soprano .. 3 bass) of a
    chorale, written from the other three voices and ``chords`` (default: the chords the other
    three sound, so nothing of the hidden voice leaks in)."""
    if rhythm not in RHYTHMS:
        raise ValueError(f"rhythm must be one of {', '.join(RHYTHMS)}, got {rhythm!r}")
    if hidden not in range(4):
        raise ValueError(f"hidden must be a voice index 0..3 (soprano, alto, tenor, bass), got {hidden}")
    tracks = satb(piece)
    if tracks is None:
        raise ValueError(f"{piece.name} has no full set of soprano, alto, tenor and bass tracks; "
                         f"its instruments are {piece.instruments}")
    voices = {i: piece.notes[piece.track == t] for i, t in enumerate(tracks) if i != hidden}
    visible = np.concatenate(list(voices.values()))
    length = int((piece.notes["time"] + piece.notes["duration"]).max())
    given = chords is not None
    if not given:
        chords = identify_chords(visible, piece.resolution, length)
    sounding = {i: _sounding(n, length + 1) for i, n in voices.items()}
    inst = INSTRUMENTS[VOICES[hidden]]
    candidates = np.arange(inst.low, inst.high + 1)
    onsets, ends = _rhythm(voices, hidden, rhythm, piece.resolution, length)
    above = sounding.get(hidden - 1)
    below = sounding.get(hidden + 1)
    previous = None
    pitches = []
    for t, chord in zip(onsets, chord_at(chords, onsets)):
        tones = chord_pitch_classes(int(chords["root"][chord]), int(chords["quality"][chord]))
        pool = candidates[np.isin(candidates % 12, tones)]
        if not len(pool):
            pool = candidates
        hi = above[t] if above is not None and above[t] >= 0 else None
        lo = below[t] if below is not None and below[t] >= 0 else None
        centre = CENTRES[hidden]
        target = centre if previous is None else previous
        cost = np.abs(pool - target) + GRAVITY * np.abs(pool - centre)
        if hi is not None:
            cost += CROSSING * (pool > hi) + UNISON * (pool == hi)
            cost += WIDE_SPACING * (hidden < 3) * (hi - pool > 12)
        if lo is not None:
            cost += CROSSING * (pool < lo) + UNISON * (pool == lo)
            cost += WIDE_SPACING * (hidden < 2) * (pool - lo > 12)
        heard = {int(s[t]) % 12 for s in sounding.values() if s[t] >= 0}
        if set(tones) - heard:
            cost += DOUBLING * np.isin(pool % 12, list(heard))
        if hidden == 3:  # chords from the upper voices know no bass: the root stands in for it
            bass = int(chords["bass"][chord] if given else chords["root"][chord])
            cost += NOT_THE_BASS * (pool % 12 != bass)
        previous = int(pool[np.argmin(cost)])
        pitches.append(previous)
    notes = np.zeros(len(onsets), NOTE_DTYPE)
    notes["time"], notes["pitch"], notes["duration"], notes["velocity"] = onsets, pitches, ends - onsets, 64
    return notes[notes["duration"] > 0]


def evaluate_infill(pieces: list[MultiPiece], rhythm: str = "beats",
                    chord_source: str = "visible") -> dict[str, float]:
    """Mean note F1 of ``infill_voice`` over every SATB voice of every chorale with all four
    (other tracks are left out of the context, so a doubling horn cannot give the soprano away).
    ``chord_source``: "visible" identifies chords from the three given voices; "data" uses the
    set's chords (analysed from all four, an upper bound for chord-conditioned infilling)."""
    if chord_source not in CHORD_SOURCES:
        raise ValueError(f"chord_source must be one of {', '.join(CHORD_SOURCES)}, got {chord_source!r}")
    scores = {v: [] for v in VOICES}
    for piece in pieces:
        tracks = satb(piece)
        if tracks is None:
            continue
        keep = np.isin(piece.track, tracks)
        remap = np.zeros(max(tracks) + 1, np.int16)
        remap[tracks] = np.arange(4)
        four = MultiPiece(**{**piece.__dict__, "notes": piece.notes[keep], "track": remap[piece.track[keep]],
                             "instruments": list(VOICES), "programs": [piece.programs[t] for t in tracks]})
        for hidden, voice in enumerate(VOICES):
            chords = four.chords if chord_source == "data" else None
            written = infill_voice(four, hidden, chords, rhythm)
            scores[voice].append(note_f1(four.notes[four.track == hidden], written)["f1"])
    if not scores["soprano"]:
        raise ValueError("no piece with soprano, alto, tenor and bass tracks to evaluate")
    out = {f"f1/{v}": float(np.mean(s)) for v, s in scores.items()}
    out["f1"] = float(np.mean([x for s in scores.values() for x in s]))
    out["pieces"] = len(scores["soprano"])
    return out


if __name__ == "__main__":  # python -m models.composer.baselines [split]: the table in the report
    import sys

    from models.data.multitrack import load

    split = sys.argv[1] if len(sys.argv) > 1 else "test"
    pieces = load("bach", split)
    for source in CHORD_SOURCES:
        scores = evaluate_infill(pieces, chord_source=source)
        print(f"bach {split}, chords from {source}: " + ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in scores.items()))
