"""``deep-musician keys``: a CurveZMQ key pair for the engine or a client."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from engine.cli.common import CliError, add_verb


def default_keys_dir() -> Path:
    """``$XDG_CONFIG_HOME/deep-musician/keys`` (``~/.config/...``): outside any checkout."""
    config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config) / "deep-musician" / "keys"


def git_checkout(folder: Path) -> Path | None:
    """The git working tree ``folder`` lies in (it need not exist yet), or None."""
    for parent in (folder.resolve(), *folder.resolve().parents):
        if (parent / ".git").exists():
            return parent
    return None


def cmd_keys(args: argparse.Namespace) -> int:
    """Make a CurveZMQ key pair (NAME.key public, NAME.key_secret secret) in a folder."""
    import zmq.auth

    folder = Path(args.folder) if args.folder else default_keys_dir()
    checkout = git_checkout(folder)
    if checkout is not None and not args.force:
        raise CliError(f"{folder} is inside the git checkout {checkout}, where a secret key is easily "
                       f"committed; leave out the folder to use {default_keys_dir()}, choose one outside "
                       "the checkout, or pass --force")
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
        print(f"authorise a client by copying its public key into {folder / 'clients'}/, then start the "
              f"engine with `deep-musician serve --keys {folder}`")
    return 0


def _arguments(k: argparse.ArgumentParser) -> None:
    k.add_argument("folder", nargs="?", help="folder to write NAME.key and NAME.key_secret into "
                   "(default: $XDG_CONFIG_HOME/deep-musician/keys, i.e. ~/.config/deep-musician/keys)")
    k.add_argument("--name", default="server", help="server for the engine, client for a client")
    k.add_argument("--force", action="store_true", help="write the secret key even inside a git checkout")


def register(sub: argparse._SubParsersAction) -> None:
    add_verb(sub, "keys", cmd_keys, "make a CurveZMQ key pair for the engine or a client", _arguments)
