"""``deep-musician status``: what a running engine serves."""
from __future__ import annotations

import argparse

from engine.cli.common import CliError, add_verb, engine_client, engine_options


def cmd_status(args: argparse.Namespace) -> int:
    """Ask a running engine what it serves and how long it has been up."""
    from bridge.client import EngineUnreachable

    try:
        with engine_client(args) as client:
            welcome = client.hello("deep-musician status")
            status = client.status()
            endpoint = client.endpoint
    except EngineUnreachable as exc:
        raise CliError(str(exc)) from None
    print(f"engine {welcome['engine_version']} at {endpoint}, up {status.get('uptime_s', 0):.1f} s; "
          f"serves {', '.join(welcome['capabilities'])}")
    for m in welcome["models"]:
        extra = f" ensemble={m['ensemble']} mode={m['mode']}" if m.get("task") == "arrange" else ""
        print(f"  {m['name']} v{m.get('version', '?')} task={m.get('task')}{extra}")
    print("limits: " + ", ".join(f"{k}={v}" for k, v in welcome["limits"].items()))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    add_verb(sub, "status", cmd_status, "ask a running engine what it serves",
             lambda st: engine_options(st, default_endpoint=True))
