"""A declared warm-prefix set for an OpenAI-compatible LLM server, kept warm with ``max_tokens=1`` requests.

Servers with a prompt cache (llama.cpp's ``cache_prompt`` and llama-cpp-python's ``--cache``, vLLM's
automatic prefix caching) skip the prefill of a prompt prefix they have seen recently, but give no
API to pin one: a system prompt or a hot document is cold again once other traffic evicts it. The
practical warmer is one minimal request per declared prefix (system prompt, tool schemas, hot
documents) at start and on an interval. :class:`PrefixWarmer` is that warmer, with its own counts.

A prefix here is a list of chat messages whose rendered prompt is the start of the real requests'
prompts: e.g. ``[system, user: "Passages:\\n[1] <hot document>"]`` is a prefix of every answer
prompt (:func:`generate.prompt.build_messages`) that ranks that document first. The chat template
closes the last message, so the shared tokens stop at the end of its text.

Hit counts come from the server itself, in whatever form it reports them
(:func:`cached_tokens_of`): ``usage.prompt_tokens_details.cached_tokens`` (vLLM with
``--enable-prompt-tokens-details``, OpenAI) or ``timings.cache_n`` / ``timings.prompt_n`` (llama.cpp's
C++ ``llama-server``). llama-cpp-python's server reports neither in its responses; its verbose log
does (``Llama.generate: N prefix-match hit, remaining M prompt tokens to eval``), and
:class:`LlamaCppLogCounters` reads that log when the harness owns the server process
(:mod:`generate.llama_server`).

Standard library only (``urllib``), like :mod:`generate.openai_compat`.
"""
from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Sequence

__all__ = ["WarmPrefix", "PrefixWarmer", "WarmStats", "LlamaCppLogCounters", "cached_tokens_of"]


@dataclass(frozen=True)
class WarmPrefix:
    """A named prompt prefix: the chat messages a warm request sends (``max_tokens=1``)."""

    name: str
    messages: tuple

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("WarmPrefix: name is empty; give each declared prefix a name")
        if not self.messages:
            raise ValueError(f"WarmPrefix {self.name!r}: no messages; a prefix is at least a system message")
        for i, m in enumerate(self.messages):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
                raise ValueError(f"WarmPrefix {self.name!r}: messages[{i}] must be {{'role': str, 'content': str}}, got {m!r}")


def cached_tokens_of(doc: dict) -> tuple[int | None, int | None]:
    """(cached prompt tokens, prompt tokens) as the server reported them in a completion body; None where absent.

    Reads ``usage.prompt_tokens_details.cached_tokens`` (vLLM, OpenAI) and llama.cpp's
    ``timings.cache_n`` (tokens reused) with ``timings.prompt_n`` (tokens evaluated).
    """
    usage = doc.get("usage") or {}
    prompt = usage.get("prompt_tokens")
    details = usage.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens")
    timings = doc.get("timings") or {}
    if cached is None and "cache_n" in timings:
        cached = timings.get("cache_n")
        if prompt is None and "prompt_n" in timings:
            prompt = int(timings["prompt_n"]) + int(cached or 0)
    return (None if cached is None else int(cached)), (None if prompt is None else int(prompt))


@dataclass
class WarmStats:
    """What the warmer did: per prefix, warm requests sent, failed, seconds spent, and server-reported tokens."""

    sent: dict = field(default_factory=dict)
    failed: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    cached_tokens: int = 0     # server-reported reused prompt tokens (0 when the server reports none)
    prompt_tokens: int = 0     # server-reported prompt tokens of the requests that reported cached tokens
    reported: int = 0          # warm requests whose response carried a cached-token count
    all_prompt_tokens: int = 0  # prompt tokens of every warm request (from usage)
    last_error: str | None = None
    rounds: int = 0


