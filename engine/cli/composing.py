"""What the composing verbs share (compose, accompany, continue, infill): their sampling and engine
options, running a request in process or on an engine (``--engine``) through the same request
builder, reading the given score and matching its tracks to the model's instruments, and putting
the result together: the input's tracks exactly as they were, the written notes added.
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from engine.cli.common import CliError, check_outputs, engine_options, engine_session, write_all

SCORE_SUFFIXES = (".mid", ".midi", ".xml", ".musicxml")


@dataclass
class Composed:
    """What a request wrote: each bar's new notes and their instrument (an index into
    ``instruments``), and the result's tracks as (instrument, General MIDI program)."""

    bars: list  # of objects with .notes and .track: models.composer Bar, bridge.client.ComposedBar
    instruments: list[str]
    tracks: list[tuple[str, int]]
    model: str

    def notes_of(self, name: str):
        """Every note written for ``name``, in (onset, pitch, duration) order."""
        import numpy as np

        from bridge.score import empty_notes, sort_order

        if name not in self.instruments:
            return empty_notes()
        i = self.instruments.index(name)
        notes = np.concatenate([empty_notes()] + [b.notes[b.track == i] for b in self.bars])
        return notes[sort_order(notes)]


def as_flags(message: str) -> str:
    """The request's field names as the flags that set them."""
    for field, flag in (("bars", "--bars"), ("top_p", "--top-p"), ("temperature", "--temperature"),
                        ("qpm", "--tempo"), ("harmony", "--harmony")):
        message = re.sub(rf"^{field} ", f"{flag} ", message)
    return message.replace("pass key='C' (or 'a' for A minor)", "pass --key C (or --key Am)")


def output_paths(args: argparse.Namespace, src: Path | None = None) -> tuple[Path, Path | None]:
    out = Path(args.output)
    plot = Path(args.plot) if args.plot else None
    if out.suffix.lower() not in SCORE_SUFFIXES:
        raise CliError(f"output {out} must end in .mid, .midi, .xml or .musicxml")
    if src is not None and out.resolve() == src.resolve():
        raise CliError("the output path is the input file; choose another output path")
    check_outputs([out, plot], args.force)
    return out, plot


def load_composer(args: argparse.Namespace):
    """The embedded composer: --model FILE, else the first compose model found."""
    from models.composer.inference import Composer

    if args.model:
        path = Path(args.model)
        if not path.is_file():
            raise CliError(f"no model file at {path}; give a .pt or .pt2 file written by "
                           "models.composer.export")
        try:
            return Composer.load(path)
        except (ValueError, RuntimeError) as exc:
            raise CliError(f"{path} cannot be used: {exc}") from None
    from engine.registry import Registry

    found = Registry(args.models).usable("compose")
    if not found:
        raise CliError("no compose model found; pass --model FILE or add a model folder with --models DIR")
    return Composer(found[0].module, found[0].metadata)


def instruments_arg(values: list[str] | None) -> tuple[str, ...] | None:
    if not values:
        return None
    names = [n.strip().lower() for part in values for n in part.split(",")]
    return tuple(n for n in names if n) or None


def run_request(args: argparse.Namespace, composer, **request) -> Composed:
    """Compose in process (``composer``) or on ``--engine`` (``composer`` is None); ``request`` holds
    engine.tasks.compose.build_request's keywords, which are compose's wire fields."""
    from tqdm import tqdm

    sampling = {"temperature": args.temperature, "top_p": args.top_p, "seed": args.seed,
                "ranges": dict(args.range) if args.range else None, "harmony": args.harmony}
    request = {**sampling, **{k: v for k, v in request.items() if v is not None}}
    bars_total = request["bars"]
    bar_progress = dict(total=bars_total, desc="compose", unit="bar", disable=not args.progress)
    if composer is None:
        name = args.model if args.model else None
        with engine_session(args) as client:
            stream = client.compose(model=name, **request)
            bars = list(tqdm(stream, **bar_progress))
        stats = stream.stats
        tracks = list(zip(stats.get("instruments", []), stats.get("programs", [])))
        return Composed(bars, bars[0].instruments if bars else [], tracks, stats.get("model", args.engine))
    import torch

    from engine.tasks.compose import build_request, written

    torch.set_num_threads(max(1, args.threads))
    try:  # every check before any work: nothing is written on bad input
        if "arrangement" in request:
            request["arranger"] = load_arranger(args)
        composition = build_request(composer, **request)
    except ValueError as exc:
        raise CliError(as_flags(str(exc))) from None
    bars = []
    for bar in tqdm(composer.compose(composition.request), **bar_progress):
        notes, track = written(bar, composition)
        bars.append(replace(bar, notes=notes, track=track))
    return Composed(bars, composer.instruments, composition.tracks(composer), composer.metadata["name"])


