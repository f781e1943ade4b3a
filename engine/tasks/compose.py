"""The compose task: new music, bar by bar, streamed as each bar is written.

A request names the bars, meter, key, tempo, chords and instruments (or leaves them to the model),
the sampling controls, and optionally given notes with a part per note: a melody to accompany, the
opening bars to continue (``given_bars``), or a score whose chosen cells are written again
(``infill``: instrument -> [start, stop) bars). The engine answers each bar with one ``notes`` reply
(``seq`` = the bar's index): the notes the model wrote in it, at the request's resolution, with the
instrument of each in the parts frame. The client's own notes are not sent back. A ``progress``
reply follows each bar; the ``done`` stats name the model, the output's instruments and their
General MIDI programs. A cancel stops the job before the next bar.

The embedded CLI (engine/cli/composing.py) goes through the same ``build_request``, ``written`` and
``rescale``, so the same request and seed give the same notes in process and over the socket.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from bridge import protocol
from bridge.score import Score, Track
from engine.registry import ModelEntry, Registry
from engine.scheduler import Job, JobError
from engine.tasks import Prepared, Task, job_error
from models.composer.inference import Bar, Composer, ComposeRequest
from models.composer.tokens import GRID_TICKS, RESOLUTION

log = logging.getLogger("engine.tasks.compose")


@dataclass(frozen=True)
class Composition:
    """A checked request: the model's ``ComposeRequest`` (notes at its 24 ticks per quarter), the
    resolution the client speaks, and the (instrument, bar) cells whose notes are the client's own."""

    request: ComposeRequest
    resolution: int
    given_cells: frozenset[tuple[str, int]]

    def tracks(self, composer: Composer) -> list[tuple[str, int]]:
        """(instrument, General MIDI program) of every track the result has, in the model's order."""
        names = set(self.request.instruments or composer.instruments) | set(self.request.given)
        programs = composer.tok.cfg.programs
        return [(n, int(programs[i])) for i, n in enumerate(composer.instruments) if n in names]


def rescale(notes: np.ndarray, resolution: int, to_resolution: int) -> np.ndarray:
    """Notes at another tick resolution (onsets and ends rounded, as Score.with_resolution)."""
    if resolution == to_resolution or len(notes) == 0:
        return notes
    return Score(resolution, [Track(notes=notes)]).with_resolution(to_resolution).tracks[0].notes


def conditioning(notes: np.ndarray, monophonic: bool) -> np.ndarray:
    """The given notes (model ticks) as the decoder can be fed them: onsets on the model's grid, one
    note per pitch and onset, and for a monophonic instrument the top note of each onset. Only what
    conditions the model is changed: the client keeps its notes as they are."""
    if len(notes) == 0:
        return notes
    pos = notes["time"] // GRID_TICKS
    order = np.lexsort((-notes["duration"], -notes["pitch"].astype(np.int64), pos))
    notes, pos = notes[order].copy(), pos[order]
    notes["time"] = pos * GRID_TICKS  # two onsets inside one grid step are one onset, pitches rising
    pitch = notes["pitch"].astype(np.int64)
    keep = np.ones(len(notes), bool)
    keep[1:] = (pos[1:] != pos[:-1]) | ((not monophonic) & (pitch[1:] != pitch[:-1]))
    return notes[keep]


def _span(value, what: str) -> tuple[int, int]:
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)):
        raise ValueError(f"{what} must be two whole numbers, got {value!r}")
    return int(value[0]), int(value[1])


