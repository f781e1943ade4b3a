"""The perform task: notes in, audio out.

Two renderers: a SoundFont (FluidSynth and a General MIDI font, bridge.synth), the default, and
``renderer: neural`` (models.performer.neural: synthesis model + vocoder). Two shapes of job:

- offline (``perform``): a whole region, rendered in chunks that stream back as they are made, with
  the release tail after the last note;
- live (``live_perform``, engine/tasks/live_perform.py): the DAW sends each audio block's note-ons
  and note-offs as it plays and gets that block's audio back.

A request may carry a score's markings (the ``markings`` frame: dynamic level, hairpin and
articulation flags per note, as ``deep-musician perform`` reads them from notation); either renderer
then plays them (``played_markings``: velocities from the dynamics, lengths from the articulations),
and the neural performer hears the markings themselves too.

Part k plays on MIDI channel ``bridge.score.PITCHED_CHANNELS[k]`` with ``programs[k]`` (General MIDI
program numbers, 0 = piano).

Levels: an offline render comes out at ``DEFAULT_LOUDNESS_LUFS`` integrated loudness (EBU R128) with
its true peak at most ``TRUE_PEAK_CEILING_DBTP`` (``levelled``), unless the request asks for the raw
level. The loudness of a whole render is only known at its end, so the region is rendered twice, by
two fresh synths (which render the same notes the same way): a first pass measures it in constant
memory (``bridge.loudness``), the second streams it with the gain applied. The first pass delays
the first chunk by the time of a whole render: 1.0-2.5 s for 16-49 s pieces on the shared 2-core
machine (benchmarks/perform_levels.py, RESULTS.md "Perform: vocoder and levels"). A raw render
streams as it renders: its first reply is short (``FIRST_CHUNK_SAMPLES``; the neural performer's
``FIRST_CHUNK_FRAMES``) and came 2-12 ms (SoundFont) and 40-42 ms (neural) after the request to a warm
engine (benchmarks/perform_first_chunk.py).
Live blocks (``live_perform``) stay at the raw level: a DAW track has its own fader.

``renderer: "neural"`` performs with the neural performer instead (engine/tasks/perform_neural.py:
the model, its options and its chunks): mono at the models' own rate (22,050 Hz), resampled as one
stream to the request's, levelled like the SoundFont's after resampling, but its first pass spools
the audio to a temporary file (``Spooled``) rather than synthesising twice.
"""
from __future__ import annotations

import logging
import queue
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from bridge import protocol, synth
from bridge.loudness import LoudnessMeter, gain_to
from bridge.score import DEFAULT_QPM, DEFAULT_RESOLUTION, PITCHED_CHANNELS
from bridge.synth import EVENT_DTYPE, Synth
from engine.scheduler import Job, JobError
from engine.tasks import EngineContext, Prepared, Task, job_error
from engine.tasks.perform_neural import neural_chunks, neural_fields, neural_performer

log = logging.getLogger("engine.tasks.perform")

CHUNK_SAMPLES = 32_768  # per offline `audio` reply: 0.68 s at 48 kHz, 256 KiB of stereo float32
FIRST_CHUNK_SAMPLES = 4_096  # the first reply is short, so playback can start sooner
TAIL_MAX_S = 3.0  # offline: render the release and reverb tail until silent, at most this long
SILENCE = 1e-4  # -80 dBFS: a tail quieter than this over a whole chunk has ended
MAX_PARTS = len(PITCHED_CHANNELS)
DEFAULT_LOUDNESS_LUFS = -18.0  # integrated, EBU R128; music streaming sits at -14 to -16, broadcast at -23
TRUE_PEAK_CEILING_DBTP = -1.0
LOUDNESS_RANGE_LUFS = (-60.0, -5.0)  # targets a request or the CLI may ask for


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
    same way twice (its reverb, chorus and LFOs carry state over). Making one takes 150-190 ms here
    once FluidSynth has the SoundFont's samples in memory (the first load reads the file: ~1 s for
    the 141 MB GM font), so one unused synth per sample rate asked for is kept ready, made again
    after each handout; it also keeps the samples loaded.

    One thread, the keeper, makes every synth and frees every synth (``Synth(free_on=...)``: a
    synth closed or collected on a worker hands its freeing back). glibc gives each thread its own
    malloc arena, and ~13 MB synths made on one thread and freed on another left holes that grew a
    long-running engine's memory; with making and freeing on one thread the engine can keep the
    default arenas and their multi-client throughput (benchmarks/RESULTS.md, "malloc arenas")."""

    def __init__(self) -> None:
        self._spare: dict[int, Synth] = {}
        self._lock = threading.Lock()
        self._work: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        threading.Thread(target=self._keep, name="synth-keeper", daemon=True).start()

    def _keep(self) -> None:  # the keeper thread: makes and frees every synth, in order
        while True:
            job = self._work.get()
            try:
                job()
            except Exception as exc:  # a failed make is reported to its waiter; nothing else raises
                log.warning("event=synth_keeper_failed error=%r", exc)

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the keeper thread and wait for its result (or raise its error)."""
        done, box = threading.Event(), {}

        def job() -> None:
            try:
                box["value"] = fn()
            except BaseException as exc:
                box["error"] = exc
            finally:
                done.set()

        self._work.put(job)
        done.wait()
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def _make(self, sample_rate_hz: int) -> Synth:
        return Synth(sample_rate_hz, free_on=self._work.put)

    def _refill(self, sample_rate_hz: int) -> None:  # on the keeper thread
        with self._lock:
            if sample_rate_hz in self._spare:
                return
        synth = self._make(sample_rate_hz)
        with self._lock:
            self._spare.setdefault(sample_rate_hz, synth)
        if self._spare[sample_rate_hz] is not synth:
            synth.close()

    def warm(self, sample_rate_hz: int = 48_000) -> None:
        """Make the spare synth for this rate now, if there is none (blocking)."""
        self._call(lambda: self._refill(sample_rate_hz))

    def new(self, sample_rate_hz: int) -> Synth:
        with self._lock:
            synth = self._spare.pop(sample_rate_hz, None)
        if synth is None:
            synth = self._call(lambda: self._make(sample_rate_hz))
        self._work.put(lambda: self._refill(sample_rate_hz))
        return synth


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


