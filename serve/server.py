"""Run the app under uvicorn: load the reranker, bind (loopback by default), drain on SIGTERM.

SIGTERM (or SIGINT) starts a drain instead of an immediate stop: ``/readyz`` turns 503 so a load
balancer stops routing here, new ``/v1`` requests get ``503`` with ``Retry-After`` and
``Connection: close``, and requests already admitted run to completion (up to
``drain_timeout_s``); then uvicorn stops. A second signal exits at once.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from serve.app import MicroBatchScorer, PerRequestScorer, Scorer, ServeState, create_app
from serve.config import ServeConfig

__all__ = ["build_scorer", "build_engine", "run"]

log = logging.getLogger("ragfix.serve")


def build_engine(config: ServeConfig) -> Any:
    """A :class:`rerank.engine.RerankEngine` for ``config.model``: a folder, else a registry name.

    Raises ``registry.UnknownModelError`` (a ``ValueError``) for a name neither a folder nor registered.
    """
    import torch

    from rerank.engine import RerankEngine

    torch.set_num_threads(config.torch_threads or os.cpu_count() or 1)
    if Path(config.model).is_dir():
        model: Any = config.model
    else:
        from registry import load_cross_encoder

        ce = load_cross_encoder(config.model)
        model = getattr(ce, "model", ce)
    return RerankEngine(model, config.backend, max_tokens_per_batch=config.token_budget, max_doc_tokens=config.max_doc_tokens)


def build_scorer(config: ServeConfig) -> Scorer:
    """The fixed scorer (micro-batching) or, with ``microbatch: false``, the naive per-request one."""
    engine = build_engine(config)
    if config.microbatch:
        return MicroBatchScorer(engine, config.max_wait_ms, config.max_batch_tokens)
    return PerRequestScorer(engine, config.naive_threads)


class _DrainingServer:
    """uvicorn.Server whose exit signal drains admitted requests before stopping."""

    def __new__(cls, uv_config: Any, state: ServeState, drain_timeout_s: float):
        import uvicorn

        class Server(uvicorn.Server):
            def handle_exit(self, sig: int, frame: Any) -> None:
                if state.draining:  # second signal: stop now
                    self.force_exit = True
                    self.should_exit = True
                    return
                state.draining = True
                log.warning("ragfix serve: signal %s, draining %d in-flight requests (up to %.0f s)", sig, state.inflight, drain_timeout_s)
                threading.Thread(target=self._drain, name="ragfix-serve-drain", daemon=True).start()

            async def startup(self, sockets: Any = None) -> None:
                await super().startup(sockets=sockets)
                for srv in getattr(self, "servers", []):
                    for sock in srv.sockets:
                        host, port = sock.getsockname()[:2]
                        print(f"ragfix serve: listening on http://{host}:{port}", flush=True)

            def _drain(self) -> None:
                state.idle.wait(drain_timeout_s)
                time.sleep(0.05)  # let the last handlers hand their responses to the transport
                self.should_exit = True

        return Server(uv_config)


def run(config: ServeConfig) -> int:
    """Serve until SIGTERM/SIGINT; returns 0 after a clean drain."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    state = ServeState()
    app = create_app(config, build_scorer, state)
    uv = uvicorn.Config(app, host=config.host, port=config.port, log_level="warning", access_log=False,
                        timeout_graceful_shutdown=max(1, int(config.drain_timeout_s)), server_header=False)
    server = _DrainingServer(uv, state, config.drain_timeout_s)
    server.run()
    return 0