def build_request(composer: Composer, *, bars: int, meter=(4, 4), key: str | None = None,
                  qpm: float = 100.0, chords: str | None = None, instruments=None,
                  temperature: float = 1.0, top_p: float = 0.95, seed: int = 0,
                  given: Mapping[str, np.ndarray] | None = None, resolution: int = RESOLUTION,
                  given_bars=None, infill: Mapping[str, object] | None = None,
                  ranges: Mapping[str, object] | None = None, density: Mapping[str, int] | None = None,
                  polyphony: Mapping[str, int] | None = None, rhythm: Mapping[str, str] | None = None,
                  arrangement: Mapping[str, object] | None = None, arranger=None,
                  harmony: float | None = None, register: Mapping[str, object] | None = None) -> Composition:
    """The request as ``Composer.compose`` takes it, every check made: a ValueError names the field,
    the value and what is allowed. ``given`` notes are at ``resolution`` ticks per quarter.
    ``arrangement`` ({"seed", "directions"}) has ``arranger`` (models.composer.arrangement_plan)
    plan the instruments and the per-track controls; what the request sets itself wins."""
    if not isinstance(meter, (list, tuple)) or len(meter) != 2 or min(meter) <= 0:
        raise ValueError(f"meter must be [numerator, denominator], such as [3, 4], got {meter!r}")
    names = composer.instruments
    spans = {}
    for name, span in (infill or {}).items():
        if name not in names:
            raise ValueError(f"infill names {name!r}, not an instrument this model writes; choose from "
                             f"{', '.join(names)}")
        spans[name] = _span(span, f"infill of {name}")
    windows = {}
    for name, window in (ranges or {}).items():
        low, high = _span(window, f"the range of {name}")
        if not 0 <= low <= high <= 127:
            raise ValueError(f"the range of {name} must be two MIDI pitches [low, high], 0..127 and "
                             f"low <= high, got [{low}, {high}]")
        windows[name] = (low, high)
    given_bars = _span(given_bars, "given_bars") if given_bars is not None else None
    given = dict(given or {})
    if given and not spans and not any(len(n) for n in given.values()):
        raise ValueError("the given notes are empty; send the melody or the bars to accompany or continue")
    if instruments is not None:
        instruments = tuple(instruments)
    controls = {"density": dict(density or {}), "polyphony": dict(polyphony or {}),
                "rhythm": dict(rhythm or {})}
    for control, kind in (("density", int), ("polyphony", int), ("rhythm", str)):
        for name, value in controls[control].items():
            if isinstance(value, bool) or not isinstance(value, kind):
                what = "a whole number" if kind is int else "a word"
                raise ValueError(f"{control} of {name} must be {what}, got {value!r}")
    register = dict(register or {})
    for name, target in register.items():
        per_bar = target if isinstance(target, list) else [target]
        whole = all(isinstance(t, (int, np.integer)) and not isinstance(t, bool) for t in per_bar)
        if not per_bar or not whole:
            raise ValueError(f"register of {name} must be a MIDI pitch such as 60, or a list of one per bar, "
                             f"got {target!r}")
        register[name] = [int(t) for t in target] if isinstance(target, list) else int(target)
        if name in names:  # a target the instrument cannot reach would only pin it to an edge of its range
            low, high = composer.tok.cfg.ranges[names.index(name)]
            outside = [t for t in per_bar if t and not low <= int(t) <= high]
            if outside:
                raise ValueError(f"register of {name} is {outside[0]}, outside its playable range "
                                 f"{low}..{high}; choose a pitch inside it")
    if harmony is not None and (isinstance(harmony, bool) or not isinstance(harmony, (int, float))):
        raise ValueError(f"harmony must be a number of nats, 0..10, got {harmony!r}")
    if arrangement is not None:
        planned = plan_arrangement(arranger, composer, int(bars), meter, instruments, arrangement)
        instruments = instruments or tuple(dict.fromkeys((*planned["instruments"], *given)))
        for control in controls:
            controls[control] = {**planned[control], **controls[control]}
        # a range the user set wins over the planned window, and drops the planned register target
        register = {**{k: v for k, v in planned["register"].items() if k not in given and k not in windows},
                    **register}
        windows = {**{k: v for k, v in planned["ranges"].items() if k not in given}, **windows}
    monophonic = set(composer.metadata.get("monophonic", ()))
    model_given = {name: conditioning(rescale(notes, resolution, RESOLUTION), name in monophonic)
                   for name, notes in given.items()}
    request = ComposeRequest(bars=int(bars), meter=(int(meter[0]), int(meter[1])), key=key, qpm=float(qpm),
                             chords=chords, instruments=instruments, temperature=float(temperature),
                             top_p=float(top_p), seed=int(seed), given=model_given, given_bars=given_bars,
                             infill=spans, ranges=windows, **controls, register=register,
                             harmony=None if harmony is None else float(harmony))
    composer.plan(request)  # every check of the model's own: meter, key, chords, ranges, bars
    bar_ticks = request.meter[0] * 4 * RESOLUTION // request.meter[1]
    kept = range(*(given_bars or (0, request.bars)))
    for name, notes in model_given.items():
        if len(notes) and int(notes["time"].max()) // bar_ticks >= kept.stop:
            last = int(notes["time"].max()) // bar_ticks + 1
            raise ValueError(f"the given {name} notes run to bar {last}, past the {kept.stop} bars "
                             f"{'given_bars keeps' if given_bars else 'requested'}; ask for more bars")
    cells = frozenset((name, b) for name in given for b in kept if b not in range(*spans.get(name, (0, 0))))
    return Composition(request, int(resolution), cells)


