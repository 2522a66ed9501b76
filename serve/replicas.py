"""``ragfix serve --replicas N``: N server processes behind one listening socket on this machine.

The parent binds the address once and starts N replicas (``spawn``, so no torch state is forked);
each replica is the single-process server of :mod:`serve.server` (its own model, its own
micro-batcher, its own drain on SIGTERM) accepting connections from the shared socket, and the
kernel hands each new connection to one replica. Every response carries ``X-Ragfix-Replica: i``.
SIGTERM/SIGINT to the parent is forwarded to every replica, each drains its admitted requests,
and the parent exits when they all have (non-zero if any replica failed).

Past one machine, run one such server per machine behind a load balancer (docs/scale-out.md).
Replicas split the cores: each gets ``torch_threads`` (default ``cores // N``, at least 1).
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import socket
import sys
from typing import Any

from serve.config import ServeConfig

__all__ = ["run_replicas"]


def _with_replica_header(app: Any, index: int) -> Any:
    value = str(index).encode()

    async def wrapped(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)

        async def send_with_header(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"x-ragfix-replica", value)]}
            await send(message)

        return await app(scope, receive, send_with_header)

    return wrapped


def _replica_main(config: ServeConfig, sock: socket.socket, index: int) -> None:
    import logging

    import uvicorn

    from serve.app import ServeState, create_app
    from serve.server import _DrainingServer, build_scorer

    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s %(levelname)s replica-{index} %(name)s: %(message)s")
    state = ServeState()
    app = _with_replica_header(create_app(config, build_scorer, state), index)
    uv = uvicorn.Config(app, host=config.host, port=config.port, log_level="warning", access_log=False,
                        timeout_graceful_shutdown=max(1, int(config.drain_timeout_s)), server_header=False)
    _DrainingServer(uv, state, config.drain_timeout_s).run(sockets=[sock])


def run_replicas(config: ServeConfig, replicas: int) -> int:
    """Serve ``config`` with ``replicas`` processes on one socket until SIGTERM/SIGINT; returns 0 after all drained."""
    if replicas < 1:
        raise ValueError(f"--replicas must be >= 1, got {replicas}")
    if config.torch_threads is None:
        config = dataclasses.replace(config, torch_threads=max(1, (os.cpu_count() or 1) // replicas))
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((config.host, config.port))
    sock.listen(2048)
    sock.set_inheritable(True)
    host, port = sock.getsockname()[:2]
    print(f"ragfix serve: {replicas} replicas on http://{host}:{port}", flush=True)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_replica_main, args=(config, sock, i), name=f"ragfix-serve-{i}") for i in range(replicas)]
    for p in procs:
        p.start()

    def forward(sig: int, _frame: Any) -> None:
        for p in procs:
            if p.pid is not None and p.is_alive():
                os.kill(p.pid, sig)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        for p in procs:
            p.join()
    finally:
        sock.close()
    bad = [(p.name, p.exitcode) for p in procs if p.exitcode not in (0, None)]
    if bad:
        print(f"ragfix serve: replicas exited with errors: {bad}", file=sys.stderr, flush=True)
        return 1
    return 0
