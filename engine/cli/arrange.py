"""``deep-musician arrange``: orchestrate a solo part for an ensemble (embedded or via ``--engine``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.cli.common import (
    CliError,
    add_verb,
    check_outputs,
    engine_options,
    engine_session,
    write_all,
)

DEFAULT_ENSEMBLE = "satb"
DEFAULT_MODE = "offline"
OUTPUT_SUFFIXES = (".mid", ".midi", ".musicxml", ".xml", ".mxl")


def cmd_arrange(args: argparse.Namespace) -> int:
    """Orchestrate a piano (or any solo) part for an ensemble; every note is kept, only assigned."""
    src, out = Path(args.input), Path(args.output)
    plot = Path(args.plot) if args.plot else None
    render = Path(args.render) if args.render else None
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise CliError(f"output {out} must end in {', '.join(OUTPUT_SUFFIXES)}")
    if out.resolve() == src.resolve():
        raise CliError("the output path is the input file; choose another output path")
    check_outputs([out, plot, render], args.force)
    ensemble = _ensemble(args.ensemble)
    if render and not args.engine:  # before any work: no FluidSynth or no SoundFont, nothing written
        from bridge.synth import available

        missing = available()
        if missing:
            raise CliError(f"--render cannot work here: {missing}")
    score = _read(src, args.tune)
    for remark in score.remarks:
        print(f"note: {remark}", file=sys.stderr)
    if args.track:
        from engine.tasks.arrange import ArrangeInputError, pick_tracks

        try:
            score = pick_tracks(score, args.track)
        except ArrangeInputError as exc:
            raise CliError(str(exc)) from None
    if args.engine:
        arrangement = _arrange_via_engine(args, score, ensemble)
    else:  # torch comes in here only: a client of an engine (--engine) does without it
        from engine.registry import Registry
        from engine.tasks.arrange import ArrangeOptions, Hints, arrange, find_arranger

        registry = Registry(args.models)
        try:
            model = find_arranger(registry, ensemble, args.mode)
        except ValueError as exc:
            raise CliError(str(exc)) from None
        hints = Hints.parse(args.hints or [], ensemble.part_names)
        if hints.ignored_by(model.metadata):
            print(f"note: model {model.name} was trained without these hints and ignores them",
                  file=sys.stderr)
        hints = hints.renamed(ensemble.part_names, [p["name"] for p in model.metadata["parts"]])
        arrangement = arrange(score, model, ArrangeOptions(not args.unconstrained, hints, ensemble,
                                                           args.keep_extras))
    result, model_name = arrangement.to_score(), arrangement.model
    writes = [(out, _score_writer(result, out))]
    if plot:
        from bridge.plot import plot_piano_roll

        writes.append((plot, lambda p: plot_piano_roll(result, p, title=f"{src.name} → {args.ensemble}")))
    if render:
        from engine.cli.perform import DEFAULT_SAMPLE_RATE_HZ, perform_score

        # rendered into memory before anything is written: no FluidSynth, no files
        performance = perform_score(result, args, DEFAULT_SAMPLE_RATE_HZ)
        writes.append((render, performance.write_wav))
    write_all(writes)
    counts = ", ".join(f"{t.name} {len(t.notes)}" for t in result.tracks)
    print(f"arranged {len(arrangement.notes)} notes for {ensemble.name} with {model_name} ({args.mode}) "
          f"-> {out}: {counts}")
    unplayable = arrangement.summary()
    if unplayable:
        print(f"kept as they are, where no part could play them as written: {unplayable}")
    lengthless = int((arrangement.notes["duration"] == 0).sum())
    if lengthless:
        written = ("a zero-length MIDI note (note_on and note_off at one tick; MIDI has no grace notes)"
                   if out.suffix.lower() in (".mid", ".midi") else "a grace note")
        print(f"{lengthless} notes of no length (grace notes, zero-length MIDI notes) kept, each as "
              f"{written} in the part of the note it leads to")
    if plot:
        print(f"piano roll -> {plot}")
    if render:
        print(f"audio -> {render}")
    return 0


def _read(src: Path, tune: str | None):
    from bridge.scorefile import MIDI_SUFFIXES, ScoreReadError, read_score

    if tune is not None and src.suffix.lower() in MIDI_SUFFIXES:
        raise CliError("--tune picks a tune of a notation file (ABC); a MIDI file holds one piece, pick its "
                       "tracks with --track")
    try:
        return read_score(src, tune=tune, keep_zero_length=True)  # grace notes too: every note is kept
    except FileNotFoundError as exc:
        raise CliError(str(exc)) from None
    except ScoreReadError as exc:
        raise CliError(str(exc)) from None


def _score_writer(score, out: Path):
    if out.suffix.lower() in (".mid", ".midi"):
        from bridge.midi import write_midi

        return lambda p: write_midi(score, p)
    from bridge.notation import write_musicxml

    return lambda p: write_musicxml(score, p)


def _ensemble(name_or_path: str):
    from models.ensembles import EnsembleError, get_ensemble

    try:
        return get_ensemble(name_or_path)
    except EnsembleError as exc:
        raise CliError(str(exc)) from None


def _arrange_via_engine(args: argparse.Namespace, score, ensemble):
    """Arrange through a running engine (``--engine``): it sends a part per note, and the same
    Arrangement the embedded path makes is built from those labels."""
    import numpy as np

    from engine.tasks.arrange import EXTRA_PROGRAM, Arrangement, Hints, ensemble_to_wire, input_notes
    from models.arranger.decoding import lead_parts
    from models.ensembles import ENSEMBLES

    hints = Hints.parse(args.hints or [], ensemble.part_names)
    notes = input_notes(score)
    lengthless = notes["duration"] == 0  # grace notes: placed here, by their source track, as embedded
    options = {"hints": hints.to_wire()} if hints else {}
    if ENSEMBLES.get(ensemble.name) != ensemble:  # the user's own file: the engine gets its parts
        options["ensemble_parts"] = ensemble_to_wire(ensemble)
    if args.keep_extras:
        options["keep_extras"] = True
    with engine_session(args) as client:
        sounding, parts, stats = client.arrange(notes[~lengthless], ensemble.name, args.mode,
                                                score.resolution, constrained=not args.unconstrained,
                                                **options)
    labels = np.zeros(len(notes), np.int64)
    labels[~lengthless] = sounding
    labels[lengthless] = lead_parts(notes, lengthless, labels, score.merged(include_drums=False)[1])
    programs = {p.name: p.program for p in ensemble.parts}
    return Arrangement(notes, labels, list(parts), [int(programs.get(name, EXTRA_PROGRAM)) for name in parts],
                       score, stats.get("model", args.engine), ensemble, args.keep_extras)


def _arguments(a: argparse.ArgumentParser) -> None:
    from models.ensembles import ENSEMBLES

    a.add_argument("input", help="MIDI (.mid) or MusicXML (.xml, .mxl), Humdrum or ABC file")
    a.add_argument("-o", "--output", required=True, help="output .mid, .musicxml or .mxl")
    a.add_argument("--ensemble", default=DEFAULT_ENSEMBLE, metavar="NAME|FILE.toml",
                   help=f"one of {', '.join(ENSEMBLES)}, or your own ensemble file")
    a.add_argument("--mode", default=DEFAULT_MODE, choices=["online", "offline"],
                   help="online: causal model (as while the DAW plays); offline: sees the whole region")
    a.add_argument("--hints", nargs="+", metavar="HINT",
                   help="PART:entry=BEAT or PART:pitch=MIDI, for models trained with hints")
    a.add_argument("--unconstrained", action="store_true",
                   help="plain argmax; by default each part keeps to its range and plays at most as "
                        "many notes at once as it can")
    a.add_argument("--keep-extras", action="store_true",
                   help="notes no part can play (a chord with more notes than parts, a note out of "
                        "every free part's range) go to an added Keyboard part instead of a divisi")
    a.add_argument("--track", action="append", metavar="N|NAME",
                   help="arrange only this source track (number from 1, or name); repeat for more. "
                        "Drum tracks always pass through as they are")
    a.add_argument("--tune", metavar="N|TITLE",
                   help="which tune of a file that holds several (ABC): number from 1 or title; default 1")
    a.add_argument("--plot", metavar="PNG", help="also draw the piano roll coloured by part")
    a.add_argument("--render", metavar="WAV", help="also render audio with FluidSynth")
    a.add_argument("--force", action="store_true", help="overwrite existing output files")
    a.add_argument("--models", action="append", metavar="DIR", help="extra model folder")
    engine_options(a, default_endpoint=False)


def register(sub: argparse._SubParsersAction) -> None:
    add_verb(sub, "arrange", cmd_arrange, "orchestrate a piano/solo MIDI or MusicXML file", _arguments)
