"""``deep-musician compose``: write new multi-instrument music, from scratch or over chords (embedded
or via ``--engine``)."""
from __future__ import annotations

import argparse

from engine.cli.common import CliError, add_verb
from engine.cli.composing import (
    engine_or_composer,
    instruments_arg,
    output_paths,
    pair_arg,
    run_request,
    sampling_options,
    setting_options,
    track_control_options,
    track_controls,
    write_result,
)

DEFAULT_BARS = 8


def cmd_compose(args: argparse.Namespace) -> int:
    """Compose new music for the model's instruments (or the ones named), bar by bar, optionally over
    a chord progression; the same seed and options give the same notes, in process or on an engine."""
    import numpy as np

    from bridge.score import DEFAULT_RESOLUTION, KEY_DTYPE, METER_DTYPE, TEMPO_DTYPE, Score, Track
    from models.composer.inference import MAX_BARS

    out, plot = output_paths(args)
    if not 1 <= args.bars <= MAX_BARS:  # said here too, not as the wire's "compose.bars must be >0"
        raise CliError(f"--bars must be 1..{MAX_BARS}, got {args.bars}")
    composer = engine_or_composer(args)
    if args.direction and args.arranger is None:
        raise CliError("--direction moves the arrangement model's plan: add --arranger SEED")
    arrangement = None if args.arranger is None else {"seed": args.arranger,
                                                      "directions": dict(args.direction or [])}
    composed = run_request(args, composer, bars=args.bars, meter=args.meter, key=args.key, qpm=args.tempo,
                           chords=args.chords, instruments=instruments_arg(args.instruments),
                           resolution=DEFAULT_RESOLUTION, arrangement=arrangement, **track_controls(args))
    key = _key(args.key)
    score = Score(DEFAULT_RESOLUTION, [Track(name, program, notes=composed.notes_of(name), role=name)
                                       for name, program in composed.tracks],
                  tempos=np.array([(0, args.tempo)], TEMPO_DTYPE),
                  meters=np.array([(0, *args.meter)], METER_DTYPE),
                  keys=np.array([(0, *key)] if key else [], KEY_DTYPE), title="composed")
    write_result(score, out, plot, f"composed, seed {args.seed}")
    counts = ", ".join(f"{t.name} {len(t.notes)}" for t in score.tracks)
    print(f"composed {args.bars} bars, {score.n_notes} notes with {composed.model} -> {out}: {counts}")
    if plot:
        print(f"piano roll -> {plot}")
    return 0


def _key(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    from models.composer.inference import parse_key

    return parse_key(text)


def _arguments(a: argparse.ArgumentParser) -> None:
    a.add_argument("--bars", type=int, default=DEFAULT_BARS, help="how many bars to write (1..256)")
    a.add_argument("--instruments", nargs="+", metavar="NAME",
                   help="instruments to write, e.g. soprano,bass; without it every one the model knows")
    setting_options(a, from_input=False)
    track_control_options(a)
    a.add_argument("--arranger", type=int, metavar="SEED",
                   help="let the arrangement model plan the instruments (unless named) and the controls "
                        "above from this seed; options given here win")
    a.add_argument("--direction", type=pair_arg(float, "density=2"), action="append", metavar="NAME=AMOUNT",
                   help="with --arranger: move its plan along a named direction (density, instruments, "
                        "register, rhythm, polyphony), about -3..3")
    sampling_options(a)


def register(sub: argparse._SubParsersAction) -> None:
    add_verb(sub, "compose", cmd_compose, "write new music, from scratch or over chords", _arguments)
