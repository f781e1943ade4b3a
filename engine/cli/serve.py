"""``deep-musician serve``: the engine as a long-running service (ZeroMQ) for the plugin and clients."""
from __future__ import annotations

import argparse

from engine.cli.common import CliError, add_verb


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the engine as a service for the plugin and other clients until SIGINT/SIGTERM."""
    import logging

    from bridge.protocol import Limits
    from engine.registry import Registry
    from engine.server import EngineServer, check_bind, limit_malloc_arenas

    limit_malloc_arenas()  # before torch and zmq start their threads
    check_bind(args.endpoint, args.keys)  # before loading models: refuse fast
    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        raise CliError("--device cuda: torch sees no CUDA GPU here (torch "
                       f"{torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); use --device cpu, "
                       "or install a CUDA build of torch on a machine with an NVIDIA GPU")
    registry = Registry(args.models, device=device)
    for e in registry.entries:
        if not e.ok:
            logging.getLogger("engine.server").warning("event=model_skipped %s", e.describe())
    server = EngineServer(args.endpoint, registry, workers=args.workers, keys_dir=args.keys,
                          limits=Limits(max_jobs_per_client=args.max_jobs_per_client))
    print(f"engine ready on {args.endpoint} ({device}, {len(registry.usable())} models); "
          "Ctrl-C stops it", flush=True)
    server.serve_forever()
    return 0


def _arguments(sv: argparse.ArgumentParser) -> None:
    from bridge import protocol

    sv.add_argument("--endpoint", default=protocol.DEFAULT_ENDPOINT, help="ZeroMQ endpoint to bind")
    sv.add_argument("--models", action="append", metavar="DIR", help="extra model folder")
    sv.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where models run")
    sv.add_argument("--workers", type=int, default=2, help="worker threads running jobs")
    sv.add_argument("--keys", metavar="DIR", help="CurveZMQ keys: DIR/server.key_secret and "
                    "DIR/clients/*.key (needed to bind a non-loopback address)")
    sv.add_argument("--max-jobs-per-client", type=int, default=8, help="queued or running jobs")
    sv.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def register(sub: argparse._SubParsersAction) -> None:
    add_verb(sub, "serve", cmd_serve, "run the engine as a service for the plugin and clients", _arguments)
