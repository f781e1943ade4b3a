"""Reading a score file of any supported format: ``read_score`` picks the reader by suffix.

The suffix lists live here and nowhere else; MIDI goes to ``bridge.midi.read_midi``, notation
(MusicXML, MXL, Humdrum, ABC) to ``bridge.notation.read_notation``. Both readers raise
``ScoreReadError`` (from ``bridge.score``, importable from here too) for a file they cannot read.
"""

from __future__ import annotations

import os
from pathlib import Path

from bridge.midi import read_midi
from bridge.notation import read_notation
from bridge.score import DEFAULT_RESOLUTION, Score, ScoreReadError, check_score_file

__all__ = ["MIDI_SUFFIXES", "NOTATION_SUFFIXES", "SCORE_SUFFIXES", "ScoreReadError", "read_score"]

MIDI_SUFFIXES = (".mid", ".midi")
NOTATION_SUFFIXES = (".xml", ".musicxml", ".mxl", ".krn", ".abc")
SCORE_SUFFIXES = MIDI_SUFFIXES + NOTATION_SUFFIXES


def read_score(path: str | os.PathLike, resolution: int | None = None,
               tune: str | int | None = None, keep_zero_length: bool = False) -> Score:
    """Read any supported score file, chosen by suffix: MIDI through ``read_midi``, notation through
    ``bridge.notation.read_notation``. ``resolution`` defaults to the file's own for MIDI and to
    ``DEFAULT_RESOLUTION`` for notation, which has none; ``tune`` picks a piece of a collection
    (ABC files of many tunes); ``keep_zero_length`` keeps notes of no length (zero-length MIDI
    notes, grace notes) at duration 0."""
    path = Path(path)
    suffix = path.suffix.lower()
    check_score_file(path)
    if suffix not in SCORE_SUFFIXES:
        supported = ", ".join(SCORE_SUFFIXES)
        raise ScoreReadError(
            f"cannot read {path.name}: the suffix {suffix or '(none)'!r} is not a score "
            f"format; supported suffixes are {supported}"
        )
    if suffix in MIDI_SUFFIXES:
        return read_midi(path, resolution, keep_zero_length=keep_zero_length)
    resolution = DEFAULT_RESOLUTION if resolution is None else resolution
    return read_notation(path, resolution, tune, keep_zero_length)
