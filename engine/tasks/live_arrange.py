"""Live arranging: notes arrive as the DAW plays, each chord is labelled as soon as it arrives.

One ``LiveArranger`` per session turns the DAW's blocks (notes at the host's resolution, held notes,
releases) into chords for the one incremental decoder (models/arranger/incremental.py), which
carries the model's state from chord to chord, as the offline step-wise decode does. Fed a piece
chord by chord it gives exactly the labels ``engine.tasks.arrange.arrange`` gives for the same
online model (a test holds it to that).

As a DAW plays, a note's length is unknown at its note-on: such a note comes with duration 0 and
keeps its part sounding until a release (tick, pitch) for it arrives; the model reads one beat as
its duration. A release also ends a note with a duration early (the player let go sooner).
"""
from __future__ import annotations

import numpy as np
import torch

from bridge import protocol
from bridge.score import DEFAULT_RESOLUTION, sort_order
from engine.registry import ModelEntry
from engine.scheduler import Job, JobError
from engine.tasks import LiveTask, Prepared, job_error
from engine.tasks.arrange import (
    ArrangeInputError,
    ArrangeOptions,
    entry_ticks,
    find_model,
    model_ensemble,
    part_limits,
    pitch_hint_vector,
    to_model_ticks,
)
from models.arranger.decoding import PartState
from models.arranger.features import FeatureConfig
from models.arranger.incremental import IncrementalDecoder
from models.ensembles import get_ensemble

HELD = np.iinfo(np.int64).max // 2  # "sounding until released", for the parts' end times


class LiveArranger:
    def __init__(self, model: ModelEntry, resolution: int, options: ArrangeOptions | None = None) -> None:
        meta = model.metadata
        if meta["mode"] != "online" or "step" not in meta.get("methods", []):
            raise ArrangeInputError(f"model {model.name} is an offline model; live arranging needs an "
                                    "online one (--mode online)")
        if resolution <= 0:
            raise ArrangeInputError(f"resolution must be a positive number of ticks per quarter, "
                                    f"got {resolution}")
        self.model, self.model_name = model, model.name
        self.options = options or ArrangeOptions()
        self.fcfg = FeatureConfig(**meta["features"])
        self.parts_meta = meta["parts"]
        self.n_parts = len(self.parts_meta)
        self.resolution = resolution
        self.decoder = IncrementalDecoder(model.module, self.fcfg, self.n_parts, meta["decoder"],
                                          self.options.constrained, model.device,
                                          part_limits(model, self.options))
        self.decoder.set_pitch_hints(pitch_hint_vector(self.parts_meta, self.options.hints))
        self.options_ensemble = self.options.ensemble
        self.last_onset = -1
        self.holding: dict[int, int] = {}  # pitch -> part of the latest note of that pitch
        # part -> {pitch: end tick}; one more for the keyboard part of keep_extras
        self.ends: list[dict[int, int]] = [{} for _ in range(self.n_parts + 1)]
        self.entries: np.ndarray | None = None  # model ticks; fixed at the first chord
        self._entries = np.zeros(self.n_parts, np.int64)

    def reset(self, resolution: int, options: ArrangeOptions | None = None) -> None:
        """Start afresh as a new session of the same model, in this object's own memory: the engine
        reuses evicted sessions this way (a new session's arrays and tensors per DAW playback,
        freed minutes later among short-lived buffers, fragment the heap of a long-running engine)."""
        if resolution <= 0:
            raise ArrangeInputError(f"resolution must be a positive number of ticks per quarter, "
                                    f"got {resolution}")
        options = options or ArrangeOptions()
        self.options, self.resolution = options, resolution
        self.decoder.constrained = options.constrained
        if options.ensemble != self.options_ensemble:  # the same model serves another ensemble
            self.decoder.parts = PartState(self.n_parts, part_limits(self.model, options))
            self.options_ensemble = options.ensemble
        self.decoder.reset(pitch_hint_vector(self.parts_meta, options.hints))
        self.last_onset = -1
        self.holding.clear()
        for ends in self.ends:
            ends.clear()
        self.entries = None

    @torch.no_grad()
    def push(self, notes: np.ndarray, releases: np.ndarray | None = None) -> np.ndarray:
        """Labels (part indices) for ``notes``, in the order given. Notes may hold one chord or
        several; their onsets must not precede those already pushed. ``releases`` rows are
        (tick, pitch, ...) note-offs, applied in time order with the chords."""
        rel = np.zeros((0, 2), np.int64) if releases is None else np.asarray(releases, np.int64)[:, :2]
        rel = rel[np.argsort(rel[:, 0], kind="stable")]
        rel_ticks = np.round(rel[:, 0] * (self.fcfg.resolution / self.resolution)).astype(np.int64)
        if len(notes) == 0:
            self._release(rel_ticks, rel[:, 1])
            return np.zeros(0, np.int64)
        held = notes["duration"] == 0
        scaled = to_model_ticks(notes, self.resolution, self.fcfg)
        scaled["duration"][held] = self.fcfg.resolution  # what the model reads for an open note
        order = sort_order(scaled)
        scaled, held = scaled[order], held[order]
        if scaled["time"][0] < self.last_onset:
            raise ArrangeInputError(
                f"notes arrived out of order: onset {int(notes['time'].min())} ticks is before the "
                "last chord already arranged; start a new session to go back in time")
        if self.entries is None:  # into the session's own array, like the LSTM state (see _step)
            first = int(scaled["time"][0])
            self._entries[:] = entry_ticks(self.parts_meta, self.options.hints, first, self.fcfg)
            self.entries = self._entries
        labels = np.zeros(len(scaled), np.int64)
        onsets = scaled["time"]
        starts = np.flatnonzero(np.concatenate([[True], onsets[1:] != onsets[:-1]]))
        done = 0
        for a, b in zip(starts, list(starts[1:]) + [len(scaled)]):
            due = int(np.searchsorted(rel_ticks, onsets[a], side="right"))
            self._release(rel_ticks[done:due], rel[done:due, 1])
            done = max(done, due)
            labels[a:b] = self.decoder.chord(scaled[a:b], self.entries)
            self._hold(scaled[a:b], labels[a:b], held[a:b])
        self._release(rel_ticks[done:], rel[done:, 1])
        self.last_onset = int(onsets[-1])
        out = np.zeros(len(notes), np.int64)
        out[order] = labels
        return out

    def _hold(self, chord: np.ndarray, labels: np.ndarray, held: np.ndarray) -> None:
        """Remember which part each pitch went to and when it ends; an open note keeps its part
        busy until released."""
        onset = int(chord["time"][0])
        for n, part, open_ in zip(chord, labels.tolist(), held.tolist()):
            pitch = int(n["pitch"])
            self.holding[pitch] = part
            ends = self.ends[part]
            for p in [p for p, end in ends.items() if end <= onset]:  # over: forget
                del ends[p]
            ends[pitch] = HELD if open_ else onset + int(n["duration"])
            if open_ and part < self.n_parts:
                self.decoder.busy(part, list(ends.values()))

    def _release(self, ticks: np.ndarray, pitches: np.ndarray) -> None:
        for tick, pitch in zip(ticks.tolist(), pitches.tolist()):
            part = self.holding.pop(int(pitch), None)
            if part is None:
                continue  # a release for a note this session never saw (or already released)
            ends = self.ends[part]
            ends[int(pitch)] = min(ends.get(int(pitch), tick), tick)
            if part < self.n_parts:
                self.decoder.busy(part, list(ends.values()))


