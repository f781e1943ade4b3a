"""Notation formats read through music21: MusicXML, compressed MXL, Humdrum (**kern) and ABC.

music21 is imported lazily: it takes about a second to import and MIDI-only users never need it.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from bridge.score import (
    DEFAULT_RESOLUTION,
    KEY_DTYPE,
    METER_DTYPE,
    TEMPO_DTYPE,
    Score,
    ScoreReadError,
    Track,
    make_notes,
    sort_order,
)


def _gm_program(part) -> int:
    inst = part.getInstrument(returnDefault=True)
    program = getattr(inst, "midiProgram", None)
    return int(program) if program is not None and 0 <= int(program) <= 127 else 0


def from_music21(stream, resolution: int = DEFAULT_RESOLUTION, title: str = "") -> Score:
    """Convert a music21 Score (or Opus) into a ``Score``.

    Ties are merged into single notes, chords become one note per pitch, grace notes (zero length)
    are dropped, and every part becomes one track named after ``partName``. An Opus whose scores
    all share one title is one piece written voice by voice (ABC files of polyphony put each
    voice in its own tune, named by its second title): its voices become the tracks. Any other
    Opus is a collection of pieces, and the first one is read.
    """
    from music21 import key as m21key
    from music21 import meter, tempo
    from music21 import stream as m21stream

    names: list[str] = []
    if isinstance(stream, m21stream.Opus):
        scores = list(stream.scores)
        if not scores:
            raise ScoreReadError("the file holds an empty collection of scores")
        titles = {sc.metadata.title if sc.metadata is not None else None for sc in scores}
        if len(scores) > 1 and len(titles) == 1 and None not in titles:
            parts = [p for sc in scores for p in (sc.parts if len(sc.parts) else [sc])]
            names = [getattr(sc.metadata, "alternativeTitle", None) or "" for sc in scores
                     for _ in (sc.parts if len(sc.parts) else [sc])]
        stream = scores[0]
    if not names:
        parts = list(stream.parts) if hasattr(stream, "parts") and len(stream.parts) else [stream]
    tracks = []
    for i, part in enumerate(parts):
        flat = part.stripTies(matchByPitch=True).flatten()
        times, pitches, durations, velocities = [], [], [], []
        for el in flat.notes:
            duration = int(round(float(el.duration.quarterLength) * resolution))
            if duration <= 0:
                continue  # grace notes carry no time in the notated rhythm
            onset = int(round(float(el.offset) * resolution))
            velocity = el.volume.velocity if el.volume.velocity is not None else 64
            for p in el.pitches:
                times.append(onset)
                pitches.append(int(p.midi))
                durations.append(duration)
                velocities.append(int(np.clip(velocity, 1, 127)))
        notes = make_notes(times, pitches, durations, velocities)
        notes = notes[sort_order(notes)]
        name = ((names[i] if names else "") or part.partName
                or (part.id if isinstance(part.id, str) else "") or f"Part {i + 1}")
        tracks.append(Track(name=str(name), program=_gm_program(part), notes=notes))

    flat = stream.flatten()
    tempos = [(int(round(float(m.offset) * resolution)), float(m.getQuarterBPM()))
              for m in flat.getElementsByClass(tempo.MetronomeMark) if m.number is not None]
    meters = [(int(round(float(m.offset) * resolution)), m.numerator, m.denominator)
              for m in flat.getElementsByClass(meter.TimeSignature)]
    keys = [(int(round(float(k.offset) * resolution)), int(k.sharps), int(getattr(k, "mode", "") == "minor"))
            for k in flat.getElementsByClass(m21key.KeySignature)]
    meta_title = ""
    if stream.metadata is not None:
        meta_title = stream.metadata.title or stream.metadata.movementName or ""
    return Score(
        resolution=resolution,
        tracks=tracks,
        tempos=_dedup(np.array(tempos, TEMPO_DTYPE)),
        meters=_dedup(np.array(meters, METER_DTYPE)),
        keys=_dedup(np.array(keys, KEY_DTYPE)),
        title=title or str(meta_title),
    )


def _dedup(a: np.ndarray) -> np.ndarray:
    """One event per tick (parts repeat the same meter and key); keep the first."""
    if len(a) == 0:
        return a
    a = a[np.argsort(a["time"], kind="stable")]
    _, first = np.unique(a["time"], return_index=True)
    return a[first]


def read_notation(path: str | os.PathLike, resolution: int = DEFAULT_RESOLUTION) -> Score:
    """Read MusicXML, MXL, Humdrum or ABC. Raises ``ScoreReadError`` with the reason on failure."""
    from music21 import converter

    path = Path(path)
    try:
        stream = converter.parse(str(path))
    except Exception as exc:  # music21 raises many unrelated types for a bad file
        raise ScoreReadError(f"could not parse {path.name} as notation: {exc}") from exc
    return from_music21(stream, resolution, title=path.stem)


def write_musicxml(score: Score, path: str | os.PathLike) -> None:
    """Write a score as MusicXML (one part per track), quantised by music21."""
    from music21 import instrument, note, tempo
    from music21 import stream as m21stream

    out = m21stream.Score()
    for track in score.tracks:
        part = m21stream.Part()
        part.partName = track.name
        inst = instrument.instrumentFromMidiProgram(track.program)
        part.insert(0, inst)
        for n in track.notes:
            m = note.Note(int(n["pitch"]))
            m.quarterLength = float(n["duration"]) / score.resolution
            m.volume.velocity = int(n["velocity"])
            part.insert(float(n["time"]) / score.resolution, m)
        out.insert(0, part)
    if len(score.tempos):
        out.insert(0, tempo.MetronomeMark(number=float(score.tempos["qpm"][0])))
    out.write("musicxml", fp=str(path))
