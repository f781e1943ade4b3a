"""The arrange task: assign every note of a solo (e.g. piano) part to an ensemble part.

Every input note comes out unchanged (onset, pitch, duration, velocity, at the input's own tick
resolution); the model only decides which part it goes to.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from bridge import protocol
from bridge.score import DEFAULT_RESOLUTION, Score, Track, make_notes, sort_order
from engine.scheduler import Job, JobError
from engine.tasks import Prepared, Task, job_error
from engine.tasks.arrange_input import ArrangeInputError, Hints
from models.arranger import decoding
from models.arranger.decoding import DIVISI, EXTRA, OUT_OF_RANGE, PartLimits, playability
from models.arranger.features import FeatureConfig
from models.ensembles import Ensemble, EnsembleError, get_ensemble, parse_ensemble

if TYPE_CHECKING:  # torch comes with them: a client of the engine (arrange --engine) never needs it
    from engine.registry import ModelEntry, Registry

log = logging.getLogger("engine.tasks.arrange")
MODES = ("online", "offline")
CHUNK_NOTES = 4096  # notes per `notes` reply: ~74 KB, small enough to keep replies flowing
EXTRA_PART = "Keyboard"  # --keep-extras: the part that takes what no ensemble part can play
EXTRA_PROGRAM = 0  # GM acoustic grand piano
# why no model is shipped for ensembles of these sizes, by mode (counts: models.data.corpus.voice_counts
# on the Renaissance set, the only corpus with more than four voices; benchmarks/RESULTS.md)
UNTRAINED_PARTS = {
    7: dict.fromkeys(MODES, "no seven-voice model is shipped because the Renaissance training set has only 5 "
                            "seven-voice works (4 train, 1 valid, none held out for testing), too few to "
                            "train or test one"),
    8: dict.fromkeys(MODES, "no eight-voice model is trained yet: the Renaissance set's 47 eight-voice works "
                            "(35 train, 5 valid, 7 test; 28,801 notes, under a third of the Bach chorales') "
                            "are the only data for one"),
}
MAX_TRAINED_PARTS = 8  # the corpora rank at most 8 voices (models.data.corpus.MAX_VOICES)


@dataclass(frozen=True)
class ArrangeOptions:
    constrained: bool = True  # each part plays what it can: its range, its notes at once
    hints: Hints = field(default_factory=Hints)  # by the model's part names
    ensemble: Ensemble | None = None  # the parts written out; None: the model's own ensemble
    keep_extras: bool = False  # notes no part can play go to an added keyboard part


def model_ensemble(model: ModelEntry) -> Ensemble:
    """The ensemble a model was trained for: the shipped file of that name, else its metadata."""
    from models.ensembles import ENSEMBLES, Part

    meta = model.metadata
    if meta["ensemble"] in ENSEMBLES:
        return ENSEMBLES[meta["ensemble"]]
    polyphony = 1 if meta.get("monophonic_parts", True) else 10
    parts = tuple(Part(p["name"], int(p["program"]), int(p["low"]), int(p["high"]), polyphony=polyphony)
                  for p in meta["parts"])
    return Ensemble(meta["ensemble"], "", parts)


def part_limits(model: ModelEntry, options: ArrangeOptions) -> PartLimits:
    """What each of the model's parts may play: the ensemble's ranges and notes at once."""
    ensemble = options.ensemble or model_ensemble(model)
    return PartLimits.of(ensemble.parts, options.keep_extras)


@dataclass
class Arrangement:
    """The result of arranging: a part per input note, in input order. The embedded path and the
    engine's reply (labels per note sent) both end here, and ``to_score`` makes the Score once."""

    notes: np.ndarray  # the input's notes, unchanged, in input order
    labels: np.ndarray  # (N,) part index per note
    part_names: list[str]
    programs: list[int]  # General MIDI program per part
    source: Score  # tempo, meter, key map and title of the input
    model: str = ""
    ensemble: Ensemble | None = None  # clefs, transpositions and ranges of the parts
    keep_extras: bool = False  # the last part is the added keyboard part

    def flags(self) -> np.ndarray:
        """(N,) decoding.PLAYABLE, DIVISI, OUT_OF_RANGE or EXTRA per note, in input order."""
        out = np.zeros(len(self.notes), np.int64)
        if self.ensemble is None:
            return out
        order = sort_order(self.notes)
        out[order] = playability(self.notes[order], self.labels[order],
                                 PartLimits.of(self.ensemble.parts, self.keep_extras))
        return out

    def summary(self) -> str:
        """Notes that are not plainly playable, by kind; empty if every note is."""
        flags = self.flags()
        kinds = [(DIVISI, "in a divisi (a part playing more notes at once than it can)"),
                 (OUT_OF_RANGE, "out of their part's range"), (EXTRA, f"in the {EXTRA_PART} part")]
        return "; ".join(f"{int((flags == k).sum())} {what}" for k, what in kinds if (flags == k).any())

    def to_score(self) -> Score:
        """One track per part, its notes in (onset, pitch, duration) order; drum tracks of the
        input pass through as they were."""
        order = sort_order(self.notes)
        notes, labels = self.notes[order], self.labels[order]
        flags = self.flags()[order]
        parts = list(self.ensemble.parts) if self.ensemble is not None else []
        tracks = []
        for k, (name, program) in enumerate(zip(self.part_names, self.programs)):
            part = parts[k] if k < len(parts) else None
            mine = labels == k
            tracks.append(Track(name=name, program=int(program), notes=notes[mine], role=name,
                                clef=part.clef if part else "",  # the keyboard part: music21 picks
                                transposition=part.transposition if part else 0,
                                divisi=flags[mine] == DIVISI))
        src = self.source
        tracks += [t for t in src.tracks if t.is_drum]
        return Score(src.resolution, tracks, src.tempos.copy(), src.meters.copy(), src.keys.copy(), src.title,
                     src.composer, bars=src.bars.copy())


