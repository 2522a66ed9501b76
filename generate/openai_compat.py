"""An LLM backend for any OpenAI-compatible ``/chat/completions`` server (vLLM, llama.cpp server, hosted APIs).

Serves the same :class:`generate.backends.LLMBackend` protocol as :class:`TransformersBackend`, so the
LLM judge and the pipeline can call a remote model by configuration. Standard library only
(``urllib``): nothing to install. Tokens are the server's own ``usage`` counts, which is what an API
bills, so the attribution ledger (:mod:`distill.ledger`) prices them exactly.

Timing: without ``on_token``, one non-streaming request, so the server's prefill and decode cannot
be told apart; the whole wall time is reported as ``prefill_s`` and ``decode_s`` is 0. With
``on_token`` the request streams (server-sent events, ``stream: true``): each content delta is handed
to ``on_token`` as it arrives, ``prefill_s`` is the time to the first delta (TTFT) and ``decode_s``
the rest. Leaves out: tool calls, retries with back-off (a failed call raises; the caller decides).

Example::

    llm = OpenAICompatBackend("http://127.0.0.1:8000/v1", model="HuggingFaceTB/SmolLM2-135M-Instruct",
                              api_key_env=None)
    g = llm.generate([{"role": "user", "content": "Say yes."}], max_new_tokens=4)
    g.text, g.prompt_tokens, g.completion_tokens
"""
from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request

from generate.backends import Generation, Messages, OnToken, _check_messages

__all__ = ["OpenAICompatBackend", "OpenAICompatError"]


class OpenAICompatError(RuntimeError):
    """The server answered with an HTTP error or a body that is not a chat completion."""