def played_markings(notes: np.ndarray, parts: np.ndarray, markings: np.ndarray, resolution: int,
                    qpm: float) -> np.ndarray:
    """The notes with a score's markings played (``expression.play_plainly``): velocities from the
    dynamics, hairpins and accents, lengths from staccato, tenuto and slurs; every onset kept."""
    from models.performer.expression import from_score_notes, play_plainly

    performed = play_plainly(from_score_notes(notes, parts, resolution, markings, sort=False), qpm)
    out = notes.copy()
    out["velocity"] = performed["performed_velocity"]
    ticks = np.rint(performed["duration_s"] * qpm / 60.0 * resolution)
    out["duration"] = np.maximum(ticks, 1).astype(out["duration"].dtype)
    return out


def check_loudness(loudness_lufs: float) -> None:
    lo, hi = LOUDNESS_RANGE_LUFS
    if not lo <= loudness_lufs <= hi:
        raise PerformInputError(f"loudness must be {lo:g}..{hi:g} LUFS (or raw), got {loudness_lufs:g}")


def levelled(render: Callable[[], Iterator[np.ndarray]], sample_rate_hz: int, loudness_lufs: float | None,
             check: Callable[[], None] = lambda: None, levels: dict | None = None) -> Iterator[np.ndarray]:
    """The chunks of ``render()`` at ``loudness_lufs`` under the true-peak ceiling (None: as they are).
    ``render`` is called twice and must give the same audio both times: the first pass measures,
    the second is yielded with the gain. ``check`` runs after each first-pass chunk (a job's
    cancellation); ``levels`` gets the measured loudness and peak and the gain applied (dB)."""
    if loudness_lufs is None:
        yield from render()
        return
    meter = LoudnessMeter(sample_rate_hz)
    for chunk in render():
        meter.add(chunk)
        check()
    gain_db, lufs = gain_to(meter, loudness_lufs, TRUE_PEAK_CEILING_DBTP)
    peak = meter.true_peak_dbtp()
    if levels is not None:
        levels.update(raw_lufs=round(lufs, 2), raw_true_peak_dbtp=round(peak, 2), gain_db=round(gain_db, 2))
    gain = np.float32(10 ** (gain_db / 20))
    for chunk in render():
        yield chunk * gain


class Spooled:
    """``render`` made to give the same chunks twice at the cost of one render: the first call
    yields its chunks and writes them to a temporary file, the second reads them back (memory
    stays flat). For ``levelled`` with a renderer that is expensive to run twice."""

    def __init__(self, render: Callable[[], Iterator[np.ndarray]]) -> None:
        self.render, self.calls = render, 0
        self.file = tempfile.TemporaryFile()
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self) -> Iterator[np.ndarray]:
        self.calls += 1
        if self.calls == 1:
            for chunk in self.render():
                chunk = np.ascontiguousarray(chunk, np.float32)
                self.file.write(chunk.tobytes())
                self.shapes.append(chunk.shape)
                yield chunk
            return
        self.file.seek(0)
        for shape in self.shapes:
            n = int(np.prod(shape))
            yield np.frombuffer(self.file.read(4 * n), np.float32).reshape(shape)
        self.file.close()


def check_rate(sample_rate_hz: int) -> None:
    lo, hi = synth.SAMPLE_RATES_HZ
    if not lo <= sample_rate_hz <= hi:
        raise JobError(protocol.BAD_INPUT, f"sample_rate_hz must be {lo}..{hi} for the SoundFont "
                       f"performer, got {sample_rate_hz}")


def synth_factory(ctx: EngineContext) -> SynthFactory:
    """The engine's one SynthFactory, shared by offline and live perform."""
    return ctx.shared("synths", SynthFactory)


