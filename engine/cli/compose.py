"""``deep-musician compose``: write new multi-instrument music, from scratch or over chords (embedded
or via ``--engine``)."""
from __future__ import annotations

import argparse

from engine.cli.common import CliError, add_verb
from engine.cli.composing import (
    engine_or_composer,
    instruments_arg,
    output_paths,
    run_request,
    sampling_options,
    setting_options,
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
                           resolution=DEFAULT_RESOLUTION, arrangement=arrangement,
                           density=_controls(args.density), polyphony=_controls(args.polyphony),
                           rhythm=_controls(args.rhythm), register=_controls(args.register))
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


def _controls(pairs: list[tuple[str, object]] | None) -> dict | None:
    return dict(pairs) if pairs else None


def _pair(kind, example: str):
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
    a.add_argument("--density", type=_pair(int, "soprano=4"), action="append", metavar="INSTRUMENT=N",
                   help="notes per bar an instrument aims at, e.g. soprano=4; repeat for more")
    a.add_argument("--polyphony", type=_pair(int, "bass=1"), action="append", metavar="INSTRUMENT=N",
                   help="most notes an instrument starts at once")
    a.add_argument("--rhythm", type=_pair(str, "bass=plain"), action="append", metavar="INSTRUMENT=LEVEL",
                   help="plain (onsets on the beat), moderate (half beats) or busy (anywhere)")
    a.add_argument("--register", type=_pair(int, "soprano=72"), action="append", metavar="INSTRUMENT=PITCH",
                   help="the MIDI pitch an instrument's notes gather around, e.g. soprano=72 (a soft pull "
                        "inside its range; --range sets hard limits)")
    a.add_argument("--arranger", type=int, metavar="SEED",
                   help="let the arrangement model plan the instruments (unless named) and the controls "
                        "above from this seed; options given here win")
    a.add_argument("--direction", type=_pair(float, "density=2"), action="append", metavar="NAME=AMOUNT",
                   help="with --arranger: move its plan along a named direction (density, instruments, "
                        "register, rhythm, polyphony), about -3..3")
    sampling_options(a)


def register(sub: argparse._SubParsersAction) -> None:
    add_verb(sub, "compose", cmd_compose, "write new music, from scratch or over chords", _arguments)