def to_model_ticks(notes: np.ndarray, resolution: int, fcfg: FeatureConfig) -> np.ndarray:
    """A copy of ``notes`` at the model's tick resolution (durations at least one tick); the
    input's own notes are never changed."""
    factor = fcfg.resolution / resolution
    scaled = notes.copy()
    scaled["time"] = np.round(notes["time"] * factor).astype(np.int64)
    scaled["duration"] = np.maximum(np.round(notes["duration"] * factor).astype(np.int64), 1)
    return scaled


def entry_ticks(parts: list[dict], hints: Hints, first_onset: int, fcfg: FeatureConfig) -> np.ndarray:
    """Each part's entry (model ticks): the user's hint, else the first note of the input."""
    return np.array([round(hints.entries_beats[p["name"]] * fcfg.resolution)
                     if p["name"] in hints.entries_beats else first_onset for p in parts], np.int64)


def pitch_hint_vector(parts: list[dict], hints: Hints) -> np.ndarray:
    """(P,) typical pitch of each part scaled to 0..1: the user's hint, else the part's mid-range."""
    return np.array([hints.pitches.get(p["name"], (p["low"] + p["high"]) / 2) / 127.0
                     for p in parts], np.float32)


def input_notes(score: Score) -> np.ndarray:
    """All pitched notes of the input in (onset, pitch, duration) order; refuses unusable input."""
    if not score.tracks or score.n_notes == 0:
        raise ArrangeInputError("the input has no notes; give a MIDI or MusicXML file with a piano "
                                "(or other solo) part")
    notes, _ = score.merged(include_drums=False)
    if len(notes) == 0:
        raise ArrangeInputError("the input has only drum notes (MIDI channel 10), which cannot be "
                                "arranged; give a pitched part")
    return notes


def pick_tracks(score: Score, picks: list[str]) -> Score:
    """The score with only the pitched tracks ``picks`` names (numbers from 1, or names, case
    insensitive); drum tracks stay, to pass through."""
    listing = "; ".join(f"{i + 1}: {t.name or '(unnamed)'}{' (drums)' if t.is_drum else ''}"
                        for i, t in enumerate(score.tracks))
    chosen = set()
    for pick in picks:
        found = ([int(pick) - 1] if pick.isdigit() and 0 < int(pick) <= len(score.tracks) else
                 [i for i, t in enumerate(score.tracks) if t.name.strip().lower() == pick.strip().lower()])
        if not found:
            raise ArrangeInputError(f"--track {pick}: no such track; the input's tracks are {listing}")
        if any(score.tracks[i].is_drum for i in found):
            raise ArrangeInputError(f"--track {pick} is a drum track, which passes through unchanged and "
                                    f"is not arranged; pick a pitched track: {listing}")
        chosen.update(found)
    tracks = [t for i, t in enumerate(score.tracks) if i in chosen or t.is_drum]
    return dataclasses.replace(score, tracks=tracks)


