"""The symusic reader: ``read_symusic`` parses a MIDI file in C++ through symusic and returns
exactly the ``Score`` that ``bridge.midi``'s mido reader returns, or None where it cannot guarantee
that (``bridge.midi.read_midi`` then reads the file through mido).

mido reads every message in Python; symusic is ~100x faster, but does not read files the same way.
symusic (C++) pairs notes like ``bridge.midi._pair_notes`` (first in, first out per channel and pitch,
velocity-0 note_ons end notes, zero-length notes kept) but otherwise differs from the mido reader:
  1. it splits a MIDI track by (channel, program at the note's end), and its tracks do not say
     which channel or MIDI track they came from;
  2. it drops notes that are never switched off, where ours end them with their track;
  3. it keeps the last track name of a MIDI track, where ours keeps the first;
  4. it stops a track at its first end_of_track, where mido reads to the end of the chunk;
  5. it sorts tempo, meter and key events by time, so events of one kind at one tick lose their
     order, and reads malformed ones (a tempo of 2 bytes, 2**8 denominators) differently;
  6. it refuses system messages and delta times of 5+ bytes, and its notes have its own order
     where onset, pitch and duration tie.
So Python reads each MIDI track up to its first note (names, program changes, tempo, meter and
key events, setup) exactly as mido does, and the rest of the track is checked byte-wise
(``_check_body``): where a byte could be a program change, sysex or system message, or a meta
event could be read differently, Python reads every event of that track instead (``_scan`` with
``whole``), still far faster than mido. Then the track is rewritten for symusic: after the head,
16 program changes set program = channel (later program changes are patched to the same), so
symusic makes one track per channel and its program names the channel; at the end, note_offs for
every pitch of every channel with note_ons close the notes left open at end_of_track, a second
round 2**28 - 1 ticks later shows whether one round was enough (else a retry with 16), and a
track name tags the MIDI track. A file is read by mido instead where mido would fail, where
symusic refuses it, or where notes tie in onset, pitch and duration but differ in velocity.

Both readers end in ``bridge.midi._assemble``, imported from there; ``bridge.midi`` imports this
module only when it reads through symusic, so neither import runs the other's first.
"""

from __future__ import annotations

import struct
from bisect import bisect_left
from functools import cache, lru_cache
from itertools import accumulate

import numpy as np
import symusic

from bridge.midi import DRUM_CHANNEL, MAX_TICKS_PER_BEAT, _assemble, _events, _text_in
from bridge.score import KEY_DTYPE, METER_DTYPE, NOTE_DTYPE, TEMPO_DTYPE, Score

_SENTINEL_GAP_TICKS = (1 << 28) - 1  # the longest delta time; real notes never end this late
_SENTINEL_GAP = b"\xff\xff\xff\x7f"
_CLOSE_CHANNEL = [
    bytes((0, 0x80 | c, 0, 0)) + b"".join(bytes((0, p, 0)) for p in range(1, 128)) for c in range(16)
]
_PROGRAM_IS_CHANNEL = b"".join(bytes((0, 0xC0 | c, c)) for c in range(16))
_TAG = b"dm:"
# symusic's note record (its pickle, ``_note_records``): onset and duration ticks, pitch, velocity.
_SYMUSIC_NOTE = np.dtype(
    [("time", "<i4"), ("duration", "<i4"), ("pitch", "i1"), ("velocity", "i1"), ("pad", "V2")]
)
_NOTE_ON_STATUS = [bytes((0x90 | c,)) for c in range(16)]
_COUNTED = (0x51, 0x58, 0x59)  # set_tempo, time_signature, key_signature
_EVENT_DTYPES = (TEMPO_DTYPE, METER_DTYPE, KEY_DTYPE)


