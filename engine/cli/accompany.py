"""``deep-musician accompany``: write the other instruments around a given melody or part, which is
kept note for note (embedded or via ``--engine``)."""
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


def cmd_accompany(args: argparse.Namespace) -> int:
    """Accompany a melody (or parts named after the model's instruments): the model writes the other
    instruments bar by bar around it; the given notes come out exactly as they went in."""
    from models.composer.inference import MAX_BARS

    job = read_given_job(args)
    bars = job.setting["bars"]
    if bars > MAX_BARS:
        raise CliError(f"{job.src.name} is {bars} bars long; the model writes at most {MAX_BARS} bars at "
                       "once: cut the file")
    instruments = instruments_arg(args.instruments)
    written = [n for n in instruments or job.names if n not in job.tracks]
    composed = run_request(args, job.composer, **job.setting, chords=args.chords, instruments=instruments,
                           given=job.notes(), resolution=job.score.resolution,
                           **track_controls(args, written))
    job.finish(composed, " accompanied", "accompanied", f"{', '.join(job.tracks)} ({bars} bars) ")
    return 0


def _arguments(a: argparse.ArgumentParser) -> None:
    given_options(a)
    a.add_argument("--instruments", nargs="+", metavar="NAME",
                   help="instruments to write besides the given ones (default: every one the model knows)")
    setting_options(a, from_input=True)
    track_control_options(a)
    sampling_options(a)


def register(sub: argparse._SubParsersAction) -> None:
    add_verb(sub, "accompany", cmd_accompany, "write parts around a melody, kept note for note", _arguments)