def load_arranger(args: argparse.Namespace):
    """The arrangement model (models.composer.arrangement_plan) found with the composers, or None."""
    from engine.registry import Registry
    from models.composer.arrangement_plan import Arranger

    registry = Registry(args.models)
    for entry in registry.usable("compose_arrange"):
        if registry.use(entry):
            return Arranger(entry.module, entry.metadata)
    return None


def engine_or_composer(args: argparse.Namespace):
    """None with --engine (the engine composes), else the embedded composer (loaded before any work)."""
    return None if args.engine else load_composer(args)


def model_instruments(args: argparse.Namespace, composer) -> tuple[list[str], list[tuple[int, int]]]:
    """The instruments the model writes and their playable ranges; over --engine from its welcome."""
    if composer is not None:
        return composer.instruments, [tuple(r) for r in composer.tok.cfg.ranges]
    with engine_session(args) as client:
        models = [m for m in client.hello()["models"] if m.get("task") == "compose"
                  and (not args.model or m.get("name") == args.model)]
    if not models or "instruments" not in models[0]:
        raise CliError(f"the engine at {args.engine} serves no compose model"
                       + (f" named {args.model}" if args.model else ""))
    insts = models[0]["instruments"]
    return [i["name"] for i in insts], [(int(i["low"]), int(i["high"])) for i in insts]


# --- the given score --------------------------------------------------------------------------------

def read_given(src: Path, picks: list[str] | None):
    """The input score (only the --track picks, drums passing through) and its pitched tracks with
    notes; no such track is a CliError."""
    from engine.cli.common import read_input
    from engine.tasks.arrange import ArrangeInputError, pick_tracks

    score = read_input(src)
    if picks:
        try:
            score = pick_tracks(score, picks)
        except ArrangeInputError as exc:
            raise CliError(str(exc)) from None
    pitched = [t for t in score.pitched_tracks() if len(t.notes)]
    if not pitched:
        what = "only drums" if any(len(t.notes) for t in score.tracks) else "no notes"
        raise CliError(f"{src.name} has {what}; give a file with a pitched melody or part")
    return score, pitched


def match_tracks(src: Path, pitched: list, names: list[str], ranges: list[tuple[int, int]],
                 as_: str | None) -> dict[str, object]:
    """Instrument -> input track: ``as_`` takes the one track; several tracks go by name, each named
    after an instrument of the model; a single track not so named goes to the first instrument
    whose range holds it."""
    if as_ is not None:
        if as_ not in names:
            raise CliError(f"--as {as_} is not an instrument of the model; choose from {', '.join(names)}")
        if len(pitched) > 1:
            raise CliError(f"{src.name} has {len(pitched)} pitched tracks; pick the one for --as {as_} "
                           "with --track N|NAME")
        return {as_: pitched[0]}
    keyed = {t.name.strip().lower(): t for t in pitched}
    if len(pitched) > 1 or set(keyed) <= set(names):
        unknown = [t.name or "(unnamed)" for t in pitched if t.name.strip().lower() not in names]
        if unknown or len(keyed) < len(pitched):
            what = f"the track names {', '.join(unknown)} are not" if unknown else "two share a name, not"
            raise CliError(f"{src.name} has {len(pitched)} pitched tracks and {what} one each of the model's "
                           f"instruments ({', '.join(names)}); rename them, or pick one track with "
                           "--track N|NAME")
        return {n: keyed[n] for n in names if n in keyed}
    track = pitched[0]
    low, high = int(track.notes["pitch"].min()), int(track.notes["pitch"].max())
    for name, (rlow, rhigh) in zip(names, ranges):
        if rlow <= low and high <= rhigh:
            return {name: track}
    spans = ", ".join(f"{n} {a}..{b}" for n, (a, b) in zip(names, ranges))
    raise CliError(f"{src.name}'s notes span MIDI {low}..{high}, which no instrument of the model holds "
                   f"({spans}); transpose it or choose one with --as")


