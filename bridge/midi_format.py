"""What both MIDI readers share: the file format's limits, how it stores text, and the rules that
turn what a reader found into a ``Score``.

``bridge.midi`` reads every message through mido; ``bridge.midi_symusic`` parses in C++ through
symusic and must return the same ``Score``. Both end in ``assemble_score``, so track naming,
programs and the title follow one set of rules; neither reader imports the other's module for
them (``bridge.midi`` calls the symusic reader, in that direction only).
"""

from __future__ import annotations

import numpy as np

from bridge.score import DRUM_CHANNEL, Score, Track

MAX_TICKS_PER_BEAT = 0x7FFF  # the top bit of the header's division field means SMPTE time
MAX_TEMPO_US = 0xFFFFFF  # set_tempo holds microseconds per quarter note in 24 bits


def encode_meta_text(text: str) -> str:
    """A name as mido writes it: mido writes meta text as latin-1, and smuggling UTF-8 bytes
    through it keeps any name intact."""
    return text.encode("utf-8").decode("latin-1")


def decode_meta_text(text: str) -> str:
    """The inverse of ``encode_meta_text`` for names read from a file."""
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text  # a genuine latin-1 name from another program


def last_per_tick(a: np.ndarray) -> np.ndarray:
    """Sort by time and keep the last event at each tick: that is the one a player ends up using."""
    if len(a) < 2:
        return a
    a = a[np.argsort(a["time"], kind="stable")]
    last = np.append(a["time"][1:] != a["time"][:-1], True) if len(a) else np.zeros(0, bool)
    return a[last]


def assemble_score(
    resolution: int,
    midi_format: int,
    notes: dict[tuple[int, int], np.ndarray],
    names: dict[int, str],
    programs: dict[tuple[int, int], int],
    tempos: np.ndarray,
    meters: np.ndarray,
    keys: np.ndarray,
    stem: str,
) -> Score:
    """Both readers end here, so track naming, programs and the title follow one set of rules.

    ``notes`` maps (MIDI track, channel) to that group's notes, already in ``sort_order``;
    ``programs`` holds the first program change of each (MIDI track, channel); ``names`` the first
    track name of each MIDI track.
    """
    # Type-1 files often put program changes in another track than the notes of that channel.
    channel_programs: dict[int, int] = {}
    for (_, channel), program in sorted(programs.items()):
        channel_programs.setdefault(channel, program)
    tracks = []
    per_index: dict[int, int] = {}
    for index, _ in notes:
        per_index[index] = per_index.get(index, 0) + 1
    for index, channel in sorted(notes):
        name = names.get(index, "Drums" if channel == DRUM_CHANNEL else f"Track {index + 1}")
        if per_index[index] > 1:
            name = f"{name} ch{channel + 1}".strip()
        program = programs.get((index, channel), channel_programs.get(channel, 0))
        tracks.append(Track(name, program, channel == DRUM_CHANNEL, notes[(index, channel)]))

    title = stem
    if midi_format == 1 and 0 not in per_index and names.get(0):
        title = names[0]  # the conductor track's name is the song title by convention
    return Score(resolution, tracks, tempos, meters, keys, title)


def zero_length_remarks(count: int) -> list[str]:
    """What ``read_midi`` tells the user about the zero-length notes it lengthened to one tick."""
    if not count:
        return []
    return [f"{count} zero-length notes (a note_on and its note_off at one tick) are read as one tick "
            "long, the shortest note a part can hold; every other note is as in the file"]