class OpenAICompatBackend:
    """``generate(messages, max_new_tokens) -> Generation`` over HTTP.

    Args:
        base_url: the API root, e.g. ``https://api.openai.com/v1`` or ``http://127.0.0.1:8000/v1``.
        model: the model name the server expects.
        api_key_env: name of the environment variable holding the key (sent as a Bearer token);
            ``None`` for servers without authentication. A named but unset variable is an error.
        timeout: seconds per request.
        name: the name recorded in :class:`Generation` and the ledger (default: ``model``).
        temperature: sampling temperature (0 = greedy, as a judge should be).
    """

    def __init__(self, base_url: str, model: str, api_key_env: str | None = "OPENAI_API_KEY", timeout: float = 60.0,
                 name: str | None = None, temperature: float = 0.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if not model:
            raise ValueError("model must name the server's model, got an empty string")
        self.base_url, self.model, self.timeout, self.temperature = base_url.rstrip("/"), model, timeout, temperature
        self.name = name or model
        # Server-reported prompt-cache counts over this backend's requests (where the server reports them:
        # usage.prompt_tokens_details.cached_tokens, llama.cpp's timings.cache_n); see generate.warm_prefix.
        self.cache_totals = {"requests": 0, "all_prompt_tokens": 0, "reported": 0, "prompt_tokens": 0, "cached_tokens": 0}
        self._totals_lock = threading.Lock()
        self._key = None
        if api_key_env is not None:
            self._key = os.environ.get(api_key_env)
            if not self._key:
                raise ValueError(f"environment variable {api_key_env} is not set; export the API key there, "
                                 "or pass api_key_env=None for a server without authentication")

    def count_tokens(self, text: str) -> int:
        """Rough estimate (4 characters per token); billed counts come from the server's ``usage``."""
        return max(1, round(len(text) / 4))

    def generate(self, messages: Messages | str, max_new_tokens: int = 64, on_token: OnToken | None = None) -> Generation:
        """One chat completion; with ``on_token`` it streams (see the module docstring for the timing).

        Raises :class:`OpenAICompatError` on an HTTP error, a refused connection or a body that is
        not a chat completion (or, streaming, an event that is not a chunk).
        """
        _check_messages(messages)
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        msgs = [{"role": "user", "content": messages}] if isinstance(messages, str) else list(messages)
        payload: dict = {"model": self.model, "messages": msgs, "max_tokens": max_new_tokens, "temperature": self.temperature}
        if on_token is not None:
            payload.update(stream=True, stream_options={"include_usage": True})
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        url = f"{self.base_url}/chat/completions"
        req = urllib.request.Request(url, data=body, headers=headers, method="POST")
        t0 = time.perf_counter()
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                if on_token is not None:
                    return self._read_stream(resp, url, msgs, t0, on_token)
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode("utf-8", "replace")
            raise OpenAICompatError(f"{url}: HTTP {exc.code} {exc.reason}: {detail}") from None
        except urllib.error.URLError as exc:
            raise OpenAICompatError(f"{url}: cannot connect ({exc.reason})") from None
        wall = time.perf_counter() - t0
        try:
            doc = json.loads(raw)
            text = doc["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError):
            raise OpenAICompatError(f"{url}: not a chat completion: {raw[:200]!r}") from None
        self._count(doc)
        usage = doc.get("usage") or {}
        tin = usage.get("prompt_tokens")
        tout = usage.get("completion_tokens")
        if tin is None:  # subtle: some servers omit usage; estimate rather than bill zero tokens
            tin = sum(self.count_tokens(str(m.get("content", ""))) for m in msgs)
        if tout is None:
            tout = self.count_tokens(text) if text else 0
        return Generation(text.strip(), int(tin), int(tout), wall, 0.0, self.name)

    def _read_stream(self, resp, url: str, msgs: list, t0: float, on_token: OnToken) -> Generation:
        """Read ``data: {chunk}`` events until ``data: [DONE]``; deltas go to ``on_token``."""
        parts: list[str] = []
        usage: dict = {}
        timings: dict = {}
        t_first: float | None = None
        for raw_line in resp:
            line = raw_line.decode("utf-8", "replace").strip()
            if not line.startswith("data:"):
                continue  # blank separators, comments (": ping"), event names
            data = line[5:].strip()
            if data == "[DONE]":
                break
            try:
                chunk = json.loads(data)
            except ValueError:
                raise OpenAICompatError(f"{url}: stream event is not JSON: {data[:200]!r}") from None
            if not isinstance(chunk, dict):
                raise OpenAICompatError(f"{url}: stream event is not a chunk object: {data[:200]!r}")
            if "error" in chunk:
                raise OpenAICompatError(f"{url}: server error in stream: {str(chunk['error'])[:300]}")
            usage = chunk.get("usage") or usage
            timings = chunk.get("timings") or timings
            for choice in chunk.get("choices") or []:
                delta = ((choice or {}).get("delta") or {}).get("content") or ""
                if not delta:
                    continue
                if t_first is None:
                    t_first = time.perf_counter()
                    delta = delta.lstrip()
                    if not delta:
                        t_first = None
                        continue
                parts.append(delta)
                on_token(delta)
        t_end = time.perf_counter()
        self._count({"usage": usage, "timings": timings})
        text = "".join(parts)
        tin, tout = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if tin is None:
            tin = sum(self.count_tokens(str(m.get("content", ""))) for m in msgs)
        if tout is None:
            tout = self.count_tokens(text) if text else 0
        first = t_first if t_first is not None else t_end
        return Generation(text.strip(), int(tin), int(tout), first - t0, t_end - first, self.name)

    def _count(self, doc: dict) -> None:
        """Add one response's server-reported cached/prompt tokens to ``cache_totals``."""
        from generate.warm_prefix import cached_tokens_of

        cached, prompt = cached_tokens_of(doc)
        with self._totals_lock:
            t = self.cache_totals
            t["requests"] += 1
            t["all_prompt_tokens"] += int((doc.get("usage") or {}).get("prompt_tokens") or 0)
            if cached is not None:
                t["reported"] += 1
                t["cached_tokens"] += cached
                t["prompt_tokens"] += prompt or 0
