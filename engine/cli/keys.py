"""``deep-musician keys``: a CurveZMQ key pair for the engine or a client."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from engine.cli.common import CliError, add_verb


def cmd_keys(args: argparse.Namespace) -> int:
    """Make a CurveZMQ key pair (NAME.key public, NAME.key_secret secret) in a folder."""
    import zmq.auth

    folder = Path(args.folder)
    public, secret = folder / f"{args.name}.key", folder / f"{args.name}.key_secret"
    for p in (public, secret):
        if p.exists():
            raise CliError(f"{p} already exists; keys are never overwritten: choose another --name "
                           "or folder, or delete the old pair yourself")
    folder.mkdir(parents=True, exist_ok=True)
    zmq.auth.create_certificates(folder, args.name)
    os.chmod(secret, 0o600)
    print(f"public key -> {public}\nsecret key -> {secret} (keep it private)")
    if args.name == "server":
        print(f"authorise a client by copying its public key into {folder / 'clients'}/")
    return 0


def _arguments(k: argparse.ArgumentParser) -> None:
    k.add_argument("folder", help="folder to write NAME.key and NAME.key_secret into")
    k.add_argument("--name", default="server", help="server for the engine, client for a client")


def register(sub: argparse._SubParsersAction) -> None:
    add_verb(sub, "keys", cmd_keys, "make a CurveZMQ key pair for the engine or a client", _arguments)