def arrange_notes(notes: np.ndarray, resolution: int, model: ModelEntry,
                  options: ArrangeOptions | None = None, limits: PartLimits | None = None,
                  tracks: np.ndarray | None = None, check: Callable[[], None] | None = None) -> np.ndarray:
    """(N,) part index of each of ``notes`` (any order, at ``resolution`` ticks per quarter);
    ``limits`` replaces the ensemble's (benchmarks compare decoders with it). Notes of no length
    (grace notes) are not shown to the model: each goes with the note it leads to, of its own
    source track where ``tracks`` (N,) says (``decoding.lead_parts``). ``check`` (a job's
    cancellation check) runs before each chord is decoded: the model's one pass over the region
    cannot be stopped, but the decoding after it, most of an offline arrangement's time, can."""
    if len(notes) == 0:
        raise ArrangeInputError("there are no notes to arrange; send at least one note")
    lengthless = notes["duration"] == 0
    if lengthless.any() and not lengthless.all():
        out = np.zeros(len(notes), np.int64)
        out[~lengthless] = arrange_notes(notes[~lengthless], resolution, model, options, limits, check=check)
        out[lengthless] = decoding.lead_parts(notes, lengthless, out, tracks)
        return out
    options = options or ArrangeOptions()
    meta = model.metadata
    parts = meta["parts"]
    n_parts = len(parts)
    fcfg = FeatureConfig(**meta["features"])
    # the model works at its own resolution, in (onset, pitch, duration) order there; ties after
    # rounding keep the input's own order
    scaled = to_model_ticks(notes, resolution, fcfg)
    order = sort_order(notes)
    order = order[sort_order(scaled[order])]
    scaled = scaled[order]
    entries = entry_ticks(parts, options.hints, int(scaled["time"][0]), fcfg)
    pitch_hints = pitch_hint_vector(parts, options.hints)
    limits = limits or part_limits(model, options)
    from models.arranger.incremental import decode_stepwise
    from models.arranger.inference import log_probs

    if fcfg.use_voice_state:  # the model reads its own past choices: one note at a time
        labels = decode_stepwise(model.module, scaled, fcfg, n_parts, entries, pitch_hints,
                                 options.constrained, model.device, limits, check)
    else:
        logp = log_probs(model.module, scaled, fcfg, n_parts, entries, pitch_hints, model.device)
        if options.constrained and meta["mode"] == "offline":  # it sees the whole region anyway
            logp = decoding.prefer_one_part(scaled, logp, limits)
        decode = decoding.DECODERS[meta["decoder"]] if options.constrained else decoding.argmax
        labels = decode(scaled, logp, limits, check=check)
    out = np.zeros(len(notes), np.int64)
    out[order] = labels
    return out


def arrange(score: Score, model: ModelEntry, options: ArrangeOptions | None = None) -> Arrangement:
    """Every pitched note of ``score`` assigned to a part of the ensemble (the options', else the
    model's own)."""
    options = options or ArrangeOptions()
    notes = input_notes(score)
    ensemble = options.ensemble or model_ensemble(model)
    names, programs = ensemble.part_names, [p.program for p in ensemble.parts]
    if options.keep_extras:
        names, programs = names + [EXTRA_PART], programs + [EXTRA_PROGRAM]
    tracks = score.merged(include_drums=False)[1]  # in input_notes' order
    return Arrangement(notes, arrange_notes(notes, score.resolution, model, options, tracks=tracks), names,
                       programs, score, model.name, ensemble, options.keep_extras)


def find_arranger(registry: Registry, ensemble: Ensemble, mode: str) -> ModelEntry:
    """The first usable model trained for ``ensemble`` (by name) in ``mode``, else the first with
    as many parts: a model's parts, top voice first, serve the ensemble's parts in score order.
    ValueError says what cannot be served."""
    arrangers = [e for e in registry.usable("arrange") if e.metadata["mode"] == mode]
    for e in arrangers:
        if e.metadata["ensemble"] == ensemble.name and registry.use(e):
            return e
    for e in arrangers:
        if len(e.metadata["parts"]) == len(ensemble.parts) and registry.use(e):
            return e
    sizes = sorted({f"{e.metadata['ensemble']} ({len(e.metadata['parts'])} parts)" for e in arrangers})
    n = len(ensemble.parts)
    why = UNTRAINED_PARTS.get(n, {}).get(mode, "")
    if n > MAX_TRAINED_PARTS:
        why = (f"no model has more than {MAX_TRAINED_PARTS} parts because the training corpora rank at "
               f"most {MAX_TRAINED_PARTS} voices")
    raise ValueError(
        f"ensemble {ensemble.name!r} has {n} parts, and no installed {mode} arrange model has {n}"
        + (f" ({why})" if why else "")
        + f": a model serves only ensembles with as many parts as it was trained for (installed {mode} "
        f"models: {', '.join(sizes) or 'none'}); pick an ensemble with that many parts, or train a model "
        "for this one (models/arranger/train.py) and add it with --models DIR")


