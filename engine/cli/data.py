"""``deep-musician data``: build and inspect training data (``build``, ``stats``), and pair a recording
with its score (``align``)."""
from __future__ import annotations

import argparse

from engine.cli.common import CliError


def cmd_data_build(args: argparse.Namespace) -> int:
    """Convert a music21 corpus set (bach, quartets, renaissance; folk with --multitrack) or --source
    DIR for training."""
    if args.multitrack:
        from models.data import multitrack as mt

        if args.ensemble:
            raise CliError("--ensemble labels parts for the part-separation sets; a --multitrack build "
                           "labels every track with its instrument, so leave --ensemble out")
        if args.limit is not None and args.limit <= 0:
            raise CliError(f"--limit must be a positive number of files, got {args.limit}")
        folder = mt.build(args.set, source=args.source, jobs=args.jobs, limit=args.limit,
                          shard_files=args.shard_files)
        print(f"wrote {folder}")
        return cmd_data_stats(argparse.Namespace(sets=[args.set], multitrack=True))
    from models.data import corpus as ds

    path = ds.build(args.set, source=args.source, ensemble=args.ensemble, jobs=args.jobs,
                    limit=args.limit)
    print(f"wrote {path}")
    return cmd_data_stats(argparse.Namespace(sets=[args.set]))


def _multitrack_stats(name: str) -> None:
    from models.data import multitrack as mt

    try:
        s = mt.stats(name)
    except FileNotFoundError as exc:
        raise CliError(str(exc)) from None
    sp = s["split"]
    print(f"{name} (multitrack): {s['pieces']} pieces from {s['files']} files ({s['skipped']} skipped), "
          f"{s['notes']} notes, {s['hours']:.2f} h, train/valid/test {sp.get('train', 0)}/"
          f"{sp.get('valid', 0)}/{sp.get('test', 0)}")
    print(f"  tracks per piece {s['tracks_per_piece']:.2f}; instruments "
          + ", ".join(f"{k} {v}" for k, v in s["instruments"].items()))
    print("  chords from " + ", ".join(f"{k} {v}" for k, v in s["chord_source"].items()) + "; qualities "
          + ", ".join(f"{k} {v}" for k, v in s["chord_qualities"].items()))
    print("  first meters " + ", ".join(f"{k} {v}" for k, v in s["meters"].items()))


def cmd_data_stats(args: argparse.Namespace) -> int:
    """Print the paper's Table 1 for built sets (hours, files, notes, parts, most common label), or
    with --multitrack the composer's sets (pieces, splits, instruments, chords, meters)."""
    from models.data import corpus as ds
    from models.data import multitrack as mt

    if getattr(args, "multitrack", False):
        for name in args.sets:
            _multitrack_stats(name)
        return 0

    print(f"{'set':<12} {'hours':>6} {'files':>6} {'notes':>8} {'parts':>5}  most common label  "
          "train/valid/test")
    for name in args.sets:
        try:
            s = ds.stats(name)
        except FileNotFoundError as exc:
            if mt.set_dir(name).is_dir():  # only a multitrack build of this name exists
                _multitrack_stats(name)
                continue
            raise CliError(str(exc)) from None
        sp = s["split"]
        print(f"{name:<12} {s['hours']:6.2f} {s['files']:6d} {s['notes']:8d} {s['parts']:5d}  "
              f"{s['most_common_label']} ({100 * s['most_common_share']:.1f}%)"
              f"{'':8} {sp['train']}/{sp['valid']}/{sp['test']}")
    return 0


def _build_arguments(b: argparse.ArgumentParser) -> None:
    from models.data.corpus import CORPUS_SETS
    from models.ensembles import ENSEMBLES

    b.add_argument("set", help=f"corpus set ({', '.join(CORPUS_SETS)}; folk too with --multitrack) or a "
                   "name for --source")
    b.add_argument("--source", help="a folder of your own MIDI/MusicXML files instead of the corpus")
    b.add_argument("--ensemble", choices=sorted(ENSEMBLES), help="label --source parts by name")
    b.add_argument("--jobs", type=int, default=2, help="parallel parser processes")
    b.add_argument("--limit", type=int, help="only the first N files (quick tries)")
    b.add_argument("--multitrack", action="store_true",
                   help="build the composer's set: instruments, meter, key, chords, bars (resumable shards)")
    b.add_argument("--shard-files", type=int, default=64, help="--multitrack: source files per shard")


def cmd_data_align(args: argparse.Namespace) -> int:
    """Align a recording with its score (DTW over chroma and onsets): a MIDI file of the score's notes
    at their performed times, the alignment model's training target."""
    from models.data.audio_align import run

    return run(args)


def _align_arguments(a: argparse.ArgumentParser) -> None:
    from models.data.audio_align import add_arguments

    add_arguments(a)


def _arguments(data: argparse.ArgumentParser) -> None:
    dsub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    dsub.required = True
    b = dsub.add_parser("build", help=cmd_data_build.__doc__, description=cmd_data_build.__doc__,
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter, arguments=_build_arguments)
    b.set_defaults(func=cmd_data_build)
    s = dsub.add_parser("stats", help=cmd_data_stats.__doc__, description=cmd_data_stats.__doc__)
    s.set_defaults(func=cmd_data_stats)
    s.add_argument("sets", nargs="+", help="built set names")
    s.add_argument("--multitrack", action="store_true", help="the composer's multitrack sets")
    a = dsub.add_parser("align", help=cmd_data_align.__doc__, description=cmd_data_align.__doc__,
                        arguments=_align_arguments)
    a.set_defaults(func=cmd_data_align)


def register(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("data", help="build and inspect training data", arguments=_arguments)
