"""``deep-musician infill``: write chosen bars of chosen tracks again, around the rest of the score,
which is kept note for note (embedded or via ``--engine``)."""
from __future__ import annotations

import argparse
import re

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


def bars_arg(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*(?::\s*(\d+)\s*)?", text)
    if m and int(m.group(2) or m.group(1)) < int(m.group(1)):
        raise argparse.ArgumentTypeError(f"bars {text!r} end before they start; write the first bar "
                                         f"first, such as {m.group(2)}:{m.group(1)}")
    if not m:
        raise argparse.ArgumentTypeError(f"bars {text!r} is not FIRST:LAST counted from 1, such as 3:4 "
                                         "(or one bar: 5)")
    return int(m.group(1)), int(m.group(2) or m.group(1))


def cmd_infill(args: argparse.Namespace) -> int:
    """Write bars FIRST..LAST (numbered as printed: from 1, a pickup bar 0; both included) of the
    --tracks named again, seeing the rest of the score; every other note comes out exactly as it went
    in. A named instrument the file lacks is added in those bars only."""
    from bridge.score import empty_notes

    job = read_given_job(args)
    first, last = args.bars
    lowest, highest = job.first_bar, job.first_bar + job.setting["bars"] - 1
    if first < lowest or last > highest:
        pickup = ", its pickup bar 0" if lowest == 0 else ""
        raise CliError(f"--bars {first}:{last} is outside {job.src.name}, which has bars {lowest}..{highest}"
                       f"{pickup}; choose bars inside it")
    start, stop = first - lowest, last - lowest + 1  # the request's bars, counted from 0
    tracks = list(instruments_arg(args.tracks) or job.tracks)
    for name in tracks:
        if name not in job.names:
            raise CliError(f"--tracks {name}: not an instrument of the model; choose from "
                           f"{', '.join(job.names)}")
    notes = job.notes() | {n: empty_notes() for n in tracks if n not in job.tracks}
    controls = track_controls(args, tracks)
    if args.preserve_rhythm:
        for name in controls["rhythm"] or {}:
            raise CliError(f"--rhythm {name}=... and --preserve-rhythm both set the rhythm of {name}; "
                           "give one of them")
        controls["rhythm"] = {n: "keep" for n in tracks}
    composed = run_request(args, job.composer, **job.setting, chords=args.chords,
                           instruments=tuple(n for n in job.names if n in notes), given=notes,
                           infill={n: (start, stop) for n in tracks}, resolution=job.score.resolution,
                           **controls)
    meter = job.setting["meter"]
    bar_ticks = meter[0] * 4 * job.score.resolution // meter[1]
    job.finish(composed, f", bars {first}-{last} again", "infilled",
               f"bars {first}..{last} of {', '.join(tracks)} ",
               rewritten={n: (start * bar_ticks, stop * bar_ticks) for n in tracks})
    return 0


def _arguments(a: argparse.ArgumentParser) -> None:
    given_options(a)
    a.add_argument("--bars", type=bars_arg, required=True, metavar="FIRST:LAST",
                   help="the bars to write again, numbered as printed (from 1; a pickup is bar 0), "
                        "both included (e.g. 3:4)")
    a.add_argument("--tracks", nargs="+", metavar="NAME",
                   help="instruments to write in those bars, e.g. alto,tenor (default: every given one)")
    a.add_argument("--preserve-rhythm", action="store_true",
                   help="keep the rewritten parts' own onsets and durations and write new pitches on them "
                        "(the voice infiller: whole voices around the other given ones, no --chords)")
    setting_options(a, from_input=True)
    track_control_options(a)
    sampling_options(a)


def register(sub: argparse._SubParsersAction) -> None:
    add_verb(sub, "infill", cmd_infill, "write chosen bars of chosen tracks again", _arguments)
