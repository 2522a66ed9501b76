"""generate.warm_prefix: the warmer sends one max_tokens=1 request per declared prefix per round, re-warms on its
interval, counts failures without raising, and reads the server's own cached-token counts; the log counters parse
llama-cpp-python's lines; bench.benchmarks.bench_warm_prefix.bootstrap_ci."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest

from generate.warm_prefix import LlamaCppLogCounters, PrefixWarmer, WarmPrefix, cached_tokens_of


class _PromptCacheServer(BaseHTTPRequestHandler):
    """A chat-completions endpoint with a real (tiny) prompt cache: a system prompt seen before is reported cached."""

    seen: set = set()
    bodies: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _PromptCacheServer.bodies.append(body)
        if body["messages"][0]["content"] == "refuse":
            self.send_response(503)
            self.end_headers()
            return
        sys_prompt = body["messages"][0]["content"]
        n = sum(len(m["content"].split()) for m in body["messages"])
        cached = len(sys_prompt.split()) if sys_prompt in self.seen else 0
        self.seen.add(sys_prompt)
        out = {"choices": [{"message": {"role": "assistant", "content": "x"}}],
               "usage": {"prompt_tokens": n, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": cached}}}
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


@pytest.fixture()
def url():
    _PromptCacheServer.seen, _PromptCacheServer.bodies = set(), []
    srv = HTTPServer(("127.0.0.1", 0), _PromptCacheServer)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()
    srv.server_close()


def _prefix(name: str, system: str) -> WarmPrefix:
    return WarmPrefix(name, ({"role": "system", "content": system}, {"role": "user", "content": "Passages:\n[1] hot document"}))


def test_rounds_on_the_interval_and_server_reported_hits(url):
    w = PrefixWarmer(url, "tiny", [_prefix("sys", "you answer from passages"), _prefix("hot", "other system prompt here")], interval_s=0.05)
    w.start()
    t_end = time.monotonic() + 10
    while w.stats.rounds < 3 and time.monotonic() < t_end:
        time.sleep(0.01)
    w.stop()
    assert w.stats.rounds >= 3 and w.stats.sent["sys"] >= 3 and w.stats.sent["hot"] >= 3 and not w.stats.failed
    assert all(b["max_tokens"] == 1 and b["temperature"] == 0.0 for b in _PromptCacheServer.bodies)
    # round 1 cold (0 cached), every later round hits: 4 + 4 words cached per round after the first
    assert w.stats.reported == w.stats.sent["sys"] + w.stats.sent["hot"]
    assert w.stats.cached_tokens == 4 * (w.stats.sent["sys"] - 1) + 4 * (w.stats.sent["hot"] - 1)
    assert 0 < w.stats.cached_tokens < w.stats.prompt_tokens


def test_failures_are_counted_not_raised(url):
    w = PrefixWarmer(url, "tiny", [_prefix("bad", "refuse"), _prefix("ok", "fine prompt")])
    out = w.warm_once()
    assert out["bad"] is None and out["ok"] is not None
    assert w.stats.failed == {"bad": 1} and "503" in (w.stats.last_error or "") and w.stats.sent == {"ok": 1}
    dead = PrefixWarmer("http://127.0.0.1:9/v1", "tiny", [_prefix("p", "s")], timeout=2)
    assert dead.warm_once() == {"p": None} and dead.stats.failed == {"p": 1}


def test_declarations_are_checked():
    with pytest.raises(ValueError, match="unique"):
        PrefixWarmer("http://127.0.0.1:1/v1", "m", [_prefix("a", "x"), _prefix("a", "y")])
    with pytest.raises(ValueError, match="interval_s"):
        PrefixWarmer("http://127.0.0.1:1/v1", "m", [], interval_s=0)
    with pytest.raises(ValueError, match="messages\\[0\\]"):
        WarmPrefix("p", ({"role": "system"},))


def test_cached_tokens_of_reads_vllm_and_llama_cpp_shapes():
    assert cached_tokens_of({"usage": {"prompt_tokens": 50, "prompt_tokens_details": {"cached_tokens": 32}}}) == (32, 50)
    assert cached_tokens_of({"timings": {"cache_n": 40, "prompt_n": 10}}) == (40, 50)
    assert cached_tokens_of({"usage": {"prompt_tokens": 7}}) == (None, 7)


def test_llama_cpp_log_counters():
    c = LlamaCppLogCounters()
    before = c.snapshot()
    for line in ["Llama._create_completion: cache hit\n", "Llama.generate: 412 prefix-match hit, remaining 37 prompt tokens to eval\n",
                 "llama_perf_context_print: load time = 1.0 ms\n", "Llama._create_completion: cache miss\n"]:
        c.feed(line)
    d = c.diff(c.snapshot(), before)
    assert d == {"cached_tokens": 412, "evaluated_tokens": 37, "prefix_hits": 1, "state_hits": 1, "state_misses": 1}


def test_bootstrap_ci_brackets_the_mean():
    from bench.benchmarks.bench_warm_prefix import bootstrap_ci

    rng = np.random.default_rng(1)
    d = rng.normal(100.0, 20.0, size=40)
    lo, hi = bootstrap_ci(d)
    assert lo < d.mean() < hi and hi - lo < 25
    assert bootstrap_ci(np.full(5, 7.0)) == (7.0, 7.0)
    with pytest.raises(ValueError, match="at least 2"):
        bootstrap_ci(np.array([1.0]))
