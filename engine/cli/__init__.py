"""``deep-musician``: the one command line, one module per verb.

    deep-musician arrange examples/piano.mid -o arranged.mid
    deep-musician compose -o new.mid --bars 8 --chords "C G Am F"
    deep-musician accompany melody.mid -o accompanied.mid
    deep-musician continue new.mid --bars 4 -o longer.mid
    deep-musician infill new.mid --bars 3:4 --tracks alto,tenor -o again.mid
    deep-musician perform arranged.mid -o arranged.wav
    deep-musician models
    deep-musician doctor
    deep-musician data build bach | deep-musician data stats bach

Each verb module has `register(subparsers)` and one command function; it imports what the command
needs inside that function, and its options are added when its parser is first used, so `--help`
stays fast (no numpy, torch or music21).
"""
from __future__ import annotations

import argparse
import importlib
import os
import re
import sys

from engine.cli.common import CliError, VerbParser

VERBS = ("arrange", "compose", "accompany", "continue", "infill", "perform", "serve", "status", "keys",
         "models", "doctor", "data")
MODULES = {"continue": "continuation"}  # a verb whose module has another name (a Python keyword)

__all__ = ["VERBS", "CliError", "build_parser", "main", "run"]


def build_parser() -> argparse.ArgumentParser:
    from bridge import __version__

    p = argparse.ArgumentParser(prog="deep-musician", description="Deep Musician: arrange, compose "
                                "and perform with deep learning, in and beside your DAW.")
    p.add_argument("--version", action="version", version=f"deep-musician {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=VerbParser)
    sub.required = True
    for verb in VERBS:
        importlib.import_module(f"engine.cli.{MODULES.get(verb, verb)}").register(sub)
    return p


# options whose value may be a list of numbers starting with a minus ("--latent -0.5,0.2"), which
# argparse would take for an option: joined to their flag before parsing
NUMBER_LISTS = ("--latent",)


def join_number_lists(argv: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(argv):
        if (argv[i] in NUMBER_LISTS and i + 1 < len(argv)
                and re.fullmatch(r"-[\d.]+(,\s*-?[\d.]+)*", argv[i + 1])):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    # One intra-op thread unless the user says otherwise (read when torch is first imported). On
    # these 2-core machines, shared, torch's default of one thread per core made the example's
    # single forward pass take 2-11 s instead of 0.08 s: its threads spin waiting for each other
    # (the engine's workers run one thread each for the same reason).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    parser = build_parser()
    args = parser.parse_args(join_number_lists(sys.argv[1:] if argv is None else list(argv)))
    try:
        return args.func(args)
    except (CliError, ValueError) as exc:
        print(f"deep-musician: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("deep-musician: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """The ``deep-musician`` program: `main`, then an immediate exit once every output is written
    and the streams are flushed. A normal interpreter exit after torch is loaded spends ~0.4 s
    tearing down modules that nothing needs any more (measured: ``import torch`` alone, 1.9 s of
    CPU with a normal exit, 1.4 s with ``os._exit``)."""
    rc = main()
    try:
        if "logging" in sys.modules:
            sys.modules["logging"].shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed or broken pipe: nothing more can be said
        rc = rc or 1
    os._exit(rc)
