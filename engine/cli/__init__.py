"""``deep-musician``: the one command line, one module per verb.

    deep-musician arrange examples/piano.mid -o arranged.mid
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
import sys

from engine.cli.common import CliError, VerbParser

VERBS = ("arrange", "perform", "serve", "status", "keys", "models", "doctor", "data")

__all__ = ["VERBS", "CliError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from bridge import __version__

    p = argparse.ArgumentParser(prog="deep-musician", description="Deep Musician: arrange, compose "
                                "and perform with deep learning, in and beside your DAW.")
    p.add_argument("--version", action="version", version=f"deep-musician {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=VerbParser)
    sub.required = True
    for verb in VERBS:
        importlib.import_module(f"engine.cli.{verb}").register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (CliError, ValueError) as exc:
        print(f"deep-musician: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("deep-musician: interrupted", file=sys.stderr)
        return 130
