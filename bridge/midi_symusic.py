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
So ``bridge.midi_rewrite`` reads the head of each MIDI track in Python and rewrites the file so
that symusic's reading of it is ours; this module parses the rewritten bytes with symusic and
builds the ``Score`` through ``bridge.midi_format.assemble_score``, as the mido reader does.
``bridge.midi`` imports this module; this one imports neither ``bridge.midi`` nor anything above it.
"""

from __future__ import annotations

from functools import cache
from itertools import accumulate

import numpy as np
import symusic

from bridge.midi_format import assemble_score, last_per_tick
from bridge.midi_rewrite import SENTINEL_GAP_TICKS, TRACK_TAG, rewrite_for_symusic
from bridge.score import DRUM_CHANNEL, KEY_DTYPE, METER_DTYPE, NOTE_DTYPE, TEMPO_DTYPE, Score

# symusic's note record (its pickle, ``_note_bytes``): onset and duration ticks, pitch, velocity.
_SYMUSIC_NOTE = np.dtype(
    [("time", "<i4"), ("duration", "<i4"), ("pitch", "i1"), ("velocity", "i1"), ("pad", "V2")]
)
_EVENT_DTYPES = (TEMPO_DTYPE, METER_DTYPE, KEY_DTYPE)


def _unique_events(a: np.ndarray) -> np.ndarray | None:
    """``last_per_tick`` for symusic's lists, which lose the file order of events at one tick: None when
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
        rewritten = rewrite_for_symusic(data, rounds)
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
            if not name.startswith(TRACK_TAG) or track.is_drum != (channel == DRUM_CHANNEL):
                return None
            groups.append((int(name[len(TRACK_TAG) :]), channel))
            chunks.append(_note_bytes(notes))
            sizes.append(len(notes))
        record = np.frombuffer(b"".join(chunks), _SYMUSIC_NOTE)
        if len(record) == 0:
            break
        if np.bitwise_or(record["time"], record["duration"]).min() < 0:
            return None  # int32 ticks wrapped
        time = record["time"].astype(np.int64)
        duration = record["duration"].astype(np.int64)
        if (time + duration).max() < SENTINEL_GAP_TICKS:
            break
    else:
        return None
    if len(set(groups)) != len(groups) or groups != sorted(groups):
        return None

    if sum(counts) == sum(map(len, metas)):  # Python read every tempo, meter and key event
        tempos = [(time_, 60_000_000 / tempo) for time_, tempo in metas[0] if tempo > 0]
        rows_of_kind = (tempos, *metas[1:])
        events = [last_per_tick(np.array(rows, dtype)) for rows, dtype in zip(rows_of_kind, _EVENT_DTYPES)]
    else:
        events = _symusic_events(parsed, counts)
        if events is None:
            return None
    if not groups:
        return assemble_score(division, midi_format, {}, names, programs, *events, stem)

    pitch = record["pitch"]
    velocity = record["velocity"]
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
    return assemble_score(division, midi_format, notes, names, programs, *events, stem)
