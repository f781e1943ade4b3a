"""The byte-level half of the symusic reader: ``rewrite_for_symusic`` turns a MIDI file into one that
symusic reads exactly as ``bridge.midi``'s mido reader reads the original (see ``bridge.midi_symusic``
for how the two parsers differ), or says it cannot.

Python reads each MIDI track up to its first note (names, program changes, tempo, meter and
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

Python here never builds a ``Score``; ``bridge.midi_symusic`` parses the rewritten bytes. The two
halves are split by what they read: this one bytes, that one symusic's objects.
"""

from __future__ import annotations

import struct
from bisect import bisect_left
from functools import lru_cache

import numpy as np

from bridge.midi_format import MAX_TICKS_PER_BEAT, decode_meta_text
from bridge.score import MIDI_CHANNELS

SENTINEL_GAP_TICKS = (1 << 28) - 1  # the longest delta time; real notes never end this late
TRACK_TAG = "dm:"  # track name prefix that carries the MIDI track index through symusic
_SENTINEL_GAP = b"\xff\xff\xff\x7f"
_CLOSE_CHANNEL = [
    bytes((0, 0x80 | c, 0, 0)) + b"".join(bytes((0, p, 0)) for p in range(1, 128))
    for c in range(MIDI_CHANNELS)
]
_PROGRAM_IS_CHANNEL = b"".join(bytes((0, 0xC0 | c, c)) for c in range(MIDI_CHANNELS))
_NOTE_ON_STATUS = [bytes((0x90 | c,)) for c in range(MIDI_CHANNELS)]
_COUNTED = (0x51, 0x58, 0x59)  # set_tempo, time_signature, key_signature


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
    or system message, and of runs of four bytes >= 0x80 (see ``rewrite_for_symusic``). Returns how
    many tempo, meter and key events (``_COUNTED``) the bytes seem to hold and the channels whose
    note_on status byte occurs, or None where the bytes may hold such a message, a meta event
    symusic reads differently, an end_of_track before the end, or a track name where the head had
    none. A tempo, meter or key event may hold any byte, so their payloads are not searched; whether
    each one is real is settled by comparing the counts with what symusic found, and every real one
    is among them because the search for 0xFF skips nothing.
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
    return counts, [c for c in range(MIDI_CHANNELS) if data.find(_NOTE_ON_STATUS[c], pos, end) >= 0]


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


def rewrite_for_symusic(data: bytes, rounds: int = 1) -> tuple | None:
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
            names[index] = decode_meta_text(name.decode("latin-1"))
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
    tag = (TRACK_TAG + str(index)).encode()
    tail = [b"\xff\x03", bytes((len(tag),)), tag, b"\x00\xff\x2f\x00"]
    if close:
        tail = [close[1:], *[close] * (rounds - 1), _SENTINEL_GAP, close[1:], b"\x00", *tail]
    return b"".join(tail)
