"""What the verbs share: the user-error type, output checks, all-or-nothing writes, reading the input,
the engine-connection options, and the parser class that adds a verb's arguments on first use."""
from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

Writer = Callable[[Path], object]


class CliError(Exception):
    """A user error: printed as one sentence, exit status 2, nothing written."""


class VerbParser(argparse.ArgumentParser):
    """A verb's parser whose arguments are added the first time it parses or prints help, so that
    `deep-musician --help` imports nothing a verb's options need (bridge.protocol pulls in numpy)."""

    def __init__(self, *args, arguments: Callable[[argparse.ArgumentParser], None] | None = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._arguments = arguments

    def _add_arguments(self) -> None:
        if self._arguments is not None:
            add, self._arguments = self._arguments, None
            add(self)

    def parse_known_args(self, args=None, namespace=None):
        self._add_arguments()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self._add_arguments()
        return super().format_usage()

    def format_help(self) -> str:
        self._add_arguments()
        return super().format_help()


def add_verb(sub: argparse._SubParsersAction, name: str, fn: Callable[[argparse.Namespace], int],
             help_: str, arguments: Callable[[argparse.ArgumentParser], None]) -> argparse.ArgumentParser:
    """Register one verb: its one-line help, `fn`'s docstring as description, defaults shown."""
    sp = sub.add_parser(name, help=help_, description=fn.__doc__, arguments=arguments,
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sp.set_defaults(func=fn)
    return sp


def check_outputs(paths: Sequence[Path | None], force: bool) -> None:
    for p in paths:
        if p is None:
            continue
        if p.exists() and not force:
            raise CliError(f"{p} already exists; pass --force to overwrite it or choose another path")
        if not p.parent.exists():
            raise CliError(f"the folder {p.parent} does not exist; create it or choose another path")


def write_all(writes: Sequence[tuple[Path, Writer]]) -> None:
    """Write every output through a temporary file in its own folder, and put them in place only when
    all writers succeeded: a failure leaves no output and no partial file."""
    staged: list[tuple[str, Path]] = []
    umask = os.umask(0)
    os.umask(umask)
    try:
        for path, write in writes:
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=path.suffix, prefix=f".{path.stem}.")
            os.close(fd)
            staged.append((tmp, path))
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a normal file follows the umask
            write(Path(tmp))
        for tmp, path in staged:
            os.replace(tmp, path)
    finally:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)


def read_input(src: Path):
    from bridge.scorefile import ScoreReadError, read_score

    try:
        return read_score(src)
    except FileNotFoundError as exc:
        raise CliError(str(exc)) from None
    except ScoreReadError as exc:
        raise CliError(f"{exc}. Give a standard MIDI file (.mid) or MusicXML (.xml, .mxl)") from None


def engine_options(p: argparse.ArgumentParser, default_endpoint: bool) -> None:
    endpoint = None
    if default_endpoint:  # only then: bridge.protocol imports numpy, which `arrange --help` need not
        from bridge.protocol import DEFAULT_ENDPOINT as endpoint

    p.add_argument("--engine", metavar="ENDPOINT", default=endpoint,
                   help="a running engine (deep-musician serve) to use instead of the embedded one")
    p.add_argument("--engine-keys", metavar="DIR", help="CurveZMQ keys for --engine: "
                   "DIR/client.key_secret and the engine's DIR/server.key")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each reply")


def engine_client(args: argparse.Namespace):
    from bridge.client import Client

    return Client(args.engine, timeout_s=args.timeout, keys_dir=args.engine_keys)


@contextlib.contextmanager
def engine_session(args: argparse.Namespace) -> Iterator:
    """A client of the engine at `--engine`; an unreachable engine or a refused request is a CliError."""
    from bridge.client import EngineError, EngineUnreachable

    try:
        with engine_client(args) as client:
            yield client
    except EngineUnreachable as exc:
        raise CliError(str(exc)) from None
    except EngineError as exc:
        raise CliError(f"the engine refused the request: {exc.message}") from None