def given_meter(score, args: argparse.Namespace) -> tuple[int, int]:
    """--meter, else the given score's first meter, else 4/4."""
    return args.meter or ((int(score.meters["numerator"][0]), int(score.meters["denominator"][0]))
                          if len(score.meters) else (4, 4))


def setting(score, args: argparse.Namespace, shift: int = 0) -> dict:
    """Meter, key and tempo of the given score (flags win), and how many bars it fills once moved
    ``shift`` ticks later (a pickup)."""
    from bridge.score import DEFAULT_QPM

    meter = given_meter(score, args)
    if len(score.meters) > 1 and not args.meter:
        print(f"note: the input changes meter; bars are counted in its first meter, {meter[0]}/{meter[1]}",
              file=sys.stderr)
    key = args.key or (key_name(int(score.keys["fifths"][0]), bool(score.keys["minor"][0]))
                       if len(score.keys) else None)
    qpm = args.tempo or min(max(score.qpm_at(0) if len(score.tempos) else DEFAULT_QPM, 10.0), 400.0)
    bar_ticks = meter[0] * 4 * score.resolution // meter[1]
    last_onset = shift + max((int(t.notes["time"].max()) for t in score.tracks if len(t.notes)), default=0)
    bars = last_onset // bar_ticks + 1  # a last note may sound on past its bar's end
    return {"meter": meter, "key": key, "qpm": qpm, "bars": bars}


_MAJOR = ["Cb", "Gb", "Db", "Ab", "Eb", "Bb", "F", "C", "G", "D", "A", "E", "B", "F#", "C#"]
_MINOR = ["Ab", "Eb", "Bb", "F", "C", "G", "D", "A", "E", "B", "F#", "C#", "G#", "D#", "A#"]


def key_name(fifths: int, minor: bool) -> str:
    return (_MINOR if minor else _MAJOR)[max(-7, min(7, fifths)) + 7] + ("m" if minor else "")


@dataclass
class Given:
    """A verb's given score, read and checked: where it goes, the composer (None with --engine), the
    model's instruments, the score, its tracks by instrument, and its meter, key, tempo and bars."""

    src: Path
    out: Path
    plot: Path | None
    composer: object
    names: list[str]
    score: object
    tracks: dict[str, object]
    setting: dict
    # ticks the score moves later so that its bars start where the request's do: a pickup bar's
    # notes sit at the end of the request's first bar (0 without a pickup)
    shift: int = 0

    @property
    def first_bar(self) -> int:
        """The printed number of the request's first bar: 0 for a pickup, else 1."""
        return 0 if self.shift else 1

    def notes(self) -> dict:
        return {n: shifted(t.notes, self.shift) for n, t in self.tracks.items()}

    def finish(self, composed: Composed, title: str, verb: str, what: str,
               rewritten: dict[str, tuple[int, int]] | None = None) -> None:
        """Write the score with ``composed`` added; ``rewritten`` spans are in the request's ticks."""
        back = {n: (start - self.shift, stop - self.shift) for n, (start, stop) in (rewritten or {}).items()}
        write_result(result_score(self.score, self.tracks, composed, back, self.shift), self.out, self.plot,
                     f"{self.src.name}{title}")
        report(verb, composed, self.out, self.plot, what)


def pickup_shift(score, meter: tuple[int, int]) -> int:
    """Ticks that move ``score``'s first full bar onto a bar line of ``meter`` counted from 0: the
    missing part of a pickup bar that a notation file gives (MIDI files give no bars: 0)."""
    bar_ticks = meter[0] * 4 * score.resolution // meter[1]
    bars = score.bars
    if len(bars) < 2 or int(bars["time"][0]) != 0 or not 0 < int(bars["duration"][0]) < bar_ticks:
        return 0
    return bar_ticks - int(bars["duration"][0])


def shifted(notes, ticks: int):
    """``notes`` moved ``ticks`` later (earlier for negative ticks); those that would start before 0
    are dropped."""
    if not ticks:
        return notes
    out = notes[notes["time"] + ticks >= 0].copy()
    out["time"] += ticks
    return out


