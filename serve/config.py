"""Server settings: one dataclass, read from a YAML file and overridden by command-line flags.

Unknown keys and out-of-range values are refused with the file, the key and what to do
(:class:`ServeConfigError`, a ``ValueError``: ``ragfix serve`` exits 2 on it). The reference of
every key is ``docs/serve.md``.
"""
from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

__all__ = ["ServeConfig", "ServeConfigError", "load_config"]


class ServeConfigError(ValueError):
    """A serve setting is unknown or out of range; the message names it and the fix."""


@dataclass
class ServeConfig:
    """Every server setting, with the defaults of the *fixed* server (see docs/serve.md)."""

    host: str = "127.0.0.1"
    port: int = 8080
    model: str = "reranker-l6"          # registry name (configs/models.yaml) or a cross-encoder folder
    backend: str = "fp32"               # rerank.backends.BACKENDS
    token_budget: int = 8192            # padded tokens per forward pass (RerankEngine.max_tokens_per_batch)
    max_doc_tokens: int | None = None   # document tokens kept per pair (None: all that fit)
    torch_threads: int | None = None    # None: every core
    microbatch: bool = True             # cross-request batching (rerank.microbatch.MicroBatcher)
    naive_threads: int = 2              # microbatch: false -> scoring threads of the per-request pool
    max_wait_ms: float = 2.0            # micro-batcher wait for more requests after the first
    max_batch_tokens: int = 16384       # micro-batcher: padded tokens gathered before it stops waiting
    max_queue: int = 64                 # requests admitted at once (queued + scoring); 0 = unbounded
    deadline_ms: float = 10000.0        # default per-request deadline; 0 = none
    retry_after_s: int = 1              # floor of the Retry-After header on 429 / 503
    max_body_bytes: int = 1_000_000     # 413 above this
    max_documents: int = 1000           # 413 above this many documents in one request
    max_text_chars: int = 20000         # 413 when the query or a document is longer
    token: str | None = None            # bearer token; None: no authentication
    token_env: str | None = None        # read the bearer token from this environment variable instead
    drain_timeout_s: float = 30.0       # SIGTERM: longest wait for in-flight requests before exiting
    allow_public_bind: bool = False     # a host other than loopback needs this set (and a token)
    # /v1/answer: the product pipeline (retrieve -> fused rerank -> generate); off unless answer: true
    answer: bool = False                # load the pipeline at start and serve /v1/answer
    answer_llm: str = "smollm2"         # registry LLM name; with answer_llm_url, the model name that server expects
    answer_llm_url: str | None = None   # an OpenAI-compatible base URL (llama.cpp server, vLLM), e.g. http://127.0.0.1:8000/v1
    answer_llm_key_env: str | None = None  # environment variable holding that server's API key (None: no auth)
    answer_llm_server: str | None = None  # "llama-cpp": launch llama-cpp-python's server with answer_llm's GGUF on a free loopback port
    answer_corpus: str = "scifact"      # documents JSONL, a BEIR folder, or a data set name under $RAGFIX_DATA
    answer_corpus_limit: int | None = None  # index only the first N documents (None: all)
    answer_retriever: str = "hybrid"    # hybrid (BM25 + dense, the measured configuration) | bm25 | dense
    answer_embedder: str = "minilm"     # registry embedder of the hybrid's dense half
    answer_retrieve_k: int = 100        # first-stage candidates the rerank stage scores
    answer_context_k: int = 3           # passages given to the LLM
    answer_max_tokens: int = 64         # answer length cap (a request's max_tokens may only lower it)
    answer_workers: int = 1             # answers generated at once
    # Warm prefixes (with answer_llm_url): declared prompt prefixes kept warm in the LLM server's prompt cache
    warm_prefixes: list | None = None   # [{name, system (default: the pipeline's system prompt), documents: [ids in answer_corpus]}]
    warm_interval_s: float = 60.0       # seconds between warm rounds (each prefix: one max_tokens=1 request)
    # /v1/retrieve, /v1/score/faithfulness, /v1/classify/intent (serve.specialists); each off unless switched on
    retrieve: bool = False              # serve /v1/retrieve: the first stage over answer_corpus (the answer pipeline's own with answer: true)
    retrieve_max_k: int = 100           # largest top_k a /v1/retrieve request may ask for (422 above)
    faithfulness: bool = False          # load faithfulness_model and serve /v1/score/faithfulness
    faithfulness_model: str = "faithfulness"  # registry name (kind faithfulness) or a model folder
    faithfulness_threshold: float | None = None  # P(supported) at or above which an item is "supported" (None: the model's own)
    intent: bool = False                # load intent_model and serve /v1/classify/intent
    intent_model: str = "models/intent-clinc150"  # an intent model folder (ragfix train intent); relative: under the project root
    max_items: int = 256                # 413 above this many items (faithfulness) or texts (intent) in one request
    max_batch_items: int = 64           # specialist micro-batcher: items gathered before it stops waiting (max_wait_ms)

    def check(self, source: str = "settings") -> "ServeConfig":
        """Raise :class:`ServeConfigError` naming ``source`` and the key when a value is out of range."""
        def bad(key: str, why: str) -> ServeConfigError:
            return ServeConfigError(f"{source}: {key}={getattr(self, key)!r} {why}")

        for key in ("port",):
            if not 0 <= int(getattr(self, key)) <= 65535:
                raise bad(key, "must be a TCP port 0..65535 (0 picks a free one)")
        for key in ("token_budget", "naive_threads", "max_batch_tokens", "max_body_bytes", "max_documents", "max_text_chars", "retry_after_s",
                    "answer_retrieve_k", "answer_context_k", "answer_max_tokens", "answer_workers",
                    "retrieve_max_k", "max_items", "max_batch_items"):
            if int(getattr(self, key)) < 1:
                raise bad(key, "must be >= 1")
        for key in ("max_queue",):
            if int(getattr(self, key)) < 0:
                raise bad(key, "must be >= 0 (0 means unbounded)")
        for key in ("max_wait_ms", "deadline_ms", "drain_timeout_s"):
            if float(getattr(self, key)) < 0:
                raise bad(key, "must be >= 0")
        from rerank.backends import BACKENDS

        if self.backend not in BACKENDS:
            raise bad("backend", f"is not one of {', '.join(BACKENDS)}")
        if self.torch_threads is not None and int(self.torch_threads) < 1:
            raise bad("torch_threads", "must be >= 1 or null (every core)")
        if self.max_doc_tokens is not None and int(self.max_doc_tokens) < 1:
            raise bad("max_doc_tokens", "must be >= 1 or null (all that fit)")
        if self.answer_corpus_limit is not None and int(self.answer_corpus_limit) < 1:
            raise bad("answer_corpus_limit", "must be >= 1 or null (the whole corpus)")
        if self.answer_retriever not in ("hybrid", "bm25", "dense"):
            raise bad("answer_retriever", "is not one of hybrid, bm25, dense")
        if self.faithfulness_threshold is not None and not 0.0 < float(self.faithfulness_threshold) < 1.0:
            raise bad("faithfulness_threshold", "must be in (0, 1), or null (the model's own threshold)")
        if self.faithfulness:
            from registry import Registry

            try:
                Registry().resolve(self.faithfulness_model, "faithfulness")
            except (ValueError, FileNotFoundError) as exc:
                raise bad("faithfulness_model", f"cannot be loaded ({exc}); name a registry faithfulness model "
                          "(configs/models.yaml, e.g. faithfulness) or a model folder") from None
        if self.intent:
            from serve.specialists import resolve_intent_model

            try:
                resolve_intent_model(self.intent_model)
            except FileNotFoundError as exc:
                raise ServeConfigError(f"{source}: {exc}") from None
        if self.answer_context_k > self.answer_retrieve_k:
            raise bad("answer_context_k", f"must be <= answer_retrieve_k ({self.answer_retrieve_k})")
        if self.answer_llm_server not in (None, "llama-cpp"):
            raise bad("answer_llm_server", "is not one of llama-cpp, null")
        if self.answer_llm_server and self.answer_llm_url:
            raise bad("answer_llm_server", "launches its own server; drop answer_llm_url (or drop answer_llm_server to use that URL)")
        if float(self.warm_interval_s) <= 0:
            raise bad("warm_interval_s", "must be > 0 seconds")
        if self.warm_prefixes:
            if not self.answer_llm_url and not self.answer_llm_server:
                raise bad("warm_prefixes", "needs answer_llm_url or answer_llm_server (an LLM server with a prompt cache); "
                          "the in-process LLM has none to warm")
            names = set()
            for i, e in enumerate(self.warm_prefixes):
                if not isinstance(e, dict) or not isinstance(e.get("name"), str) or not e["name"]:
                    raise ServeConfigError(f"{source}: warm_prefixes[{i}] must be a mapping with a non-empty 'name', got {e!r}")
                extra = set(e) - {"name", "system", "documents"}
                if extra:
                    raise ServeConfigError(f"{source}: warm_prefixes[{i}] has unknown keys {sorted(extra)}; allowed: name, system, documents")
                if "system" in e and not isinstance(e["system"], str):
                    raise ServeConfigError(f"{source}: warm_prefixes[{i}].system must be a string")
                docs = e.get("documents", [])
                if not isinstance(docs, list) or not all(isinstance(d, (str, int)) for d in docs):
                    raise ServeConfigError(f"{source}: warm_prefixes[{i}].documents must be a list of document ids")
                if e["name"] in names:
                    raise ServeConfigError(f"{source}: warm_prefixes[{i}].name {e['name']!r} is repeated; names must be unique")
                names.add(e["name"])
        if self.answer_llm_url is not None and not str(self.answer_llm_url).startswith(("http://", "https://")):
            raise bad("answer_llm_url", "must start with http:// or https:// (e.g. http://127.0.0.1:8000/v1), or be null (in-process LLM)")
        if not _is_loopback(self.host) and not self.allow_public_bind:
            raise bad("host", "is not a loopback address; set allow_public_bind: true (and a token) to listen beyond this machine")
        if not _is_loopback(self.host) and not self.bearer_token():
            raise bad("host", "is not a loopback address and no token is set; set token_env to an environment variable holding one")
        return self

    def bearer_token(self) -> str | None:
        """The bearer token: ``token``, else the environment variable named by ``token_env`` (None: no auth)."""
        import os

        if self.token:
            return self.token
        if self.token_env:
            value = os.environ.get(self.token_env)
            if not value:
                raise ServeConfigError(f"token_env={self.token_env!r}: that environment variable is unset or empty; export it or drop token_env")
            return value
        return None

    def public(self) -> dict:
        """The settings without the token (for logs and results files)."""
        d = dataclasses.asdict(self)
        d["token"] = "***" if self.token else None
        return d


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_TYPES = {f.name: f for f in fields(ServeConfig)}


