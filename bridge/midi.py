"""Standard MIDI files <-> ``Score`` (``bridge.scorefile.read_score`` reads any score format).

``read_midi`` parses with symusic (C++) where it is installed and with mido otherwise; both give the
same ``Score`` (see ``bridge.midi_symusic``; the rules both follow are in ``bridge.midi_format``).
It makes one track per (MIDI track, channel) that holds notes; ``write_midi`` writes a type-1 file
with one MIDI track per ``Track``, so ``read_midi(write_midi(score))`` returns the same note arrays.
What does not survive the trip: empty tracks, ``Track.role``, and same-pitch notes on one track
where a later note ends before an earlier one (see ``_pair_notes``).
"""

from __future__ import annotations

import os
from collections import defaultdict, deque
from itertools import cycle
from pathlib import Path

import mido
import numpy as np

from bridge.midi_format import (
    MAX_TEMPO_US,
    MAX_TICKS_PER_BEAT,
    assemble_score,
    decode_meta_text,
    encode_meta_text,
    last_per_tick,
    zero_length_remarks,
)
from bridge.score import (
    DRUM_CHANNEL,
    KEY_DTYPE,
    METER_DTYPE,
    PITCHED_CHANNELS,
    TEMPO_DTYPE,
    Score,
    ScoreReadError,
    check_score_file,
    make_notes,
    sort_order,
)

try:  # a C++ parser, ~100x faster than mido; without it every file is read through mido
    import symusic
except ImportError:  # pragma: no cover - symusic is an install requirement, but optional at runtime
    symusic = None
else:  # the Score ``_read_mido`` returns for a file's bytes, or None where symusic cannot promise it
    from bridge.midi_symusic import read_symusic as _read_symusic

MIDI_ENGINES = ("auto", "symusic", "mido")

# Index ``fifths + 7``; the spellings are mido's key_signature names.
MAJOR_KEYS = ("Cb", "Gb", "Db", "Ab", "Eb", "Bb", "F", "C", "G", "D", "A", "E", "B", "F#", "C#")
MINOR_KEYS = (
    "Abm",
    "Ebm",
    "Bbm",
    "Fm",
    "Cm",
    "Gm",
    "Dm",
    "Am",
    "Em",
    "Bm",
    "F#m",
    "C#m",
    "G#m",
    "D#m",
    "A#m",
)
_KEY_FIFTHS = {
    name: (i - 7, minor)
    for minor, names in enumerate((MAJOR_KEYS, MINOR_KEYS))
    for i, name in enumerate(names)
}


def key_name(fifths: int, minor: int) -> str:
    """mido's name for a key signature: ``key_name(-2, 0) == "Bb"``, ``key_name(1, 1) == "Em"``."""
    if not -7 <= fifths <= 7:
        raise ValueError(f"key fifths must be -7..7 (flats negative, sharps positive), got {fifths}")
    return (MINOR_KEYS if minor else MAJOR_KEYS)[fifths + 7]


def _pair_notes(track: mido.MidiTrack, index: int, groups: dict) -> None:
    """Append [onset, pitch, duration, velocity] rows of one MIDI track to ``groups[(index, channel)]``.

    Notes of one pitch on one channel pair first-in, first-out: the first open note is the one a
    note_off ends. That is exact unless a same-pitch note starts later and ends earlier than another
    (nested notes), which MIDI cannot tell apart from two overlapping ones.
    """
    now = 0
    open_rows: dict[tuple[int, int], deque[list]] = defaultdict(deque)
    for msg in track:
        now += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            row = [now, msg.note, -1, msg.velocity]
            groups.setdefault((index, msg.channel), []).append(row)
            open_rows[(msg.channel, msg.note)].append(row)
        elif msg.type in ("note_on", "note_off") and open_rows[(msg.channel, msg.note)]:
            row = open_rows[(msg.channel, msg.note)].popleft()
            row[2] = now - row[0]
    for rows in open_rows.values():  # notes never switched off end with their track
        for row in rows:
            row[2] = now - row[0]


