"""``deep-musician data``: build and inspect training data (``build``, ``stats``)."""
from __future__ import annotations

import argparse

from engine.cli.common import CliError


def cmd_data_build(args: argparse.Namespace) -> int:
    """Convert a music21 corpus set (bach, quartets, renaissance) or --source DIR for training."""
    from models.data import corpus as ds

    path = ds.build(args.set, source=args.source, ensemble=args.ensemble, jobs=args.jobs,
                    limit=args.limit)
    print(f"wrote {path}")
    return cmd_data_stats(argparse.Namespace(sets=[args.set]))


def cmd_data_stats(args: argparse.Namespace) -> int:
    """Print the paper's Table 1 for built sets: hours, files, notes, parts, most common label."""
    from models.data import corpus as ds

    print(f"{'set':<12} {'hours':>6} {'files':>6} {'notes':>8} {'parts':>5}  most common label  "
          "train/valid/test")
    for name in args.sets:
        try:
            s = ds.stats(name)
        except FileNotFoundError as exc:
            raise CliError(str(exc)) from None
        sp = s["split"]
        print(f"{name:<12} {s['hours']:6.2f} {s['files']:6d} {s['notes']:8d} {s['parts']:5d}  "
              f"{s['most_common_label']} ({100 * s['most_common_share']:.1f}%)"
              f"{'':8} {sp['train']}/{sp['valid']}/{sp['test']}")
    return 0


def _build_arguments(b: argparse.ArgumentParser) -> None:
    from models.data.corpus import CORPUS_SETS
    from models.ensembles import ENSEMBLES

    b.add_argument("set", help=f"corpus set ({', '.join(CORPUS_SETS)}) or a name for --source")
    b.add_argument("--source", help="a folder of your own MIDI/MusicXML files instead of the corpus")
    b.add_argument("--ensemble", choices=sorted(ENSEMBLES), help="label --source parts by name")
    b.add_argument("--jobs", type=int, default=2, help="parallel parser processes")
    b.add_argument("--limit", type=int, help="only the first N files (quick tries)")


def _arguments(data: argparse.ArgumentParser) -> None:
    dsub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    dsub.required = True
    b = dsub.add_parser("build", help=cmd_data_build.__doc__, description=cmd_data_build.__doc__,
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter, arguments=_build_arguments)
    b.set_defaults(func=cmd_data_build)
    s = dsub.add_parser("stats", help=cmd_data_stats.__doc__, description=cmd_data_stats.__doc__)
    s.set_defaults(func=cmd_data_stats)
    s.add_argument("sets", nargs="+", help="built set names")


def register(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("data", help="build and inspect training data", arguments=_arguments)
