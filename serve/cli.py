"""``ragfix serve``: parse flags, read ``--config``, start :func:`serve.server.run` (parsing only here).

Registered by ``bench.cli`` through its ``COMMAND_MODULES`` list by name, so bench does not import
serve (they are independent siblings in the layers contract).
"""
from __future__ import annotations

import argparse
import sys

__all__ = ["add_parser", "main"]


def _overrides(args: argparse.Namespace) -> dict:
    keys = ("host", "port", "model", "backend", "token_budget", "max_queue", "deadline_ms", "max_wait_ms", "max_body_bytes",
            "token_env", "torch_threads", "drain_timeout_s", "naive_threads",
            "answer_llm", "answer_llm_url", "answer_llm_server", "answer_corpus", "answer_corpus_limit", "answer_retriever", "answer_max_tokens",
            "faithfulness_model", "intent_model")
    out = {k: getattr(args, k) for k in keys}
    for switch in ("answer", "retrieve", "faithfulness", "intent"):
        if getattr(args, switch):
            out[switch] = True
    if args.naive:
        out.update(microbatch=False, max_queue=0, deadline_ms=0)
    if args.allow_public_bind:
        out["allow_public_bind"] = True
    return out


def _cmd(args: argparse.Namespace) -> int:
    from serve.config import ServeConfigError, load_config
    from serve.server import run

    try:
        config = load_config(args.config, _overrides(args))
        config.bearer_token()
    except ServeConfigError as exc:
        print(f"ragfix serve: error: {exc}", file=sys.stderr)
        return 2
    if args.replicas > 1:
        from serve.replicas import run_replicas

        return run_replicas(config, args.replicas)
    return run(config)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``ragfix serve`` to ``sub``; flags override the ``--config`` YAML (docs/serve.md)."""
    p = sub.add_parser("serve", help="serve the reranker and the pipeline over HTTP (/v1/rerank, /v1/answer, /healthz, /readyz, /metrics) with backpressure")
    p.add_argument("--config", default=None, help="YAML settings (e.g. configs/serve.yaml); flags override it")
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1; others need allow_public_bind and a token)")
    p.add_argument("--port", type=int, default=None, help="TCP port (default 8080; 0 picks a free one)")
    p.add_argument("--model", default=None, help="registry name (configs/models.yaml) or cross-encoder folder (default reranker-l6)")
    from rerank.backends import BACKENDS

    p.add_argument("--backend", default=None, choices=list(BACKENDS))
    p.add_argument("--token-budget", type=int, default=None, help="padded tokens per forward pass")
    p.add_argument("--max-queue", type=int, default=None, help="requests admitted at once; 429 beyond (0: unbounded)")
    p.add_argument("--deadline-ms", type=float, default=None, help="default per-request deadline (0: none)")
    p.add_argument("--max-wait-ms", type=float, default=None, help="micro-batcher wait for more requests")
    p.add_argument("--max-body-bytes", type=int, default=None, help="413 above this body size")
    p.add_argument("--token-env", default=None, help="environment variable holding the bearer token")
    p.add_argument("--torch-threads", type=int, default=None)
    p.add_argument("--drain-timeout-s", type=float, default=None, help="SIGTERM: longest wait for in-flight requests")
    p.add_argument("--naive-threads", type=int, default=None, help="with --naive: scoring threads of the per-request pool")
    p.add_argument("--naive", action="store_true", help="the baseline: per-request scoring, unbounded queue, no deadline")
    p.add_argument("--replicas", type=int, default=1, choices=range(1, 65), metavar="N",
                   help="server processes sharing the port, each with its own model and micro-batcher (docs/scale-out.md)")
    p.add_argument("--allow-public-bind", action="store_true", help="allow a non-loopback --host (needs --token-env)")
    p.add_argument("--answer", action="store_true", help="also serve /v1/answer (the whole pipeline; the answer_* settings)")
    p.add_argument("--answer-llm", default=None, help="registry LLM (default smollm2), or the model name at --answer-llm-url")
    p.add_argument("--answer-llm-url", default=None, help="OpenAI-compatible base URL for the generator (llama.cpp, vLLM)")
    p.add_argument("--answer-llm-server", default=None, choices=["llama-cpp"],
                   help="launch llama-cpp-python's server with the GGUF of --answer-llm on a free loopback port and answer through it")
    p.add_argument("--answer-corpus", default=None, help="documents JSONL, BEIR folder or data set name (default scifact)")
    p.add_argument("--answer-corpus-limit", type=int, default=None, help="index only the first N documents")
    p.add_argument("--answer-retriever", default=None, choices=["hybrid", "bm25", "dense"])
    p.add_argument("--retrieve", action="store_true", help="also serve /v1/retrieve (the first stage over --answer-corpus)")
    p.add_argument("--faithfulness", action="store_true", help="also serve /v1/score/faithfulness (the faithfulness specialist)")
    p.add_argument("--faithfulness-model", default=None, help="registry faithfulness model or folder (default faithfulness)")
    p.add_argument("--intent", action="store_true", help="also serve /v1/classify/intent (the CLINC150 intent specialist)")
    p.add_argument("--intent-model", default=None, help="intent model folder (default models/intent-clinc150)")
    p.add_argument("--answer-max-tokens", type=int, default=None, help="answer length cap")
    p.set_defaults(func=_cmd)


def main(argv: list[str] | None = None) -> int:
    """``python -m serve ...``: the same flags as ``ragfix serve``."""
    parser = argparse.ArgumentParser(prog="python -m serve")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    args = parser.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args) or 0)
