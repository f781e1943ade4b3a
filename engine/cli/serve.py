"""``deep-musician serve``: the engine as a long-running service (ZeroMQ) for the plugin and clients."""
from __future__ import annotations

import argparse

from engine.cli.common import CliError, add_verb


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the engine as a service for the plugin and other clients until SIGINT/SIGTERM."""
    from engine.endpoints import check_bind, check_free

    # before importing torch and loading models: a bad or busy endpoint is refused at once
    args.endpoint = check_bind(args.endpoint, args.keys)
    check_free(args.endpoint)

    import logging

    from bridge.protocol import Limits
    from engine import devices
    from engine.registry import Registry
    from engine.server import EngineServer, limit_malloc_arenas

    limit_malloc_arenas()  # before torch and zmq start their threads
    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        device = devices.resolve(args.device)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    registry = Registry(args.models).load_all()  # on the CPU; each task moves what it runs to its device
    for e in registry.entries:
        if not e.ok:
            logging.getLogger("engine.server").warning("event=model_skipped %s", e.describe())
    live_device = args.live_device or devices.live_device(registry, device)
    server = EngineServer(args.endpoint, registry, workers=args.workers, keys_dir=args.keys,
                          limits=Limits(max_jobs_per_client=args.max_jobs_per_client), device=device,
                          live_device=live_device)
    print(f"engine ready on {args.endpoint} (batch work on {device}, live work on {live_device}, "
          f"{len(registry.usable())} models); Ctrl-C stops it", flush=True)
    server.serve_forever()
    return 0


def _arguments(sv: argparse.ArgumentParser) -> None:
    from bridge import protocol

    sv.add_argument("--endpoint", default=protocol.DEFAULT_ENDPOINT, help="ZeroMQ endpoint to bind")
    sv.add_argument("--models", action="append", metavar="DIR", help="extra model folder")
    sv.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                    help="where batch work runs (auto: the GPU when there is one)")
    sv.add_argument("--live-device", choices=["cpu", "cuda"],
                    help="where live work runs (default: the CPU unless --device is measured faster "
                    "per chord at start-up)")
    sv.add_argument("--workers", type=int, default=2, help="worker threads running jobs")
    sv.add_argument("--keys", metavar="DIR", help="CurveZMQ keys: DIR/server.key_secret and "
                    "DIR/clients/*.key (needed to bind a non-loopback address)")
    sv.add_argument("--max-jobs-per-client", type=int, default=8, help="queued or running jobs")
    sv.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def register(sub: argparse._SubParsersAction) -> None:
    add_verb(sub, "serve", cmd_serve, "run the engine as a service for the plugin and clients", _arguments)
