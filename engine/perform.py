"""The perform task: notes in, audio out.

Until a neural performer is trained, the engine performs with a SoundFont (FluidSynth and a General
MIDI font, bridge.synth): a real renderer, and the fast option after that. Two shapes of job:

- offline (``perform``): a whole region, rendered in chunks that stream back as they are made, with
  the release tail after the last note;
- live (``live_notes`` with ``task: perform``): the DAW sends each audio block's note-ons and
  note-offs as it plays and gets that block's audio back; a ``LivePerformer`` per session keeps the
  synth (its sounding voices, reverb tail) and the session's sample clock from block to block.

Part k plays on MIDI channel ``bridge.score.PITCHED_CHANNELS[k]`` with ``programs[k]`` (General MIDI
program numbers, 0 = piano).
"""
from __future__ import annotations

import heapq
import threading
from collections.abc import Iterator, Sequence

import numpy as np

from bridge.score import PITCHED_CHANNELS
from bridge.synth import EVENT_DTYPE, Synth

CHUNK_SAMPLES = 32_768  # per offline `audio` reply: 0.68 s at 48 kHz, 256 KiB of stereo float32
FIRST_CHUNK_SAMPLES = 4_096  # the first reply is short, so playback can start sooner
TAIL_MAX_S = 3.0  # offline: render the release and reverb tail until silent, at most this long
SILENCE = 1e-4  # -80 dBFS: a tail quieter than this over a whole chunk has ended
MAX_PARTS = len(PITCHED_CHANNELS)


class PerformInputError(ValueError):
    """The request cannot be performed; the message says why and what to do."""


def ticks_to_samples(ticks: np.ndarray | int, resolution: int, qpm: float,
                     sample_rate_hz: int) -> np.ndarray:
    samples_per_tick = 60.0 * sample_rate_hz / (qpm * resolution)
    return np.rint(np.asarray(ticks, np.float64) * samples_per_tick).astype(np.int64)


def check_parts(parts: np.ndarray | None, n_notes: int, programs: Sequence[int]) -> np.ndarray:
    """Part index per note (zeros when absent), checked against the channels and programs."""
    if parts is None:
        return np.zeros(n_notes, np.int64)
    parts = parts.astype(np.int64)
    if len(parts) and parts.max() >= MAX_PARTS:
        raise PerformInputError(f"part index {int(parts.max())} is too high: the SoundFont performer "
                                f"plays at most {MAX_PARTS} parts (MIDI channels without drums)")
    if programs and len(parts) and parts.max() >= len(programs):
        raise PerformInputError(f"the parts frame uses part {int(parts.max())}, but programs lists "
                                f"only {len(programs)}; give one General MIDI program per part")
    return parts


def note_events(notes: np.ndarray, parts: np.ndarray, resolution: int, qpm: float,
                sample_rate_hz: int, origin_ticks: int = 0) -> np.ndarray:
    """Note-on and note-off events in samples from `origin_ticks`, sorted; at one sample the
    offs come first, so a repeated pitch is struck again rather than cut."""
    on = ticks_to_samples(notes["time"].astype(np.int64) - origin_ticks, resolution, qpm, sample_rate_hz)
    off = ticks_to_samples(notes["time"].astype(np.int64) + notes["duration"].astype(np.int64) - origin_ticks,
                           resolution, qpm, sample_rate_hz)
    off = np.maximum(off, on + 1)  # a zero-length note still sounds for a sample, then releases
    channels = np.asarray(PITCHED_CHANNELS, np.uint8)[parts]
    events = np.zeros(2 * len(notes), EVENT_DTYPE)
    events["sample"] = np.concatenate([on, off])
    events["on"][:len(notes)] = 1
    events["channel"] = np.concatenate([channels, channels])
    events["pitch"] = np.concatenate([notes["pitch"], notes["pitch"]])
    events["velocity"][:len(notes)] = notes["velocity"]
    return events[np.lexsort((events["on"], events["sample"]))]


def set_programs(synth: Synth, programs: Sequence[int], n_parts: int) -> None:
    for k in range(max(n_parts, len(programs))):
        synth.program(PITCHED_CHANNELS[k], int(programs[k]) if k < len(programs) else 0)


class SynthFactory:
    """Makes a fresh synth per job or live session: a reused one does not render the same notes the
    same way twice (its reverb, chorus and LFOs carry state over). Making one takes ~50 ms once
    FluidSynth has the SoundFont's samples in memory (the first load reads the file: ~1 s for the
    141 MB GM font), so one unused synth per sample rate asked for is kept ready, made again on a
    background thread after each handout; it also keeps the samples loaded."""

    def __init__(self) -> None:
        self._spare: dict[int, Synth] = {}
        self._lock = threading.Lock()

    def warm(self, sample_rate_hz: int = 48_000) -> None:
        """Make the spare synth for this rate now, if there is none (blocking)."""
        with self._lock:
            if sample_rate_hz in self._spare:
                return
        synth = Synth(sample_rate_hz)
        with self._lock:
            if sample_rate_hz in self._spare:
                synth.close()
            else:
                self._spare[sample_rate_hz] = synth

    def new(self, sample_rate_hz: int) -> Synth:
        with self._lock:
            synth = self._spare.pop(sample_rate_hz, None)
        threading.Thread(target=self.warm, args=(sample_rate_hz,), name="synth-spare", daemon=True).start()
        return synth if synth is not None else Synth(sample_rate_hz)