def written(bar: Bar, composition: Composition) -> tuple[np.ndarray, np.ndarray]:
    """The bar's notes the model wrote (not the client's own), at the client's resolution, and the
    instrument index of each (into ``bar.instruments``)."""
    mine = np.array([(bar.instruments[t], bar.index) not in composition.given_cells for t in bar.track], bool)
    notes, track = bar.notes[mine], bar.track[mine]
    return rescale(notes, RESOLUTION, composition.resolution), track


def plan_arrangement(arranger, composer: Composer, bars: int, meter, instruments,
                     arrangement: Mapping[str, object]) -> dict:
    """The arrangement model's plan for a request, as ComposeRequest fields (instruments, density,
    polyphony, rhythm, ranges): a seed draws the latent, named directions move it."""
    if arranger is None:
        raise ValueError("arrangement asks for the arrangement model, which is not installed; add "
                         "composer-arrangement.pt to the models folder or leave arrangement out")
    if not isinstance(arrangement, Mapping) or set(arrangement) - {"seed", "directions"}:
        raise ValueError(f"arrangement must be a map with seed (a whole number) and directions (name -> "
                         f"amount), got {arrangement!r}")
    seed, moves = arrangement.get("seed", 0), arrangement.get("directions", {}) or {}
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"arrangement seed must be a whole number 0 or more, got {seed!r}")
    if not isinstance(moves, Mapping) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                 for v in moves.values()):
        raise ValueError(f"arrangement directions must map names to amounts such as {{\"density\": 2}}, "
                         f"got {moves!r}")
    z = arranger.sample_z(seed)
    for name, amount in moves.items():
        if abs(float(amount)) > 6:
            raise ValueError(f"the {name} direction's amount {amount} is out of -6..6 (prior standard "
                             "deviations; -3..3 is the useful span)")
        z = z + float(amount) * arranger.direction(str(name))
    meter = (int(meter[0]), int(meter[1]))
    plan = arranger.plan(bars, meter, instruments=list(instruments) if instruments else None, seed=seed,
                         z=z, allowed=None if instruments else list(composer.instruments))
    return plan.request_controls()


def find_composer(registry: Registry, name: str | None) -> ModelEntry:
    """The compose model a request names, else the first one found (JobError no_model if none)."""
    found = registry.usable("compose")
    for entry in found:
        if name is None or entry.name == name:
            if registry.use(entry):
                return entry
    listing = ", ".join(e.name for e in found) or "none"
    raise JobError(protocol.NO_MODEL, f"no compose model named {name!r}; installed: {listing}" if name
                   else "this engine has no compose model installed; add one with serve --models DIR")


