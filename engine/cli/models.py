"""``deep-musician models``: the models found and the broken ones."""
from __future__ import annotations

import argparse

from engine.cli.common import add_verb


def cmd_models(args: argparse.Namespace) -> int:
    """List the models found (shipped, $DEEP_MUSICIAN_MODELS, --models) and any broken ones."""
    from engine.registry import Registry, model_dirs

    registry = Registry(args.models).load_all()
    print("model folders: " + ", ".join(str(d) for d in model_dirs(args.models)))
    if not registry.entries:
        print("no models found")
        return 1
    for e in registry.entries:
        print(("  " if e.ok else "! ") + e.describe())
    return 0


def models_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", action="append", metavar="DIR", help="extra model folder")


def register(sub: argparse._SubParsersAction) -> None:
    add_verb(sub, "models", cmd_models, "list the models found", models_option)