def read_given_job(args: argparse.Namespace) -> Given:
    """Everything accompany, continue and infill check before composing: the outputs, the model, the
    input file and how its tracks meet the model's instruments."""
    src = Path(args.input)
    out, plot = output_paths(args, src)
    composer = engine_or_composer(args)
    names, ranges = model_instruments(args, composer)
    score, pitched = read_given(src, args.track)
    tracks = match_tracks(src, pitched, names, ranges, args.as_)
    shift = pickup_shift(score, given_meter(score, args))
    return Given(src, out, plot, composer, names, score, tracks, setting(score, args, shift), shift)


def result_score(score, given: dict[str, object], composed: Composed,
                 rewritten: dict[str, tuple[int, int]] | None = None, shift: int = 0):
    """The input with the written notes added: each given track keeps its own notes exactly, but
    those starting in its ``rewritten`` span ([start, stop) ticks: the bars infilling wrote again),
    which the written ones replace; new instruments come after the input's tracks. The written notes
    are in the request's ticks, ``shift`` later than the score's (a pickup: see ``pickup_shift``)."""
    import numpy as np

    from bridge.score import Track, sort_order

    track_of = {id(t): name for name, t in given.items()}
    tracks = []
    for t in score.tracks:
        name = track_of.get(id(t))
        if name is None:
            tracks.append(t)
            continue
        start, stop = (rewritten or {}).get(name, (0, 0))
        kept = t.notes[(t.notes["time"] < start) | (t.notes["time"] >= stop)]
        notes = np.concatenate([kept, shifted(composed.notes_of(name), -shift)])
        tracks.append(replace(t, notes=notes[sort_order(notes)], divisi=None))
    tracks += [Track(name, program, notes=shifted(composed.notes_of(name), -shift), role=name)
               for name, program in composed.tracks if name not in given]
    return replace(score, tracks=tracks, remarks=[])


def write_result(score, out: Path, plot: Path | None, title: str) -> None:
    writes = [(out, score_writer(score, out))]
    if plot:
        from bridge.plot import plot_piano_roll

        writes.append((plot, lambda p: plot_piano_roll(score, p, title=title)))
    write_all(writes)


def score_writer(score, out: Path):
    if out.suffix.lower() in (".mid", ".midi"):
        from bridge.midi import write_midi

        return lambda p: write_midi(score, p)
    from bridge.notation import write_musicxml

    return lambda p: write_musicxml(score, p)


def report(verb: str, composed: Composed, out: Path, plot: Path | None, extra: str = "") -> None:
    counts = ", ".join(f"{name} {len(composed.notes_of(name))}" for name, _ in composed.tracks)
    print(f"{verb} {extra}with {composed.model} -> {out}: new notes {counts}")
    if plot:
        print(f"piano roll -> {plot}")


# --- options ---------------------------------------------------------------------------------------

def meter_arg(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"meter {text!r} is not NUMERATOR/DENOMINATOR, such as 4/4 or 6/8")
    if int(m.group(1)) < 1 or int(m.group(2)) not in (1, 2, 4, 8, 16, 32, 64):
        raise argparse.ArgumentTypeError(f"meter {text!r} needs at least one beat and a note value of "
                                         "1, 2, 4, 8, 16, 32 or 64 below, such as 4/4 or 6/8")
    return int(m.group(1)), int(m.group(2))


def range_arg(text: str) -> tuple[str, tuple[int, int]]:
    m = re.fullmatch(r"\s*([A-Za-z][\w ]*?)\s*:\s*(\d+)\s*-\s*(\d+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"range {text!r} is not INSTRUMENT:LOW-HIGH in MIDI pitches, "
                                         "such as soprano:60-76")
    return m.group(1).lower(), (int(m.group(2)), int(m.group(3)))


def setting_options(a: argparse.ArgumentParser, from_input: bool) -> None:
    """--chords, --key, --meter, --tempo: for a given score they default to its own."""
    own = " (default: the input's)" if from_input else ""
    a.add_argument("--chords", help='chord symbols, one bar each, repeated to fill the bars: "C G Am F"; '
                   '"|" separates bars holding several: "C G | Am F"; roman numerals with --key: "I V vi IV"')
    a.add_argument("--key", help=f"key condition, such as C, Am or F#m{own}")
    a.add_argument("--meter", type=meter_arg, default=None if from_input else (4, 4),
                   help=f"time signature, such as 3/4{own}")
    a.add_argument("--tempo", type=float, default=None if from_input else 100.0,
                   help=f"quarter notes per minute{own}")