def ensemble_to_wire(ensemble: Ensemble) -> list[dict]:
    """An ensemble's parts as a request's ``ensemble_parts``: the tables of its file."""
    return [{"name": p.name, "program": p.program, "range": [p.low, p.high], "clef": p.clef,
             "transposition": p.transposition, "polyphony": p.polyphony} for p in ensemble.parts]


def request_ensemble(registry: Registry, fields: dict) -> Ensemble:
    """The ensemble a request names (shipped), or sends (``ensemble_parts``); JobError if neither."""
    try:
        if "ensemble_parts" in fields:
            return parse_ensemble({"name": fields["ensemble"], "parts": fields["ensemble_parts"]},
                                  f"arrange.ensemble_parts of {fields['ensemble']!r}")
        return get_ensemble(fields["ensemble"])
    except EnsembleError as exc:
        if "ensemble_parts" in fields:
            raise JobError(protocol.BAD_FIELD, str(exc)) from None
        have = sorted({e.metadata["ensemble"] for e in registry.usable("arrange")})
        raise JobError(protocol.NO_MODEL, f"{exc}, or send its parts in ensemble_parts; models available "
                                          f"for: {', '.join(have) or 'none'}") from None


def find_model(registry: Registry, name: str | None, ensemble: Ensemble | str, mode: str) -> ModelEntry:
    """The arrange model a request names, else the first for its ensemble (or a shipped one's
    name) and mode (JobError if none)."""
    if isinstance(ensemble, str):
        ensemble = request_ensemble(registry, {"ensemble": ensemble})
    if name is None:
        try:
            return find_arranger(registry, ensemble, mode)
        except ValueError as exc:
            raise JobError(protocol.NO_MODEL, str(exc)) from None
    for entry in registry.usable("arrange"):
        if entry.name == name:
            return entry
    raise JobError(protocol.NO_MODEL, f"no arrange model named {name!r}; installed: "
                   f"{', '.join(e.name for e in registry.usable('arrange')) or 'none'}")


def request_options(model: ModelEntry, ensemble: Ensemble, fields: dict) -> ArrangeOptions:
    if len(ensemble.parts) != len(model.metadata["parts"]):
        raise JobError(protocol.NO_MODEL, f"model {model.name} has {len(model.metadata['parts'])} parts; "
                       f"ensemble {ensemble.name!r} has {len(ensemble.parts)}")
    names = [p["name"] for p in model.metadata["parts"]]
    try:
        hints = Hints.from_wire(fields.get("hints", {}), ensemble.part_names, model.name)
    except ArrangeInputError as exc:
        raise job_error(exc) from None
    hints = hints.renamed(ensemble.part_names, names)
    return ArrangeOptions(fields.get("constrained", True), hints, ensemble, fields.get("keep_extras", False))


class ArrangeTask(Task):
    """A whole region: every note gets a part, sent back in chunks of labels in request order."""

    request = protocol.ARRANGE

    def warm_up(self) -> None:
        # The first call of a TorchScript model compiles it (~0.5 s); pay that before serving.
        tiny = make_notes([0, 0, 24, 48], [48, 60, 64, 67], 24, 80)
        for entry in self.ctx.registry.usable("arrange"):
            try:
                arrange_notes(tiny, DEFAULT_RESOLUTION, self.ctx.registry.on(entry, self.device))
            except Exception as exc:  # a model that fails here still gets its error per request
                log.warning("event=warm_up_failed model=%s error=%r", entry.name, exc)

    def prepare(self, identity: bytes, message: protocol.Message) -> Prepared:
        fields = message.fields
        ensemble = request_ensemble(self.ctx.registry, fields)
        model = find_model(self.ctx.registry, fields.get("model"), ensemble, fields["mode"])
        options = request_options(model, ensemble, fields)
        model = self.ctx.registry.on(model, self.device)
        notes = message.frame("notes")
        resolution = fields.get("resolution", DEFAULT_RESOLUTION)
        parts = ensemble.part_names + ([EXTRA_PART] if options.keep_extras else [])

        def run(job: Job) -> dict:  # on a worker thread
            if len(notes) == 0:
                raise JobError(protocol.BAD_INPUT, "the notes frame is empty; send at least one note to "
                                                   "arrange")
            try:
                labels = arrange_notes(notes, resolution, model, options, check=job.check).astype(np.uint8)
            except ArrangeInputError as exc:
                raise job_error(exc) from None
            for start in range(0, len(notes), CHUNK_NOTES):
                job.check()
                stop = start + CHUNK_NOTES
                job.send(protocol.NOTES, [notes[start:stop], labels[start:stop]], seq=job.next_seq(),
                         parts=parts)
            return {"notes": len(notes), "model": model.name}

        return Prepared(run)