class SoundFontTask(Task):
    """Base of the SoundFont perform tasks: they run where FluidSynth and a SoundFont are found."""

    def __init__(self, ctx: EngineContext) -> None:
        super().__init__(ctx)
        self.synths = synth_factory(ctx)
        self.problem = ctx.shared("synth_problem", synth.available)  # "" when the performer can run

    def unavailable(self) -> str:
        return f"this engine cannot perform: {self.problem}" if self.problem else ""


def stream_levelled(job: Job, render, sr: int, loudness: float | None, end_s: float) -> tuple[int, dict]:
    """Send a render's chunks, levelled (``levelled``), as audio replies with progress; the samples
    sent and the level stats."""
    done, levels = 0, {}
    for audio in levelled(render, sr, loudness, job.check, levels):
        job.check()
        job.send(protocol.AUDIO, [audio], seq=job.next_seq(), start_sample=done, sample_rate_hz=sr)
        done += audio.shape[1]
        job.send(protocol.PROGRESS, fraction=min(1.0, done / sr / max(end_s, 1e-9)),
                 message=f"{done / sr:.1f} s of {end_s:.1f} s rendered")
    return done, levels


class PerformTask(SoundFontTask):
    """A whole region to audio, streamed in chunks with progress."""

    request = protocol.PERFORM

    def warm_up(self) -> None:
        if self.problem:
            log.warning("event=no_performer reason=%r", self.problem)
        else:  # reading the SoundFont takes ~1 s: do it beside serving, not before
            threading.Thread(target=self._warm_synth, name="synth-warm-up", daemon=True).start()

    def _warm_synth(self) -> None:
        try:
            self.synths.warm()
        except Exception as exc:
            log.warning("event=warm_up_failed model=soundfont error=%r", exc)

    def neural(self, vocoder: str | None = None, synth: str | None = None):
        return neural_performer(self.ctx, vocoder, synth=synth)

    def prepare(self, identity: bytes, message: protocol.Message) -> Prepared:
        fields, notes = message.fields, message.frame("notes")
        if fields.get("renderer", "soundfont") == "neural":
            return self.prepare_neural(message)
        sr, resolution = fields["sample_rate_hz"], fields.get("resolution", DEFAULT_RESOLUTION)
        qpm, programs = fields.get("qpm", DEFAULT_QPM), fields.get("programs", [])
        loudness = None if fields.get("raw_level") else fields.get("loudness_lufs", DEFAULT_LOUDNESS_LUFS)
        try:
            parts = check_parts(message.frame("parts"), len(notes), programs)
            if loudness is not None:
                check_loudness(loudness)
        except PerformInputError as exc:
            raise job_error(exc) from None
        check_rate(sr)
        if len(notes) == 0:
            raise JobError(protocol.BAD_INPUT, "the notes frame is empty; send at least one note to perform")
        if message.frame("markings") is not None:
            notes = played_markings(notes, parts, message.frame("markings"), resolution, qpm)
        end_s = float((notes["time"] + notes["duration"]).max()) / resolution * 60.0 / qpm

        def render() -> Iterator[np.ndarray]:
            with self.synths.new(sr) as performer:
                yield from render_chunks(performer, notes, parts, programs, resolution, qpm)

        def run(job: Job) -> dict:  # on a worker thread
            done, levels = stream_levelled(job, render, sr, loudness, end_s)
            return {"samples": done, "seconds_of_audio": round(done / sr, 3), "renderer": "soundfont",
                    "loudness_lufs": loudness, **levels}  # loudness None: the raw level

        return Prepared(run)

    def prepare_neural(self, message: protocol.Message) -> Prepared:
        fields, notes = message.fields, message.frame("notes")
        sr, resolution = fields["sample_rate_hz"], fields.get("resolution", DEFAULT_RESOLUTION)
        qpm = fields.get("qpm", DEFAULT_QPM)
        loudness = None if fields.get("raw_level") else fields.get("loudness_lufs", DEFAULT_LOUDNESS_LUFS)
        renderer = self.neural(fields.get("vocoder"), fields.get("model"))
        try:
            parts = check_parts(message.frame("parts"), len(notes), [])
            if loudness is not None:
                check_loudness(loudness)
            performer, z = neural_fields(renderer, fields)
        except ValueError as exc:  # PerformInputError or a neural option's
            raise job_error(exc) from None
        if len(notes) == 0:
            raise JobError(protocol.BAD_INPUT, "the notes frame is empty; send at least one note to perform")
        markings = message.frame("markings")
        end_s = float((notes["time"] + notes["duration"]).max()) / resolution * 60.0 / qpm

        def run(job: Job) -> dict:  # on a worker thread
            render = Spooled(lambda: neural_chunks(renderer, notes, parts, resolution, qpm, performer, z,
                                                     sr, markings))
            done, levels = stream_levelled(job, render, sr, loudness, end_s)
            return {"samples": done, "seconds_of_audio": round(done / sr, 3), "renderer": "neural",
                    "style": renderer.performers[performer], "model": renderer.synth_meta["name"],
                    "vocoder": renderer.vocoder_meta["name"], "loudness_lufs": loudness, **levels}

        return Prepared(run)