class LiveArrangeTask(LiveTask):
    """``live_notes``: one block of a live session's notes (and releases), labelled at once."""

    request = protocol.LIVE_NOTES
    kind = "arrange"

    def prepare(self, identity: bytes, message: protocol.Message) -> Prepared:
        fields, session = message.fields, message.fields["session"]
        key = (identity, session)
        notes = message.frame("notes")
        resolution = fields.get("resolution", DEFAULT_RESOLUTION)

        def run(job: Job) -> dict:  # on a worker thread, one job per session at once
            live = self._session(key, fields, resolution)
            try:
                labels = live.push(notes.copy(), message.frame("releases"))
            except BaseException as exc:
                self.ctx.sessions.release(live)
                if isinstance(exc, ArrangeInputError):
                    raise job_error(exc) from None
                raise
            self.ctx.sessions.keep(key, live, self.kind, spare_pool=live.model_name)
            parts = (live.options.ensemble or model_ensemble(live.model)).part_names
            job.send(protocol.NOTES, [notes, labels.astype(np.uint8)], seq=job.next_seq(), parts=parts,
                     session=session)
            return {"notes": len(notes), "position_ticks": fields["position_ticks"]}

        return Prepared(run, serial_key=key, accepted={"session": session})

    def _session(self, key: tuple[bytes, str], fields: dict, resolution: int) -> LiveArranger:
        sessions = self.ctx.sessions
        live = self.checkout(key, fields)
        if live is not None:
            if live.resolution != resolution:
                sessions.release(live)
                raise JobError(protocol.BAD_INPUT, f"session {key[1]!r} runs at resolution "
                               f"{live.resolution}, this block says {resolution}; keep one resolution per "
                               "session or send reset: true")
            return live
        if "ensemble" not in fields:
            raise JobError(protocol.BAD_INPUT, f"session {key[1]!r} is new (or was reset), so its first "
                           "live_notes must name the ensemble, e.g. ensemble: satb")
        model = self.ctx.registry.on(find_model(self.ctx.registry, None, fields["ensemble"], "online"),
                                     self.device)
        options = ArrangeOptions(ensemble=get_ensemble(fields["ensemble"]))
        spare = sessions.take_spare(model.name)
        try:
            if spare is None:
                return LiveArranger(model, resolution, options)
            spare.reset(resolution, options)
            return spare
        except ArrangeInputError as exc:
            raise job_error(exc) from None
