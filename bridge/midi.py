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
import struct
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


def _vlq(value: int) -> bytes:
    """A MIDI variable-length quantity: 7 bits a byte, most significant first."""
    out = [value & 0x7F]
    while value > 0x7F:
        value >>= 7
        out.append(0x80 | value & 0x7F)
    return bytes(reversed(out))


def _encode(events: list[tuple[int, int, int, mido.BaseMessage]]) -> tuple[bytearray, int | None]:
    """(tick, kind, order, message) events -> track bytes (delta times, running status as mido
    writes them) and the running status at the end. At one tick, lower ``kind`` goes first."""
    data, now, running = bytearray(), 0, None
    for tick, _, _, msg in sorted(events, key=lambda e: e[:3]):
        data += _vlq(tick - now)
        now = tick
        raw = msg.bytes()
        if msg.is_meta:
            running = None
        elif raw[0] == running:
            raw = raw[1:]
        else:
            running = raw[0] if raw[0] < 0xF0 else None
        data += bytes(raw)
    return data, running


def _note_bytes(notes: np.ndarray, channel: int, running: int | None, start_tick: int) -> bytes:
    """One track's notes (in ``sort_order``) as MIDI events, encoded at once with numpy: at one
    tick note_offs first, then zero-length notes (each note_on just before its note_off), then
    note_ons, so a repeated pitch is not cut short and readers pair each note_off with its own
    note_on. The bytes mido writes for the same events, ~50x faster (benchmarks/midi_write.py)."""
    n = len(notes)
    if n == 0:
        return b""
    time, pitch = notes["time"].astype(np.int64), notes["pitch"].astype(np.int64)
    duration, velocity = notes["duration"].astype(np.int64), notes["velocity"].astype(np.int64)
    index, zero = np.arange(n), notes["duration"] == 0
    sounding = ~zero
    on, off = 0x90 | channel, 0x80 | channel

    def rows(mask, tick, kind, order, status, second):
        m = int(mask.sum())
        return tick[mask], np.full(m, kind), order[mask], np.full(m, status), pitch[mask], second[mask]

    release = np.full(n, 64)  # mido's note_off velocity
    parts = [rows(sounding, time, 3, index, on, velocity),
             rows(sounding, time + duration, 1, index, off, release),
             rows(zero, time, 2, 2 * index, on, velocity),
             rows(zero, time, 2, 2 * index + 1, off, release)]
    tick, kind, order, status, first, second = (np.concatenate(c) for c in zip(*parts))
    o = np.lexsort((order, kind, tick))
    tick, status, first, second = tick[o], status[o], first[o], second[o]
    delta = np.diff(tick, prepend=start_tick)
    if delta.max() >= 1 << 28:
        raise ValueError(f"a note ends {int(delta.max())} ticks after the event before it; MIDI holds at "
                         f"most {(1 << 28) - 1} ticks between two events")
    out = np.zeros((len(tick), 7), np.uint8)  # up to 4 bytes of delta, status, pitch, velocity
    keep = np.zeros((len(tick), 7), bool)
    for col, shift in enumerate((21, 14, 7, 0)):
        out[:, col] = (delta >> shift) & 0x7F | (0x80 if shift else 0)
        keep[:, col] = delta >= (1 << shift) if shift else True
    previous = np.concatenate([[-1 if running is None else running], status[:-1]])
    out[:, 4], keep[:, 4] = status, status != previous  # running status: a repeated status is left out
    out[:, 5], out[:, 6] = first, second
    keep[:, 5:] = True
    return out[keep].tobytes()


_END_OF_TRACK = b"\x00\xff\x2f\x00"


def _chunk(data: bytes) -> bytes:
    return b"MTrk" + struct.pack(">L", len(data)) + data


def _meters_with_pickup(score: Score) -> list[tuple[int, int, int]]:
    """The score's meters, with a pickup bar (a first bar shorter than its meter, as notation files
    give it) written the way notation programs export one to MIDI: a meter of the pickup's own length
    at 0 (a quarter-note pickup in 4/4 is 1/4), then the piece's meter at the first full bar."""
    meters = [tuple(m) for m in score.meters.tolist()]
    if not len(score.bars) or not meters or meters[0][0] != 0:
        return meters
    length = int(score.bars["duration"][0])
    _, numerator, denominator = meters[0]
    full = score.resolution * 4 * numerator // denominator
    if not 0 < length < full or any(0 < m[0] < length for m in meters):
        return meters
    pickup_denominator = denominator
    while (length * pickup_denominator) % (4 * score.resolution) and pickup_denominator < 64:
        pickup_denominator *= 2
    pickup_numerator, rest = divmod(length * pickup_denominator, 4 * score.resolution)
    if rest or not 0 < pickup_numerator < 256:
        return meters  # a pickup no MIDI meter can measure: the meters as they are
    return [(0, pickup_numerator, pickup_denominator), (length, numerator, denominator),
            *(m for m in meters[1:] if m[0] != length)]


def write_midi(score: Score, path: str | os.PathLike) -> None:
    """Write a type-1 MIDI file: a conductor track (title, tempos, meters, keys; a pickup bar as a
    meter of its own length), then one MIDI track per ``Track`` with its name, its program and its own
    channel. Drum tracks use channel 10; more than 15 pitched tracks share channels, so players then
    hear the later program on a shared channel."""
    _check_writable(score)
    if score.resolution > MAX_TICKS_PER_BEAT:
        raise ValueError(
            f"Score.resolution {score.resolution} is above MIDI's limit of {MAX_TICKS_PER_BEAT} "
            "ticks per quarter note; rescale it with score.with_resolution(480)"
        )
    conductor = [(0, 0, 0, mido.MetaMessage("track_name", name=encode_meta_text(score.title)))]
    for time, qpm in score.tempos.tolist():
        conductor.append((time, 1, 0, mido.MetaMessage("set_tempo", tempo=round(60_000_000 / qpm))))
    for time, numerator, denominator in _meters_with_pickup(score):
        meter = mido.MetaMessage("time_signature", numerator=numerator, denominator=denominator)
        conductor.append((time, 1, 1, meter))
    for time, fifths, minor in score.keys.tolist():
        conductor.append((time, 1, 2, mido.MetaMessage("key_signature", key=key_name(fifths, minor))))
    chunks = [_chunk(_encode(conductor)[0] + _END_OF_TRACK)]

    pitched = cycle(PITCHED_CHANNELS)
    for track in score.tracks:
        channel = DRUM_CHANNEL if track.is_drum else next(pitched)
        head, running = _encode([
            (0, 0, 0, mido.MetaMessage("track_name", name=encode_meta_text(track.name))),
            (0, 0, 1, mido.Message("program_change", channel=channel, program=int(track.program))),
        ])
        notes = track.notes[sort_order(track.notes)]
        chunks.append(_chunk(head + _note_bytes(notes, channel, running, 0) + _END_OF_TRACK))
    header = b"MThd" + struct.pack(">Lhhh", 6, 1, len(chunks), score.resolution)
    with open(path, "wb") as f:
        f.write(header + b"".join(chunks))