def given_notes(message: protocol.Message) -> dict[str, np.ndarray]:
    """The request's notes frame split by part: name -> notes (ValueError for a bad part index)."""
    notes, parts = message.frame("notes"), message.frame("parts")
    names = message.fields.get("parts", [])
    if notes is None:
        if names:
            raise ValueError("parts names the given instruments but there is no notes frame; send the notes")
        return {}
    if not names:
        raise ValueError("the notes frame needs parts: the instrument of the given notes (one name, or one "
                         "per index of the parts frame)")
    index = np.zeros(len(notes), np.int64) if parts is None else parts.astype(np.int64)
    if len(index) and index.max() >= len(names):
        raise ValueError(f"the parts frame uses index {int(index.max())}, but parts lists only "
                         f"{len(names)} names")
    return {name: notes[index == i].copy() for i, name in enumerate(names)}


WIRE_FIELDS = ("bars", "meter", "key", "qpm", "chords", "instruments", "temperature", "top_p", "seed",
               "resolution", "given_bars", "infill", "ranges", "density", "polyphony", "rhythm",
               "arrangement", "harmony", "register")


class ComposeTask(Task):
    """New music bar by bar, each bar streamed as soon as it is written."""

    request = protocol.COMPOSE

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self._composers: dict[str, Composer] = {}
        self._arranger = None
        self._lock = threading.Lock()

    @property
    def device(self) -> str:
        # The composer decodes one token at a time at batch 1 (models/composer/inference.py feeds it
        # CPU tensors): launch-bound steps, which run on the CPU as the live tasks' do.
        return "cpu"

    def unavailable(self) -> str:
        if self.ctx.registry.usable("compose"):
            return ""
        return "this engine has no compose model installed; add one with serve --models DIR"

    def arranger(self):
        """The first arrangement model installed (models.composer.arrangement_plan), or None."""
        from models.composer.arrangement_plan import Arranger

        with self._lock:
            if self._arranger is None:
                for entry in self.ctx.registry.usable("compose_arrange"):
                    if self.ctx.registry.use(entry):
                        self._arranger = Arranger(entry.module, entry.metadata)
                        break
            return self._arranger

    def composer(self, entry: ModelEntry) -> Composer:
        with self._lock:  # workers and the poll thread share one Composer (and tokenizer) per model
            if entry.name not in self._composers:
                self._composers[entry.name] = Composer(self.ctx.registry.on(entry, self.device).module,
                                                       entry.metadata)
            return self._composers[entry.name]

    def warm_up(self) -> None:
        # A TorchScript model's first calls compile it: pay that before serving.
        for entry in self.ctx.registry.usable("compose"):
            try:
                composer = self.composer(entry)
                list(composer.compose(ComposeRequest(bars=1)))
            except Exception as exc:  # a model that fails here still gets its error per request
                log.warning("event=warm_up_failed model=%s error=%r", entry.name, exc)

    def prepare(self, identity: bytes, message: protocol.Message) -> Prepared:
        fields = message.fields
        entry = find_composer(self.ctx.registry, fields.get("model"))
        composer = self.composer(entry)
        try:
            arranger = self.arranger() if "arrangement" in fields else None
            composition = build_request(composer, given=given_notes(message), arranger=arranger,
                                        **{k: fields[k] for k in WIRE_FIELDS if k in fields})
        except ValueError as exc:
            raise job_error(exc) from None
        request, names = composition.request, composer.instruments
        tracks = composition.tracks(composer)

        def run(job: Job) -> dict:  # on a worker thread
            count = 0
            bars = composer.compose(request)
            try:
                job.check()
                for bar in bars:
                    notes, track = written(bar, composition)
                    job.send(protocol.NOTES, [notes, track.astype(np.uint8)], seq=job.next_seq(), parts=names)
                    job.send(protocol.PROGRESS, fraction=(bar.index + 1) / request.bars,
                             message=f"bar {bar.index + 1} of {request.bars} written")
                    count += len(notes)
                    job.check()  # before the next bar is decoded
            except ValueError as exc:
                raise job_error(exc) from None
            finally:
                bars.close()
            return {"bars": request.bars, "notes": count, "model": entry.name,
                    "instruments": [n for n, _ in tracks], "programs": [p for _, p in tracks]}

        return Prepared(run)

