"""What the engine may bind: endpoints without a scheme mean ``tcp://``, a network-facing address
needs CurveZMQ keys, and a busy address is refused. Checked by ``serve`` before the models load,
so it imports neither torch nor the engine's tasks."""
from __future__ import annotations

import errno
import ipaddress
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

import zmq

from bridge.client import normalize_endpoint

KEYS_HELP = ("make keys with `deep-musician keys --name server` (into ~/.config/deep-musician/keys, "
             "KEYDIR below), copy each client's public key (made with `deep-musician keys DIR --name "
             "client`) into KEYDIR/clients/, and start the engine with --keys KEYDIR")


def is_local_endpoint(endpoint: str) -> bool:
    """True for ipc://, inproc:// and tcp:// on a loopback address (127.0.0.0/8, ::1, localhost)."""
    parts = urlsplit(endpoint)
    if parts.scheme in ("ipc", "inproc"):
        return True
    host = (parts.hostname or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "*", an interface name or a host name: may face the network


def check_bind(endpoint: str, keys_dir: str | Path | None) -> str:
    """The endpoint to bind (``tcp://`` when it names no scheme); refuses (ValueError) a
    network-facing bind without CurveZMQ keys, before anything binds."""
    endpoint = normalize_endpoint(endpoint)
    if keys_dir is None and not is_local_endpoint(endpoint):
        raise ValueError(f"refusing to bind {endpoint} without keys: a non-loopback address lets anyone "
                         f"on the network use the engine; {KEYS_HELP} (or bind tcp://127.0.0.1:PORT)")
    return endpoint


def bind_problem(endpoint: str, exc: zmq.ZMQError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (f"{endpoint} is already in use: another engine (or another program) listens there; stop "
                "it, or serve on another port with --endpoint tcp://127.0.0.1:PORT")
    return f"cannot bind {endpoint}: {exc.strerror}; check the address, or choose another with --endpoint"


def check_free(endpoint: str) -> None:
    """Refuse (ValueError) an endpoint something already listens on: called before the models load,
    so a second ``serve`` on a busy port stops at once. A tcp endpoint is bound and released again
    (ZeroMQ binds with SO_REUSEADDR, so the engine can bind it right after); an ipc endpoint is busy
    when a connect to its socket file succeeds (a ZeroMQ bind would take the file over)."""
    scheme, _, address = endpoint.partition("://")
    if scheme == "ipc":
        if os.path.exists(address):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                try:
                    probe.connect(address)
                except OSError:
                    return  # a stale file: ZeroMQ replaces it
            raise ValueError(bind_problem(endpoint, zmq.ZMQError(errno.EADDRINUSE)))
        return
    if scheme != "tcp":
        return
    ctx = zmq.Context()
    try:
        probe = ctx.socket(zmq.ROUTER)
        probe.setsockopt(zmq.LINGER, 0)
        try:
            probe.bind(endpoint)
        except zmq.ZMQError as exc:
            raise ValueError(bind_problem(endpoint, exc)) from None
        finally:
            probe.close(linger=0)
    finally:
        ctx.term()
