"""The live perform task (``live_perform``): the DAW sends each audio block's note-ons and
note-offs as it plays and gets that block's audio back; a ``LivePerformer`` per session keeps the
synth (its sounding voices, reverb tail) and the session's sample clock from block to block.
"""
from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np

from bridge import protocol
from bridge.score import DEFAULT_RESOLUTION, PITCHED_CHANNELS
from bridge.synth import EVENT_DTYPE, Synth
from engine.scheduler import Job, JobError
from engine.tasks import LiveTask, Prepared, job_error
from engine.tasks.perform import (
    MAX_PARTS,
    PerformInputError,
    SoundFontTask,
    check_parts,
    check_rate,
    set_programs,
    ticks_to_samples,
)


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


class LivePerformTask(LiveTask, SoundFontTask):
    """``live_perform``: one block of a live session rendered to exactly ``block_samples`` samples."""

    request = protocol.LIVE_PERFORM
    kind = "perform"

    def prepare(self, identity: bytes, message: protocol.Message) -> Prepared:
        fields, session = message.fields, message.fields["session"]
        key = (identity, session)
        notes, releases = message.frame("notes"), message.frame("releases")
        resolution = fields.get("resolution", DEFAULT_RESOLUTION)
        check_rate(fields["sample_rate_hz"])
        if releases is None:
            releases = np.zeros((0, 3), np.int64)
        try:
            parts = check_parts(message.frame("parts"), len(notes), fields.get("programs", []))
            check_parts(releases[:, 2].astype(np.uint8), len(releases), fields.get("programs", []))
        except PerformInputError as exc:
            raise job_error(exc) from None

        def run(job: Job) -> dict:  # on a worker thread, one job per session at once
            live = self._session(key, fields)
            try:
                start, audio = live.push(notes, parts, releases, fields["position_ticks"], resolution,
                                         fields["qpm"], fields["block_samples"], fields.get("programs"))
            except BaseException:
                self.ctx.sessions.release(live)
                raise
            self.ctx.sessions.keep(key, live, self.kind)
            job.send(protocol.AUDIO, [audio], seq=job.next_seq(), start_sample=start,
                     sample_rate_hz=live.sample_rate_hz)
            return {"notes": len(notes), "releases": len(releases),
                    "position_ticks": fields["position_ticks"]}

        return Prepared(run, serial_key=key, accepted={"session": session})

    def _session(self, key: tuple[bytes, str], fields: dict) -> LivePerformer:
        live = self.checkout(key, fields)
        if live is None:
            return LivePerformer(self.synths.new(fields["sample_rate_hz"]), fields.get("programs", []))
        if live.sample_rate_hz != fields["sample_rate_hz"]:
            self.ctx.sessions.release(live)
            raise JobError(protocol.BAD_INPUT, f"session {key[1]!r} renders at {live.sample_rate_hz} Hz, "
                           f"this block asks for {fields['sample_rate_hz']}; keep one rate per session "
                           "or send reset: true")
        return live