def _varlen(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """(value, next position) of a variable-length quantity of at most 4 bytes before ``end``;
    (-1, pos) if longer or cut off (mido reads longer ones, symusic does not)."""
    value = 0
    for i in range(pos, min(pos + 4, end)):
        b = data[i]
        value = (value << 7) | (b & 0x7F)
        if b < 0x80:
            return value, i + 1
    return -1, pos


def _meta_ok(kind: int, payload: bytes) -> bool:
    """Whether mido reads this meta event without error and symusic reads it the same way."""
    n = len(payload)
    if kind == 0x51:
        return n == 3
    if kind == 0x58:
        return n == 4 and payload[1] < 8  # symusic keeps 2**denominator in a byte
    if kind == 0x59:
        return n == 2 and (payload[0] <= 7 or payload[0] >= 249) and payload[1] <= 1
    if kind == 0x00:
        return n != 1
    if kind == 0x20:
        return n >= 1
    if kind == 0x54:
        return n >= 5 and payload[0] >> 5 <= 3
    return kind != 0x2F  # end_of_track is checked where it is found


def _scan(
    data: bytes, pos: int, end: int, metas: tuple[list, list, list], whole: bool = False
) -> tuple | None:
    """Read the MTrk chunk ``data[pos:end]`` the way mido does: up to its first note, or with
    ``whole`` to its end (one Python step per event: slower, but it leaves nothing to guess).

    Returns (position of the first note event, first track name, [(channel, program, position of
    the program byte)] of the program changes, channels with note_ons or None if not ``whole``,
    whether it ends with end_of_track), or None where mido would fail or symusic would read these
    bytes differently. Appends the tempo, meter and key events it passes to ``metas`` as
    ``bridge.midi._read_mido`` reads them.
    """
    name, cut, ended = None, None, False
    now = 0
    programs = []
    channels = set()
    status = None  # mido's running status: meta events keep it, sysex and system messages set it
    while pos < end:
        start = pos
        delta, pos = _varlen(data, pos, end)
        if pos == start or pos >= end:
            return None
        now += delta
        b = data[pos]
        if b >= 0x80:
            pos += 1
            if b != 0xFF:
                status = b
        elif status is None or status >= 0xF0:
            return None  # mido raises, or reads running status after sysex as sysex
        kind = b if b >= 0x80 else status
        if kind < 0xF0:
            high = kind & 0xF0
            if high in (0x80, 0x90):
                if cut is None:
                    cut = start
                    if not whole:
                        return cut, name, programs, None, False
                if pos + 2 > end or data[pos] > 0x7F or data[pos + 1] > 0x7F:
                    return None
                if high == 0x90:
                    channels.add(kind & 0x0F)
                pos += 2
                continue
            size = 1 if high in (0xC0, 0xD0) else 2
            if pos + size > end or any(x > 0x7F for x in data[pos : pos + size]):
                return None
            if high == 0xC0:
                programs.append((kind & 0x0F, data[pos], pos))
            pos += size
        elif kind == 0xFF:
            if pos >= end:
                return None
            meta = data[pos]
            length, pos = _varlen(data, pos + 1, end)
            if length < 0 or pos + length > end:
                return None
            payload = data[pos : pos + length]
            pos += length
            if meta == 0x2F:
                if pos != end or length:
                    return None  # symusic stops at end_of_track, mido reads on to the chunk's end
                ended = True
            elif meta == 0x03:
                name = payload if name is None else name
            elif not _meta_ok(meta, payload):
                return None
            elif meta == 0x51:
                metas[0].append((now, (payload[0] << 16) | (payload[1] << 8) | payload[2]))
            elif meta == 0x58:
                metas[1].append((now, payload[0], 2 ** payload[1]))
            elif meta == 0x59:
                metas[2].append((now, payload[0] - 256 if payload[0] > 127 else payload[0], payload[1]))
        elif kind in (0xF0, 0xF7):
            length, pos = _varlen(data, pos, end)
            if length < 0 or pos + length > end:
                return None
            payload = data[pos : pos + length]
            pos += length
            if any(x > 0x7F for x in payload.removesuffix(b"\xf7")):
                return None  # mido refuses sysex data bytes above 127
        else:
            return None  # system messages in a file: mido and symusic disagree
    return (end if cut is None else cut), name, programs, (sorted(channels) if whole else None), ended


def _check_body(data: bytes, pos: int, end: int, named: bool, suspects: tuple[list, list]) -> tuple | None:
    """Check ``data[pos:end]``, a chunk from its first note on, which Python does not parse.

    ``suspects`` are the sorted positions in ``data`` of bytes that may be a program change, sysex
    or system message, and of runs of four bytes >= 0x80 (see ``_rewrite``). Returns how many tempo,
    meter and key events (``_COUNTED``) the bytes seem to hold and the channels whose note_on status
    byte occurs, or None where the bytes may hold such a message, a meta event symusic reads
    differently, an end_of_track before the end, or a track name where the head had none. A tempo,
    meter or key event may hold any byte, so their payloads are not searched; whether each one is
    real is settled by comparing the counts with what symusic found, and every real one is among
    them because the search for 0xFF skips nothing.
    """
    last = end - 3
    if last < pos or not data.endswith(b"\xff\x2f\x00", pos, end):
        return None
    counts = [0, 0, 0]
    searched = pos
    k = data.find(b"\xff", pos, end)
    while k != last:
        meta = data[k + 1]
        length, start = _varlen(data, k + 2, end)
        if length < 0 or start + length > last or meta == 0x2F:
            return None  # cut off, or the final 0xFF 0x2F 0x00 is the end of a payload
        if meta == 0x03 and not named or not _meta_ok(meta, data[start : start + length]):
            return None
        if meta in _COUNTED:
            counts[_COUNTED.index(meta)] += 1
            if not _cleared(data, suspects, searched, start, pos):
                return None
            searched = max(searched, start + length)
        k = data.find(b"\xff", k + 1, end)
    if not _cleared(data, suspects, searched, end, pos):
        return None
    return counts, [c for c in range(16) if data.find(_NOTE_ON_STATUS[c], pos, end) >= 0]


def _cleared(data: bytes, suspects: tuple[list, list], start: int, end: int, body: int) -> bool:
    """Whether ``data[start:end]`` holds no run of four bytes >= 0x80 and no suspect byte that can
    be a status byte."""
    statuses, runs = suspects
    if _any_between(runs, start, end):
        return False
    i = bisect_left(statuses, start)
    while i < len(statuses) and statuses[i] < end:
        if not _not_a_status(data, statuses[i], body):
            return False
        i += 1
    return True


def _not_a_status(data: bytes, at: int, body: int) -> bool:
    """Whether the byte at ``at`` (0xC0-0xCF or 0xF1-0xFE) is surely a delta time or payload byte,
    not a status byte, in a chunk whose first note event starts at ``body``.

    A long delta time holds such bytes (8,192-10,239 ticks: 0xC0-0xCF). Parsing forward from a
    little before ``at`` settles it without reading the whole chunk: every event is at most 7 bytes
    unless it is a meta event, and no meta event may cover the window's start (every 0xFF is checked),
    so one of the 8 first positions of the window is a real event start. Each of them is parsed
    with each running status class up to ``at``; the byte is cleared only if no parse reads it as
    a status byte or a data byte.
    """
    if data[at] in (0xF0, 0xF7):
        return False  # sysex: Python reads the track
    window = max(body, at - 24)
    k = data.find(b"\xff", body, window)
    while k != -1:  # a meta event that started before the window must end before it
        length, start = _varlen(data, k + 2, window + 8)
        if length < 0 or start + length > window:
            return False
        k = data.find(b"\xff", k + 1, window)
    if window == body:
        todo = [(body, None)]  # the first note: a real event start, status explicit
    else:
        todo = [(q, r) for q in range(window, min(window + 8, at)) for r in (None, 0x90, 0xC0)]
    seen = set()
    alive = False
    while todo:
        state = todo.pop()
        if state in seen:
            continue
        seen.add(state)
        pos, status = state
        _, pos = _varlen(data, pos, at + 8)
        if pos == state[0]:
            continue  # no delta time here: not a real event start
        if pos > at:
            alive = True  # the byte is part of a delta time in this parse
            continue
        b = data[pos]
        if pos == at or (b < 0x80 and status is None):
            if pos == at:
                return False  # read as a status byte
            continue
        if b >= 0x80:
            pos += 1
            if b == 0xFF:
                length, start = _varlen(data, pos + 1, at + 8)
                if length < 0:
                    continue
                if start + length > at:
                    alive = True  # inside this meta event
                else:
                    todo.append((start + length, status))
                continue
            if b >= 0xF0:
                continue  # no sysex or system message before a suspect in a real parse
            status = 0xC0 if 0xC0 <= b < 0xE0 else 0x90
        size = 1 if status == 0xC0 else 2
        if pos <= at < pos + size:
            return False  # read as a data byte: mido would refuse the file
        if any(x > 0x7F for x in data[pos : pos + size]):
            continue
        todo.append((pos + size, status))
    return alive


def _any_between(positions: list[int], start: int, end: int) -> bool:
    i = bisect_left(positions, start)
    return i < len(positions) and positions[i] < end


def _rewrite(data: bytes, rounds: int = 1) -> tuple | None:
    """The file as symusic should see it (see the module docstring), with what Python read on the
    way, or None. ``rounds`` is how many note_offs of each pitch end the notes left open."""
    if len(data) < 14 or data[:4] != b"MThd":
        return None
    header_size = int.from_bytes(data[4:8], "big")
    midi_format, n_tracks, division = struct.unpack(">hhh", data[8:14])
    if header_size < 6 or midi_format not in (0, 1, 2) or not 0 < division <= MAX_TICKS_PER_BEAT:
        return None
    # Bytes a note track's body may not hold unless ``_check_body`` shows they are in a payload:
    # status bytes of program changes, sysex and system messages, and runs of four bytes >= 0x80,
    # which only a delta time of five bytes or more has outside payloads (mido reads those,
    # symusic does not).
    raw = np.frombuffer(data, np.uint8)
    high = np.flatnonzero(raw >= 0xC0)
    value = raw[high]
    statuses = high[((value & 0xF0) == 0xC0) | ((value >= 0xF0) & (value != 0xFF))].tolist()
    top = raw >= 0x80
    suspects = (statuses, np.flatnonzero(top[:-3] & top[1:-2] & top[2:-1] & top[3:]).tolist())
    view = memoryview(data)
    pos = 8 + header_size
    out = [view[:pos]]
    names: dict[int, str] = {}
    programs: dict[tuple[int, int], int] = {}
    # Tempo, meter and key events as Python read them; counts only where it skipped note bytes.
    metas: tuple[list, list, list] = ([], [], [])
    counts = [0, 0, 0]
    for index in range(max(n_tracks, 0)):
        start, end = pos + 8, pos + 8 + int.from_bytes(data[pos + 4 : pos + 8], "big")
        if data[pos : pos + 4] != b"MTrk" or end > len(data):
            return None
        found: tuple[list, list, list] = ([], [], [])
        scanned = _scan(data, start, end, found)
        if scanned is None:
            return None
        cut, name, changes, channels, ended = scanned
        if cut < end:
            checked = _check_body(data, cut, end, name is not None, suspects)
            if checked is None:  # the bytes alone do not tell: read every event of this chunk
                found = ([], [], [])
                scanned = _scan(data, start, end, found, whole=True)
                if scanned is None:
                    return None
                cut, name, changes, channels, ended = scanned
            else:
                counts = [a + b for a, b in zip(counts, checked[0])]
                channels, ended = checked[1], True
        for kind, rows in enumerate(found):
            metas[kind].extend(rows)
            counts[kind] += len(rows)
        if name is not None:
            names[index] = _text_in(name.decode("latin-1"))
        for channel, program, _ in changes:
            programs.setdefault((index, channel), program)
        if cut == end:
            out.append(view[pos:end])
            pos = end
            continue
        body: bytes | bytearray | memoryview = view[cut:end]
        if any(at >= cut for _, _, at in changes):  # keep program = channel after the first note too
            body = bytearray(body)
            for channel, _, at in changes:
                if at >= cut:
                    body[at - cut] = channel
        # The notes left open end at the track's last event, as in ``_pair_notes``: after its
        # end_of_track's delta time or, without one, at delta 0 after the last event.
        body = body[:-3] if ended else bytes(body) + b"\x00"
        tail = _tail(tuple(channels), rounds, index)
        size = (cut - start) + len(_PROGRAM_IS_CHANNEL) + len(body) + len(tail)
        out += [b"MTrk", size.to_bytes(4, "big"), view[start:cut], _PROGRAM_IS_CHANNEL, body, tail]
        pos = end
    return b"".join(out), midi_format, division, names, programs, metas, counts


@lru_cache(maxsize=4096)
def _tail(channels: tuple[int, ...], rounds: int, index: int) -> bytes:
    """What follows a rewritten chunk's last event: ``rounds`` note_offs of every pitch of these
    channels, the probe round, the track name that tags MIDI track ``index``, end_of_track."""
    close = b"".join(_CLOSE_CHANNEL[c] for c in channels)
    tag = _TAG + str(index).encode()
    tail = [b"\xff\x03", bytes((len(tag),)), tag, b"\x00\xff\x2f\x00"]
    if close:
        tail = [close[1:], *[close] * (rounds - 1), _SENTINEL_GAP, close[1:], b"\x00", *tail]
    return b"".join(tail)


def _unique_events(a: np.ndarray) -> np.ndarray | None:
    """``_events`` for symusic's lists, which lose the file order of events at one tick: None when
    two events of one kind share a tick with different values and that order would matter."""
    if len(a) > 1 and (np.diff(a["time"]) <= 0).any():
        a = a[np.argsort(a["time"], kind="stable")]
    elif len(a) <= 1:
        return a
    same_tick = a["time"][1:] == a["time"][:-1]
    if same_tick.any():
        if (a[1:][same_tick] != a[:-1][same_tick]).any():
            return None
        a = a[np.append(~same_tick, True)]
    return a


def _note_bytes(notes: object) -> bytes | memoryview:
    """symusic's notes as ``_SYMUSIC_NOTE`` records. Its pickle of a note list is a 4-byte count and
    then exactly these records, and several times faster per track than ``numpy()``."""
    state = notes.__getstate__()
    if len(state) == 4 + _SYMUSIC_NOTE.itemsize * len(notes) and _pickle_layout_ok():
        return memoryview(state)[4:]
    columns = notes.numpy()
    records = np.zeros(len(columns["time"]), _SYMUSIC_NOTE)
    for field in ("time", "duration", "pitch", "velocity"):
        records[field] = columns[field]
    return records.tobytes()


@cache
def _pickle_layout_ok() -> bool:
    """Whether this symusic pickles notes as ``_note_bytes`` expects (checked once per process)."""
    track = symusic.Track()
    track.notes.append(symusic.Note(3, 5, 60, 70))
    track.notes.append(symusic.Note(1 << 20, 1 << 27, 127, 1))
    state = track.notes.__getstate__()
    if len(state) != 4 + 2 * _SYMUSIC_NOTE.itemsize or int.from_bytes(state[:4], "little") != 2:
        return False
    records = np.frombuffer(state, _SYMUSIC_NOTE, offset=4)
    columns = track.notes.numpy()
    return all(np.array_equal(records[f], columns[f]) for f in ("time", "duration", "pitch", "velocity"))


def _symusic_events(parsed: object, counts: list[int]) -> list[np.ndarray] | None:
    """Tempo, meter and key events as symusic read them, or None where they may differ from mido's:
    when a byte pattern counted as such an event in ``_check_body`` was not one, or when events of
    one kind share a tick with different values (symusic's sort loses their order)."""
    events = []
    for items, fields, dtype in zip(
        (parsed.tempos, parsed.time_signatures, parsed.key_signatures),
        (("time", "mspq"), ("time", "numerator", "denominator"), ("time", "key", "tonality")),
        _EVENT_DTYPES,
    ):
        rows = [tuple(getattr(x, f) for f in fields) for x in items]
        if len(rows) != counts[len(events)]:
            return None
        if dtype is TEMPO_DTYPE:
            rows = [(time, 60_000_000 / mspq) for time, mspq in rows if mspq > 0]
        events.append(_unique_events(np.array(rows, dtype)))
        if events[-1] is None:
            return None
    return events


def read_symusic(data: bytes, stem: str) -> Score | None:
    """The ``Score`` ``bridge.midi._read_mido`` returns for these bytes, parsed by symusic; None where that
    cannot be guaranteed (then read the file with mido)."""
    for rounds in (1, 16):  # a second try only for files that leave a pitch sounding twice at the end
        rewritten = _rewrite(data, rounds)
        if rewritten is None:
            return None
        midi, midi_format, division, names, programs, metas, counts = rewritten
        try:
            parsed = symusic.Score.from_midi(midi)
        except Exception:  # symusic refuses what mido may read or explain better
            return None
        groups, chunks, sizes = [], [], []
        for track in parsed.tracks:
            notes = track.notes
            if not len(notes):
                continue  # controllers only
            name, channel = track.name, track.program
            if not name.startswith("dm:") or track.is_drum != (channel == DRUM_CHANNEL):
                return None
            groups.append((int(name[3:]), channel))
            chunks.append(_note_bytes(notes))
            sizes.append(len(notes))
        record = np.frombuffer(b"".join(chunks), _SYMUSIC_NOTE)
        if len(record) == 0:
            break
        if np.bitwise_or(record["time"], record["duration"]).min() < 0:
            return None  # int32 ticks wrapped
        time = record["time"].astype(np.int64)
        duration = record["duration"].astype(np.int64)
        if (time + duration).max() < _SENTINEL_GAP_TICKS:
            break
    else:
        return None
    if len(set(groups)) != len(groups) or groups != sorted(groups):
        return None

    if sum(counts) == sum(map(len, metas)):  # Python read every tempo, meter and key event
        tempos = [(time_, 60_000_000 / tempo) for time_, tempo in metas[0] if tempo > 0]
        events = [_events(np.array(rows, dtype)) for rows, dtype in zip((tempos, *metas[1:]), _EVENT_DTYPES)]
    else:
        events = _symusic_events(parsed, counts)
        if events is None:
            return None
    if not groups:
        return _assemble(division, midi_format, {}, names, programs, *events, stem)

    pitch = record["pitch"]
    velocity = record["velocity"]
    duration = np.maximum(duration, 1)
    bounds = list(accumulate(sizes))
    # ``sort_order`` as one key: onsets and durations are below 2**28 ticks (checked above).
    key = (time << 35) | (pitch.astype(np.int64) << 28) | duration
    step = np.diff(key)
    step[[b - 1 for b in bounds[:-1]]] = 1  # one track's last note and the next one's first
    if (step <= 0).any():
        order = np.concatenate(
            [np.argsort(key[a:b], kind="stable") + a for a, b in zip([0, *bounds[:-1]], bounds)]
        )
        key, pitch, velocity = key[order], pitch[order], velocity[order]
        time, duration = time[order], duration[order]
        # mido's reader keeps notes of one onset, pitch and duration in note_on order, symusic
        # in its own; that shows only where their velocities differ.
        tie = key[1:] == key[:-1]
        tie[[b - 1 for b in bounds[:-1]]] = False
        if (velocity[1:][tie] != velocity[:-1][tie]).any():
            return None
    n = np.empty(len(key), NOTE_DTYPE)
    n["time"], n["pitch"], n["duration"], n["velocity"] = time, pitch, duration, velocity
    notes = {group: n[a:b] for group, a, b in zip(groups, [0, *bounds[:-1]], bounds)}
    return _assemble(division, midi_format, notes, names, programs, *events, stem)
