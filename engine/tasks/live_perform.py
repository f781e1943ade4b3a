"""The live perform task (``live_perform``): the DAW sends each audio block's note-ons and
note-offs as it plays and gets that block's audio back; a ``LivePerformer`` per session keeps the
synth (its sounding voices, reverb tail) and the session's sample clock from block to block.

With ``renderer: neural`` a ``LiveNeuralPerformer`` plays the session instead: the neural
performer is not causal (its synthesis windows and vocoder look at frames on both sides), so each
block is rendered from a sliding window of the session's recent notes, ``LIVE_HISTORY_S`` before
the block and ``LIVE_LOOKAHEAD_S`` after it, and the returned audio runs ``latency_samples``
(lookahead + crossfade: 3,453 samples, 157 ms at 22,050 Hz) behind the notes. Consecutive windows
render the shared samples a little differently, so each block is crossfaded into the last over
``LIVE_FADE`` samples (raised cosine). The windows sit on one grid of mel frames, so the vocoder can
carry state across them: the phase-gradient vocoder (the default, ``DEFAULT_LIVE_VOCODER``) keeps the
phase the last window gave the frames they share and continues it, told each window's notes
(``phase_gradient.CarriedGradient``); Griffin-Lim, when a session names it, starts each window from
the phase the last one reached (``NeuralRenderer.stream_vocoder``). A session at another rate (a
DAW's 44,100 or 48,000 Hz) is rendered at the models' 22,050 Hz and resampled as one stream (soxr,
state kept across blocks), each block returned at exactly the host's length: ``latency_samples`` is
then in host samples, the lookahead and crossfade at the host rate plus the resampler's lag (7,902
samples, 179 ms at 44,100 Hz; 7,579, 158 ms at 48,000).

Levels: the SoundFont's live blocks keep the raw level (a DAW track has its own fader); the neural
performer's come at the level its offline render of the same notes would have (``LiveLevel``: the
session's loudness measured as it plays, the gain moving toward what the offline levelling would
apply). Its raw level depends on the texture far more than the SoundFont's: its offline gains run
from +17 dB for three-note chords to +31 dB for a single line (RESULTS.md, "Perform: live neural
levels"), so no one fixed gain could match.
"""
from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

import numpy as np

from bridge import protocol
from bridge.loudness import LoudnessMeter, gain_to
from bridge.score import DEFAULT_RESOLUTION, PITCHED_CHANNELS
from bridge.synth import EVENT_DTYPE, Synth
from engine.scheduler import Job, JobError
from engine.tasks import LiveTask, Prepared, job_error
from engine.tasks.perform import (
    DEFAULT_LOUDNESS_LUFS,
    MAX_PARTS,
    TRUE_PEAK_CEILING_DBTP,
    SoundFontTask,
    check_parts,
    check_rate,
    set_programs,
    ticks_to_samples,
)
from engine.tasks.perform_neural import BlockResampler, neural_fields, neural_performer

LIVE_HISTORY_S = 0.5  # neural: notes rendered before each block, so its start has context
LIVE_LOOKAHEAD_S = 0.145  # neural: notes heard after each block before it is rendered
LIVE_FADE = 256  # neural: crossfade at each block join, samples
LIVE_START_GAIN_DB = 20.0  # neural: the gain until 400 ms are measured (offline: +17..+31 dB; low is safe)
LIVE_SLEW_DB_PER_S = 24.0  # neural: how fast the live gain may move toward its target
LIVE_MEASURE_EVERY_S = 0.2  # neural: the target is measured anew after this much audio