def given_options(a: argparse.ArgumentParser) -> None:
    """The input file and how its tracks meet the model's instruments (accompany, continue, infill)."""
    a.add_argument("input", help="MIDI (.mid) or MusicXML (.xml, .mxl) file")
    a.add_argument("--track", action="append", metavar="N|NAME",
                   help="use only this track of the input (number from 1, or name); repeat for more")
    a.add_argument("--as", dest="as_", metavar="INSTRUMENT",
                   help="the instrument the one input track is (default: tracks named after instruments go "
                        "to them; a single other track to the first instrument whose range holds it)")


def pair_arg(kind, example: str):
    """NAME=VALUE (the value of ``kind``) as a (name, value) pair for argparse; ``example`` is what
    the error shows, such as soprano=72."""
    def parse(text: str) -> tuple[str, object]:
        name, sep, value = text.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            return name.strip().lower(), kind(value.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE, such as {example}") from None
    return parse


TRACK_CONTROLS = ("density", "polyphony", "rhythm", "register")


def track_control_options(a: argparse.ArgumentParser) -> None:
    """The per-instrument controls every composing verb has (they steer the parts it writes)."""
    a.add_argument("--density", type=pair_arg(int, "soprano=4"), action="append", metavar="INSTRUMENT=N",
                   help="notes per bar an instrument aims at, e.g. soprano=4; repeat for more")
    a.add_argument("--polyphony", type=pair_arg(int, "bass=1"), action="append", metavar="INSTRUMENT=N",
                   help="most notes an instrument starts at once")
    a.add_argument("--rhythm", type=pair_arg(str, "bass=plain"), action="append", metavar="INSTRUMENT=LEVEL",
                   help="plain (onsets on the beat), moderate (half beats) or busy (anywhere)")
    a.add_argument("--register", type=pair_arg(int, "soprano=72"), action="append",
                   metavar="INSTRUMENT=PITCH",
                   help="the MIDI pitch an instrument's notes gather around, e.g. soprano=72 (a soft pull "
                        "inside its playable range; --range sets hard limits)")


def track_controls(args: argparse.Namespace, written=None) -> dict:
    """The per-instrument controls given on the command line, as build_request's keywords (None where
    none was given). With ``written`` (the instruments this verb writes), a control naming another
    instrument is refused: it would steer nothing."""
    controls = {}
    for control in TRACK_CONTROLS:
        pairs = getattr(args, control, None)
        for name, _ in pairs or ():
            if written is not None and name not in written:
                raise CliError(f"--{control} {name}=...: {name} is not written here (it writes "
                               f"{', '.join(written) or 'nothing'}); name one of those")
        controls[control] = dict(pairs) if pairs else None
    return controls


def sampling_options(a: argparse.ArgumentParser) -> None:
    """The options every composing verb has: sampling, model, output, engine."""
    a.add_argument("-o", "--output", required=True, help="output .mid or .musicxml")
    a.add_argument("--seed", type=int, default=0, help="the same seed and options give the same notes")
    a.add_argument("--temperature", type=float, default=1.0, help="above 1: bolder; below 1: safer")
    a.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling mass (0, 1]")
    a.add_argument("--harmony", type=float, default=None, metavar="NATS",
                   help="pull toward the chord tones where bars carry chords, 0..10 (0: the model alone; "
                        "default: the model's calibrated pull)")
    a.add_argument("--range", type=range_arg, action="append", metavar="INSTRUMENT:LOW-HIGH",
                   help="keep a written instrument inside these MIDI pitches (within its playable range), "
                        "e.g. soprano:60-76; repeat for more")
    a.add_argument("--plot", metavar="PNG", help="also draw the piano roll coloured by instrument")
    a.add_argument("--model", metavar="FILE", help="a compose model file (default: the first one found); "
                   "with --engine, the name of one of the engine's models")
    a.add_argument("--models", action="append", metavar="DIR", help="extra model folder")
    a.add_argument("--threads", type=int, default=1, help="CPU threads (one is fastest for small models)")
    a.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="show a progress bar over the bars")
    a.add_argument("--force", action="store_true", help="overwrite existing output files")
    engine_options(a, default_endpoint=False)