def _read_mido(path: Path) -> Score:
    """The reference reader: every message through mido, in Python."""
    try:
        mid = mido.MidiFile(path)
    except Exception as exc:  # mido raises OSError, EOFError, ValueError, KeySignatureError, ...
        raise ScoreReadError(
            f"could not read {path.name} as a MIDI file ({type(exc).__name__}: {exc}); "
            "a Standard MIDI File starts with the bytes 'MThd'"
        ) from exc
    if not 0 < mid.ticks_per_beat <= MAX_TICKS_PER_BEAT:
        raise ScoreReadError(
            f"{path.name} uses SMPTE or zero time division ({mid.ticks_per_beat}); only ticks per "
            "quarter note are supported, so re-export it from a sequencer with a PPQ resolution"
        )

    groups: dict[tuple[int, int], list[list]] = {}
    names: dict[int, str] = {}
    programs: dict[tuple[int, int], int] = {}
    tempos, meters, keys = [], [], []
    for index, track in enumerate(mid.tracks):
        _pair_notes(track, index, groups)
        now = 0
        for msg in track:
            now += msg.time
            if msg.type == "program_change":
                programs.setdefault((index, msg.channel), msg.program)
            elif msg.type == "track_name":
                names.setdefault(index, decode_meta_text(msg.name))
            elif msg.type == "set_tempo" and msg.tempo > 0:
                tempos.append((now, 60_000_000 / msg.tempo))
            elif msg.type == "time_signature":
                meters.append((now, msg.numerator, msg.denominator))
            elif msg.type == "key_signature" and msg.key in _KEY_FIFTHS:
                keys.append((now, *_KEY_FIFTHS[msg.key]))

    notes = {}
    for group, rows in groups.items():
        n = make_notes([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows])
        notes[group] = n[sort_order(n)]
    return assemble_score(
        mid.ticks_per_beat,
        mid.type,
        notes,
        names,
        programs,
        last_per_tick(np.array(tempos, TEMPO_DTYPE)),
        last_per_tick(np.array(meters, METER_DTYPE)),
        last_per_tick(np.array(keys, KEY_DTYPE)),
        path.stem,
    )


def read_midi(path: str | os.PathLike, resolution: int | None = None, engine: str = "auto",
              keep_zero_length: bool = False) -> Score:
    """Read a Standard MIDI File (type 0, 1 or 2) into a ``Score``.

    ``resolution`` defaults to the file's ticks per quarter note; another value rescales every time.
    Channel 10 becomes a drum track. Zero-length notes (a note_on and its note_off at one tick) keep
    duration 0 with ``keep_zero_length``; otherwise they get one tick, the shortest note a model or
    a player holds, and ``Score.remarks`` says how many. Raises ``ScoreReadError`` when the file is
    empty or not a MIDI file, ``FileNotFoundError``
    when it does not exist.

    ``engine`` picks the parser: ``"mido"`` is the reference; ``"symusic"`` parses in C++ through
    symusic and returns the same ``Score``, reading the few files it cannot prove equal through
    mido (see ``bridge.midi_symusic``); ``"auto"`` is ``"symusic"`` when it is installed.
    """
    if engine not in MIDI_ENGINES:
        raise ValueError(f"engine must be one of {', '.join(MIDI_ENGINES)}, got {engine!r}")
    path = Path(path)
    score = None
    if engine != "mido":
        if symusic is None and engine == "symusic":
            raise ValueError(
                "engine='symusic' needs the symusic package (pip install symusic); "
                "use engine='auto' to fall back to mido when it is missing"
            )
        if symusic is not None:
            try:
                data = path.read_bytes()
            except OSError:
                data = b""  # check_score_file and mido say what is wrong
            if data:
                score = _read_symusic(data, path.stem)
    if score is None:
        check_score_file(path)
        score = _read_mido(path)
    zero = sum(int((t.notes["duration"] == 0).sum()) for t in score.tracks)
    if zero and not keep_zero_length:
        for t in score.tracks:
            t.notes["duration"] = np.maximum(t.notes["duration"], 1)
            t.notes = t.notes[sort_order(t.notes)]
        score.remarks = zero_length_remarks(zero)
    if resolution is not None and resolution != score.resolution:
        score = score.with_resolution(resolution)
        for t in score.tracks:
            t.notes = t.notes[sort_order(t.notes)]
    return score