class LiveLevel:
    """A live session's blocks at the level ``levelled`` gives its offline render: the integrated
    loudness (EBU R128) and true peak of the raw blocks so far are measured as they pass, and the
    gain moves toward the one that brings them to ``target_lufs`` under ``ceiling_dbtp``, at most
    ``LIVE_SLEW_DB_PER_S`` (a ramp across each block: no steps). Offline the gain is one number
    for the whole render; live it is that number's running estimate, which reaches it as the
    session goes on (it starts at ``start_gain_db``)."""

    def __init__(self, sample_rate_hz: int, target_lufs: float = DEFAULT_LOUDNESS_LUFS,
                 ceiling_dbtp: float = TRUE_PEAK_CEILING_DBTP,
                 start_gain_db: float = LIVE_START_GAIN_DB) -> None:
        self.meter = LoudnessMeter(sample_rate_hz)
        self.target_lufs, self.ceiling_dbtp = target_lufs, ceiling_dbtp
        self.gain_db = self.goal_db = start_gain_db
        self._unmeasured = 0  # samples added since the goal was last measured

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """(2, n) raw block -> (2, n) levelled block."""
        sr, n = self.meter.sample_rate_hz, audio.shape[1]
        self.meter.add(audio)
        self._unmeasured += n
        if self._unmeasured >= LIVE_MEASURE_EVERY_S * sr:  # a histogram read: as cheap at 10 min as at 1 s
            self._unmeasured = 0
            gain_db, lufs = gain_to(self.meter, self.target_lufs, self.ceiling_dbtp)
            if math.isfinite(lufs):
                self.goal_db = gain_db
        step = LIVE_SLEW_DB_PER_S * n / sr
        gain_db = min(max(self.goal_db, self.gain_db - step), self.gain_db + step)
        ramp = np.power(10.0, np.linspace(self.gain_db, gain_db, n + 1)[1:] / 20).astype(np.float32)
        self.gain_db = gain_db
        return audio * ramp


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