class PrefixWarmer:
    """``PrefixWarmer(base_url, model, prefixes, interval_s=60).start()``: warm every prefix now, then every ``interval_s``.

    Args:
        base_url: the server's API root, e.g. ``http://127.0.0.1:8000/v1``.
        model: the model name the server expects.
        prefixes: the declared :class:`WarmPrefix` set.
        interval_s: seconds between rounds (re-warm after other traffic may have evicted them).
        api_key: bearer token for the server, if it needs one.
        timeout: seconds per warm request.

    A failed warm request is counted (``stats.failed``, ``stats.last_error``) and never raised from
    the background thread: a cold prefix costs latency, not correctness. :meth:`warm_once` raises
    nothing either; it returns the round's per-prefix outcome.
    """

    def __init__(self, base_url: str, model: str, prefixes: Sequence[WarmPrefix], interval_s: float = 60.0,
                 api_key: str | None = None, timeout: float = 60.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"PrefixWarmer: base_url must start with http:// or https://, got {base_url!r}")
        if interval_s <= 0:
            raise ValueError(f"PrefixWarmer: interval_s must be > 0, got {interval_s}")
        names = [p.name for p in prefixes]
        if len(set(names)) != len(names):
            raise ValueError(f"PrefixWarmer: prefix names must be unique, got {names}")
        self.base_url, self.model, self.prefixes = base_url.rstrip("/"), model, list(prefixes)
        self.interval_s, self.api_key, self.timeout = interval_s, api_key, timeout
        self.stats = WarmStats()
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _post(self, messages: Sequence[dict]) -> dict:
        body = json.dumps({"model": self.model, "messages": list(messages), "max_tokens": 1, "temperature": 0.0,
                           "cache_prompt": True}).encode()  # cache_prompt: llama.cpp's server keeps the prompt's KV cache
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(f"{self.base_url}/chat/completions", data=body, headers=headers, method="POST")
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            return json.loads(resp.read())

    def warm(self, prefix: WarmPrefix) -> float | None:
        """One warm request for ``prefix``; returns its seconds, or None when it failed (counted in ``stats``)."""
        t0 = time.perf_counter()
        try:
            doc = self._post(prefix.messages)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            with self.lock:
                self.stats.failed[prefix.name] = self.stats.failed.get(prefix.name, 0) + 1
                self.stats.last_error = f"{prefix.name}: {type(exc).__name__}: {exc}"
            return None
        dt = time.perf_counter() - t0
        cached, prompt = cached_tokens_of(doc if isinstance(doc, dict) else {})
        with self.lock:
            s = self.stats
            s.sent[prefix.name] = s.sent.get(prefix.name, 0) + 1
            s.seconds[prefix.name] = s.seconds.get(prefix.name, 0.0) + dt
            if isinstance(doc, dict):
                s.all_prompt_tokens += int((doc.get("usage") or {}).get("prompt_tokens") or 0)
            if cached is not None:
                s.reported += 1
                s.cached_tokens += cached
                s.prompt_tokens += prompt or 0
        return dt

    def warm_once(self) -> dict[str, float | None]:
        """One round over every declared prefix; name -> seconds (None: failed)."""
        out = {p.name: self.warm(p) for p in self.prefixes}
        with self.lock:
            self.stats.rounds += 1
        return out

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.warm_once()
            self._stop.wait(self.interval_s)

    def start(self) -> "PrefixWarmer":
        """Warm now and every ``interval_s`` on a daemon thread until :meth:`stop`."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="ragfix-prefix-warmer", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


_PREFIX_HIT = re.compile(r"Llama\.generate: (\d+) prefix-match hit, remaining (\d+) prompt tokens to eval")


class LlamaCppLogCounters:
    """Prompt-cache counters from llama-cpp-python's verbose server log (its own numbers; responses carry none).

    ``feed(line)`` for every log line. Counted: ``cached_tokens`` (the ``N`` of ``N prefix-match
    hit``: prompt tokens whose KV cache was reused), ``evaluated_tokens`` (the ``M`` remaining to
    evaluate), ``state_hits`` / ``state_misses`` (``Llama._create_completion: cache hit`` / ``miss``:
    a saved state restored from ``--cache``). A request with no prefix-match line reused nothing
    and evaluated its whole prompt, which the log does not count: the hit rate is ``cached_tokens``
    over the prompt tokens of the responses' ``usage``. ``snapshot()`` returns a copy to diff around a request.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cached_tokens = 0
        self.evaluated_tokens = 0
        self.prefix_hits = 0
        self.state_hits = 0
        self.state_misses = 0
        self.lines = 0

    def feed(self, line: str) -> None:
        m = _PREFIX_HIT.search(line)
        with self.lock:
            self.lines += 1
            if m:
                self.prefix_hits += 1
                self.cached_tokens += int(m.group(1))
                self.evaluated_tokens += int(m.group(2))
            elif "Llama._create_completion: cache hit" in line:
                self.state_hits += 1
            elif "Llama._create_completion: cache miss" in line:
                self.state_misses += 1

    def snapshot(self) -> dict:
        with self.lock:
            return {"cached_tokens": self.cached_tokens, "evaluated_tokens": self.evaluated_tokens, "prefix_hits": self.prefix_hits,
                    "state_hits": self.state_hits, "state_misses": self.state_misses}

    @staticmethod
    def diff(after: dict, before: dict) -> dict:
        return {k: after[k] - before.get(k, 0) for k in after}