def _coerce(key: str, value: Any, source: str) -> Any:
    default = _TYPES[key].default
    if value is None:
        return None
    if key == "warm_prefixes":
        if not isinstance(value, list):
            raise ServeConfigError(f"{source}: warm_prefixes must be a list of {{name, system, documents}} mappings, got {type(value).__name__}")
        return value
    try:
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "1", "yes", "on"):
                return True
            if str(value).lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError(value)
        if isinstance(default, int) or key in ("torch_threads", "max_doc_tokens", "answer_corpus_limit"):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if isinstance(default, float) or key == "faithfulness_threshold":
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ServeConfigError(f"{source}: {key}={value!r} is not a valid {type(default).__name__ if default is not None else 'value'}") from None


def load_config(path: Path | str | None = None, overrides: Mapping[str, Any] | None = None) -> ServeConfig:
    """Defaults, then the YAML mapping at ``path``, then ``overrides`` (``None`` values are skipped).

    Raises :class:`ServeConfigError` for a missing or malformed file, an unknown key (with the
    allowed ones) or an out-of-range value.
    """
    import yaml

    values: dict[str, Any] = {}
    source = "serve settings"
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise ServeConfigError(f"--config {p}: no such file; pass a YAML file such as configs/serve.yaml")
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ServeConfigError(f"{p}: not valid YAML ({exc}); fix the file") from None
        if not isinstance(raw, dict):
            raise ServeConfigError(f"{p}: must be a mapping of setting: value, got {type(raw).__name__}")
        raw = raw.get("serve", raw) if isinstance(raw.get("serve"), dict) else raw
        for key, value in raw.items():
            if key not in _TYPES:
                raise ServeConfigError(f"{p}: unknown setting {key!r}; allowed: {', '.join(_TYPES)}")
            values[key] = _coerce(key, value, str(p))
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in _TYPES:
            raise ServeConfigError(f"unknown setting {key!r}; allowed: {', '.join(_TYPES)}")
        values[key] = _coerce(key, value, f"--{key.replace('_', '-')}")
    return ServeConfig(**values).check(source)
