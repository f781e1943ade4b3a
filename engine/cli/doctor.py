"""``deep-musician doctor``: what is installed and what is missing."""
from __future__ import annotations

import argparse

from engine.cli.common import add_verb
from engine.cli.models import models_option


def cmd_doctor(args: argparse.Namespace) -> int:
    """Say what is installed and what is missing, with the command that fixes each."""
    from engine.doctor import run_checks

    return run_checks(args.models)


def register(sub: argparse._SubParsersAction) -> None:
    add_verb(sub, "doctor", cmd_doctor, "check what is installed and what is missing", models_option)