class LiveNeuralPerformer:
    """One live session of the neural performer (the module's docstring says how and how late).
    Notes are kept on the models' sample clock; a note of duration 0 sounds until its release
    and is rendered as held to the edge of what has been heard.

    At a session rate other than the models' (``sample_rate_hz``: a DAW's 44,100 or 48,000 Hz) each
    host block of n samples renders the models' samples up to the block's end on their clock (n
    times 22,050 / rate, rounded so the two clocks never drift apart) and a ``BlockResampler``
    turns them into exactly n: ``latency_samples`` (host samples) is then the models' latency at
    the host rate plus the resampler's ``lag``."""

    def __init__(self, renderer, performer: int, z, sample_rate_hz: int | None = None) -> None:
        self.renderer, self.performer, self.z = renderer, performer, z  # z: (latent_dim,) tensor
        model_hz = renderer.sample_rate_hz
        self.sample_rate_hz = sample_rate_hz or model_hz
        self.clock = 0  # host samples
        self.model_clock = 0  # the models' samples: round(clock * model_hz / sample_rate_hz)
        self.lookahead = int(LIVE_LOOKAHEAD_S * model_hz)
        self.model_latency = self.lookahead + LIVE_FADE  # the models' samples
        self.resampler = (None if self.sample_rate_hz == model_hz
                          else BlockResampler(model_hz, self.sample_rate_hz))
        self.latency_samples = self.model_latency if self.resampler is None else (
            round(self.model_latency * self.sample_rate_hz / model_hz) + self.resampler.lag)
        self.notes: list[list[int]] = []  # [on, off (-1 until released), pitch, part, velocity]
        self._tail = np.zeros(0, np.float32)  # the last block's next samples, to fade out of
        self.vocoder = renderer.stream_vocoder()  # Griffin-Lim carries its phase from window to window
        self.score_phase = bool(getattr(renderer, "score_phase", False))
        self.level = LiveLevel(model_hz)

    def push(self, notes: np.ndarray, parts: np.ndarray, releases: np.ndarray, position_ticks: int,
             resolution: int, qpm: float, block_samples: int,
             programs: Sequence[int] | None = None) -> tuple[int, np.ndarray]:
        """Render one block, ``latency_samples`` behind the notes: (its first sample on the session
        clock, (2, block_samples) audio at the session's rate, the mono render on both channels,
        levelled by ``LiveLevel``). ``programs`` do not apply."""
        start, model_hz = self.clock, self.renderer.sample_rate_hz
        self.add(notes, parts, releases, position_ticks, resolution, qpm)
        self.clock += block_samples
        model_end = round(self.clock * model_hz / self.sample_rate_hz)
        mono = self.render(model_end - self.model_clock)
        if self.resampler is not None:
            mono = self.resampler(mono, block_samples)
        return start, np.stack([mono, mono])

    def add(self, notes: np.ndarray, parts: np.ndarray, releases: np.ndarray, position_ticks: int,
            resolution: int, qpm: float) -> None:
        """A block's notes and releases, its ticks from ``position_ticks`` at the model clock."""
        sr, start = self.renderer.sample_rate_hz, self.model_clock
        to_session = lambda ticks: start + ticks_to_samples(ticks - position_ticks, resolution, qpm, sr)
        length = ticks_to_samples(notes["duration"], resolution, qpm, sr)
        for at, n, dur, pitch, part, vel in zip(to_session(notes["time"].astype(np.int64)).tolist(),
                                                length.tolist(), notes["duration"].tolist(),
                                                notes["pitch"].tolist(), parts.tolist(),
                                                notes["velocity"].tolist()):
            self.notes.append([at, at + max(n, 1) if dur > 0 else -1, pitch, part, vel])
        for at, pitch, part in zip(to_session(releases[:, 0]).tolist(), releases[:, 1].tolist(),
                                   releases[:, 2].tolist()):
            held = [n for n in self.notes if n[1] < 0 and n[2] == pitch and n[3] == part]
            if held:
                note = max(held, key=lambda n: n[0])
                note[1] = max(at, note[0] + 1)

    def render(self, block_samples: int) -> np.ndarray:
        """The next ``block_samples`` of the models' samples, (n,) levelled, crossfaded into the last."""
        sr, start = self.renderer.sample_rate_hz, self.model_clock
        if block_samples <= 0:  # a host block shorter than one of the models' samples
            return np.zeros(0, np.float32)
        horizon = start + block_samples  # what the notes say is known up to here
        a = horizon - self.model_latency - block_samples  # this block's audio: [a, a + block_samples)
        origin = a - int(LIVE_HISTORY_S * sr)
        origin -= origin % self.renderer.hop  # windows on one frame grid, so frames match block to block
        audio = self.window(origin, horizon)[a - origin:]
        fade = min(len(self._tail), block_samples)
        out = audio[:block_samples].copy()
        if fade:
            ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(fade) + 0.5) / fade)).astype(np.float32)
            out[:fade] = out[:fade] * ramp + self._tail[:fade] * ramp[::-1]
        self._tail = audio[block_samples:block_samples + LIVE_FADE]
        release = int(2.0 * sr)  # a note whose release has ended before the window is forgotten
        self.notes = [n for n in self.notes if n[1] < 0 or n[1] + release > origin]
        self.model_clock = horizon
        return self.level(np.stack([out, out]))[0]  # measured as the stereo pair it is sent as

    def window(self, origin: int, horizon: int) -> np.ndarray:
        """The neural render of the notes sounding in [origin, horizon) (session samples), cut
        there; a note begun before ``origin`` starts at it, one not yet released lasts to ``horizon``."""
        from models.performer.expression import DEFAULT_DYNAMIC, MARKED_DTYPE

        sr, hop = self.renderer.sample_rate_hz, self.renderer.hop
        rows = [(max(on, origin), min(off if off >= 0 else horizon, horizon), pitch, part, vel)
                for on, off, pitch, part, vel in self.notes if on < horizon and (off < 0 or off > origin)]
        if not rows:
            return np.zeros(horizon - origin, np.float32)
        marked = np.zeros(len(rows), MARKED_DTYPE)  # at 60 qpm a beat is a second
        for i, (on, off, pitch, part, vel) in enumerate(rows):
            marked[i] = (part, pitch, (on - origin) / sr, max(off - on, 1) / sr, vel, DEFAULT_DYNAMIC, 0, 0)
        performed = self.renderer.perform(marked, 60.0, self.performer)
        n_frames = -(-(horizon - origin) // hop) + 1
        mel = self.renderer.mel(performed, 60.0, self.performer, self.z, n_frames, 0, n_frames)
        if self.score_phase:  # the window's notes tell the phase-gradient vocoder their harmonics
            from models.performer.phase_gradient import harmonic_hz

            hz = harmonic_hz(performed["onset_s"], performed["onset_s"] + performed["duration_s"],
                             performed["pitch"], 0, n_frames, sr, hop, width=self.renderer.harmonic_bins)
            return self.vocoder(mel, origin // hop, hz).numpy()[:horizon - origin].astype(np.float32)
        return self.vocoder(mel, origin // hop).numpy()[:horizon - origin].astype(np.float32)

    def close(self) -> None:
        pass


class LivePerformTask(LiveTask, SoundFontTask):
    """``live_perform``: one block of a live session rendered to exactly ``block_samples`` samples."""

    request = protocol.LIVE_PERFORM
    kind = "perform"

    def prepare(self, identity: bytes, message: protocol.Message) -> Prepared:
        fields, session = message.fields, message.fields["session"]
        key = (identity, session)
        notes, releases = message.frame("notes"), message.frame("releases")
        resolution = fields.get("resolution", DEFAULT_RESOLUTION)
        neural = fields.get("renderer", "soundfont") == "neural"
        if not neural:
            check_rate(fields["sample_rate_hz"])
        if releases is None:
            releases = np.zeros((0, 3), np.int64)
        try:
            parts = check_parts(message.frame("parts"), len(notes), fields.get("programs", []))
            check_parts(releases[:, 2].astype(np.uint8), len(releases), fields.get("programs", []))
            renderer = neural_performer(self.ctx, fields.get("vocoder"), live=True,
                                        synth=fields.get("model")) if neural else None
            style = neural_fields(renderer, fields) if neural else None
        except ValueError as exc:  # PerformInputError or a neural option's
            raise job_error(exc) from None

        def run(job: Job) -> dict:  # on a worker thread, one job per session at once
            live = self._session(key, fields, style)
            try:
                start, audio = live.push(notes, parts, releases, fields["position_ticks"], resolution,
                                         fields["qpm"], fields["block_samples"], fields.get("programs"))
            except BaseException:
                self.ctx.sessions.release(live)
                raise
            self.ctx.sessions.keep(key, live, self.kind)
            job.send(protocol.AUDIO, [audio], seq=job.next_seq(), start_sample=start,
                     sample_rate_hz=live.sample_rate_hz)
            stats = {"notes": len(notes), "releases": len(releases),
                     "position_ticks": fields["position_ticks"],
                     "latency_samples": getattr(live, "latency_samples", 0)}
            if isinstance(live, LiveNeuralPerformer):  # the synthesis model the session plays (its name)
                stats["model"] = live.renderer.synth_meta["name"]
            return stats

        return Prepared(run, serial_key=key, accepted={"session": session})

    def _session(self, key: tuple[bytes, str], fields: dict,
                 style: tuple | None) -> LivePerformer | LiveNeuralPerformer:
        live = self.checkout(key, fields)
        if live is None and style is not None:
            renderer = neural_performer(self.ctx, fields.get("vocoder"), live=True, synth=fields.get("model"))
            return LiveNeuralPerformer(renderer, *style, fields["sample_rate_hz"])
        if live is None:
            return LivePerformer(self.synths.new(fields["sample_rate_hz"]), fields.get("programs", []))
        if isinstance(live, LiveNeuralPerformer) != (style is not None):
            self.ctx.sessions.release(live)
            raise JobError(protocol.BAD_INPUT, f"session {key[1]!r} was started with another renderer; "
                           "keep one renderer per session or send reset: true")
        if live.sample_rate_hz != fields["sample_rate_hz"]:
            self.ctx.sessions.release(live)
            raise JobError(protocol.BAD_INPUT, f"session {key[1]!r} renders at {live.sample_rate_hz} Hz, "
                           f"this block asks for {fields['sample_rate_hz']}; keep one rate per session "
                           "or send reset: true")
        return live
