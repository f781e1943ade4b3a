"""``deep-musician continue``: write the bars that follow a given score (embedded or via
``--engine``); the module is named for the noun, as ``continue`` is a Python keyword."""
from __future__ import annotations

import argparse

from engine.cli.common import CliError, add_verb
from engine.cli.composing import (
    given_options,
    instruments_arg,
    read_given_job,
    run_request,
    sampling_options,
    setting_options,
    track_control_options,
    track_controls,
)


def cmd_continue(args: argparse.Namespace) -> int:
    """Continue a score by --bars bars: its instruments (tracks named after the model's, or one melody)
    go on where it ends; the given bars come out exactly as they went in."""
    from models.composer.inference import MAX_BARS

    job = read_given_job(args)
    have = job.setting["bars"]
    if have >= MAX_BARS:
        raise CliError(f"{job.src.name} already has {have} bars, the most the model writes at once; cut it")
    if not 1 <= args.bars <= MAX_BARS - have:
        raise CliError(f"--bars must be 1..{MAX_BARS - have}: {job.src.name} has {have} bars and the model "
                       f"writes at most {MAX_BARS} in all; got {args.bars}")
    added = [n for n in instruments_arg(args.instruments) or () if n not in job.tracks]
    composed = run_request(args, job.composer, **{**job.setting, "bars": have + args.bars},
                           chords=args.chords, instruments=(*job.tracks, *added), given=job.notes(),
                           given_bars=(0, have), resolution=job.score.resolution,
                           **track_controls(args, [*job.tracks, *added]))
    job.finish(composed, " continued", "continued", f"{job.src.name} by {args.bars} bars after its {have} ")
    return 0


def _arguments(a: argparse.ArgumentParser) -> None:
    given_options(a)
    a.add_argument("--bars", type=int, default=4, help="how many bars to add")
    a.add_argument("--instruments", nargs="+", metavar="NAME",
                   help="instruments to add (written from the first bar); default: the input's")
    setting_options(a, from_input=True)
    track_control_options(a)
    sampling_options(a)


def register(sub: argparse._SubParsersAction) -> None:
    add_verb(sub, "continue", cmd_continue, "write the bars that follow a score", _arguments)