def render_chunks(synth: Synth, notes: np.ndarray, parts: np.ndarray, programs: Sequence[int],
                  resolution: int, qpm: float, chunk_samples: int = CHUNK_SAMPLES,
                  first_chunk_samples: int = FIRST_CHUNK_SAMPLES) -> Iterator[np.ndarray]:
    """Offline: the performance of `notes` from tick 0, chunk by chunk, then its tail (until silent,
    at most TAIL_MAX_S). Yields (2, n) float32 arrays: the first first_chunk_samples long, the others
    chunk_samples, but the last."""
    sr = synth.sample_rate_hz
    set_programs(synth, programs, int(parts.max()) + 1 if len(parts) else 1)
    events = note_events(notes, parts, resolution, qpm, sr)
    end = int(events["sample"].max()) + 1 if len(events) else 0
    tail_stop = end + int(TAIL_MAX_S * sr)
    start, i = 0, 0
    while start < tail_stop:
        n = min(chunk_samples if start else min(first_chunk_samples, chunk_samples), tail_stop - start)
        j = int(np.searchsorted(events["sample"], start + n, side="left"))
        block = events[i:j].copy()
        block["sample"] -= start
        audio = synth.render(n, block)
        i, start = j, start + n
        if start > end and np.abs(audio).max() < SILENCE:
            if end > start - n:  # the tail had ended: keep the chunk up to the last note-off
                yield audio[:, :end - (start - n)]
            return
        yield audio


class LivePerformer:
    """One live perform session: block by block, each block's events at their sample offsets.

    Note times are ticks on the host timeline; a block starting at `position_ticks` maps tick t to
    offset (t - position_ticks) at the block's tempo, so tempo changes between blocks are followed.
    Notes with a duration schedule their own note-off; notes with duration 0 sound until a
    `releases` row (tick, pitch, part) ends them. Events that arrive late play at the block start.
    """

    def __init__(self, synth: Synth, programs: Sequence[int] = ()) -> None:
        self.synth, self.programs = synth, list(programs)
        set_programs(synth, self.programs, MAX_PARTS)
        self.clock = 0  # samples rendered since the session began
        self._pending: list[tuple[int, int, int, int, int]] = []  # heap: (session sample, on, ch, pitch, vel)

    @property
    def sample_rate_hz(self) -> int:
        return self.synth.sample_rate_hz

    def push(self, notes: np.ndarray, parts: np.ndarray, releases: np.ndarray, position_ticks: int,
             resolution: int, qpm: float, block_samples: int,
             programs: Sequence[int] | None = None) -> tuple[int, np.ndarray]:
        """Render one block; returns (its first sample on the session clock, (2, n) audio).
        New `programs` take effect at the block's start; sounding notes keep their instrument."""
        sr, start = self.sample_rate_hz, self.clock
        if programs is not None and list(programs) != self.programs:
            self.programs = list(programs)
            set_programs(self.synth, self.programs, MAX_PARTS)
        to_session = lambda ticks: start + ticks_to_samples(ticks - position_ticks, resolution, qpm, sr)
        channels = np.asarray(PITCHED_CHANNELS, np.uint8)[parts].tolist()
        on = to_session(notes["time"].astype(np.int64)).tolist()
        length = np.maximum(ticks_to_samples(notes["duration"], resolution, qpm, sr), 1).tolist()
        for at, n, dur, ch, pitch, vel in zip(on, length, notes["duration"].tolist(), channels,
                                             notes["pitch"].tolist(), notes["velocity"].tolist()):
            heapq.heappush(self._pending, (at, 1, ch, pitch, vel))
            if dur > 0:
                heapq.heappush(self._pending, (at + n, 0, ch, pitch, 0))
        if len(releases):
            rel_ch = np.asarray(PITCHED_CHANNELS, np.uint8)[releases[:, 2]].tolist()
            for at, ch, pitch in zip(to_session(releases[:, 0]).tolist(), rel_ch, releases[:, 1].tolist()):
                heapq.heappush(self._pending, (at, 0, ch, pitch, 0))
        events = []
        while self._pending and self._pending[0][0] < start + block_samples:
            at, on_, ch, pitch, vel = heapq.heappop(self._pending)
            events.append((max(0, at - start), on_, ch, pitch, vel))  # late events play at once
        block = np.array(events, EVENT_DTYPE) if events else np.zeros(0, EVENT_DTYPE)
        audio = self.synth.render(block_samples, block[np.lexsort((block["on"], block["sample"]))])
        self.clock += block_samples
        return start, audio

    def close(self) -> None:
        self.synth.close()