def _check_writable(score: Score) -> None:
    for i, track in enumerate(score.tracks):
        n = track.notes
        problems = [
            ("time", n["time"] < 0, "onsets must be >= 0 ticks"),
            ("duration", n["duration"] < 0, "durations must be >= 0 ticks"),
            ("pitch", n["pitch"] > 127, "MIDI pitches are 0..127"),
            (
                "velocity",
                (n["velocity"] < 1) | (n["velocity"] > 127),
                "velocities are 1..127 (0 means note off)",
            ),
        ]
        for column, bad, allowed in problems:
            if bad.any():
                j = int(np.flatnonzero(bad)[0])
                raise ValueError(
                    f"track {i} ({track.name!r}) note {j} has {column} {int(n[column][j])}, but {allowed}; "
                    f"{int(bad.sum())} notes of this track are affected"
                )
    for m in score.meters:
        d = int(m["denominator"])
        if d < 1 or d & (d - 1) or not 1 <= int(m["numerator"]) <= 255:
            raise ValueError(
                f"time signature {int(m['numerator'])}/{d} at tick {int(m['time'])} cannot be "
                "stored in MIDI: the numerator must be 1..255 and the denominator a power of two"
            )
    for t in score.tempos:
        if not 0 < 60_000_000 / t["qpm"] <= MAX_TEMPO_US:
            raise ValueError(
                f"tempo {float(t['qpm'])} qpm at tick {int(t['time'])} cannot be stored in MIDI; "
                "use a tempo above 3.6 quarter notes per minute"
            )


def _to_track(events: list[tuple[int, int, int, mido.Message]]) -> mido.MidiTrack:
    """(tick, kind, order, message) events -> a track with delta times. At one tick, lower ``kind``
    goes first: note_offs (kind 1), then zero-length notes, each note_on just before its note_off
    (kind 2), then note_ons (kind 3), so a repeated pitch is not cut short and readers pair each
    note_off with its own note_on."""
    track = mido.MidiTrack()
    now = 0
    for tick, _, _, msg in sorted(events, key=lambda e: e[:3]):
        track.append(msg.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    return track


def write_midi(score: Score, path: str | os.PathLike) -> None:
    """Write a type-1 MIDI file: a conductor track (title, tempos, meters, keys), then one MIDI track per
    ``Track`` with its name, its program and its own channel. Drum tracks use channel 10; more than 15
    pitched tracks share channels, so players then hear the later program on a shared channel."""
    _check_writable(score)
    if score.resolution > MAX_TICKS_PER_BEAT:
        raise ValueError(
            f"Score.resolution {score.resolution} is above MIDI's limit of {MAX_TICKS_PER_BEAT} "
            "ticks per quarter note; rescale it with score.with_resolution(480)"
        )
    mid = mido.MidiFile(type=1, ticks_per_beat=score.resolution)
    conductor = [(0, 0, 0, mido.MetaMessage("track_name", name=encode_meta_text(score.title)))]
    for time, qpm in score.tempos.tolist():
        conductor.append((time, 1, 0, mido.MetaMessage("set_tempo", tempo=round(60_000_000 / qpm))))
    for time, numerator, denominator in score.meters.tolist():
        meter = mido.MetaMessage("time_signature", numerator=numerator, denominator=denominator)
        conductor.append((time, 1, 1, meter))
    for time, fifths, minor in score.keys.tolist():
        conductor.append((time, 1, 2, mido.MetaMessage("key_signature", key=key_name(fifths, minor))))
    mid.tracks.append(_to_track(conductor))

    pitched = cycle(PITCHED_CHANNELS)
    for track in score.tracks:
        channel = DRUM_CHANNEL if track.is_drum else next(pitched)
        events = [
            (0, 0, 0, mido.MetaMessage("track_name", name=encode_meta_text(track.name))),
            (0, 0, 1, mido.Message("program_change", channel=channel, program=int(track.program))),
        ]
        notes = track.notes[sort_order(track.notes)]
        for order, (time, pitch, duration, velocity) in enumerate(notes.tolist()):
            on = mido.Message("note_on", channel=channel, note=pitch, velocity=velocity)
            off = mido.Message("note_off", channel=channel, note=pitch)
            if duration == 0:  # MIDI's way to hold a note of no length (a grace note, a trigger)
                events += [(time, 2, 2 * order, on), (time, 2, 2 * order + 1, off)]
            else:
                events += [(time, 3, order, on), (time + duration, 1, order, off)]
        mid.tracks.append(_to_track(events))
    mid.save(os.fspath(path))
