"""The OpenAI-compatible backend and the warm-prefix warmer against a real llama.cpp server (llama-cpp-python) on loopback.

Skips, saying why, when llama-cpp-python[server] is not installed (`make llama` builds it). The server
runs the packaged SmolLM2 GGUF on one CPU thread with its prompt-state cache on; hits are read from
the server's own log (its responses carry no cached-token count).
"""
from __future__ import annotations

import pytest

from generate.llama_server import llama_cpp_available

pytestmark = pytest.mark.skipif(not llama_cpp_available(),
                                reason="llama-cpp-python[server] is not installed (no wheel on the index; `make llama` compiles it)")

SYSTEM = "You answer the question using only the numbered passages. Answer in one short sentence and cite the passage like [1]."
PASSAGES = ("Passages:\n[1] Scurvy: Scurvy is a disease resulting from a lack of vitamin C (ascorbic acid). Early symptoms "
            "include weakness, feeling tired and sore arms and legs. Without treatment, decreased red blood cells, gum disease, "
            "changes to hair, and bleeding from the skin may occur.\n[2] Rickets: Rickets is a condition that results in weak "
            "or soft bones in children, caused by a lack of vitamin D or calcium.")


@pytest.fixture(scope="module")
def llama():
    from bench.benchmarks.bench_warm_prefix import smollm2_gguf
    from generate.llama_server import LlamaCppServer

    try:
        gguf = smollm2_gguf()
    except (ImportError, FileNotFoundError) as exc:
        pytest.skip(f"SmolLM2 GGUF not available: {exc}")
    srv = LlamaCppServer(gguf, alias="smollm2", threads=1, n_ctx=2048).start()
    yield srv
    assert srv.stop() is not None


def _messages(session: str, question: str) -> list[dict]:
    return [{"role": "system", "content": f"Session {session}. {SYSTEM}"},
            {"role": "user", "content": f"{PASSAGES}\n\nQuestion: {question}"}]


def test_backend_generates_and_streams(llama):
    from generate.openai_compat import OpenAICompatBackend

    llm = OpenAICompatBackend(llama.base_url, model="smollm2", api_key_env=None, timeout=120)
    msgs = _messages("000001", "What causes scurvy?")
    g = llm.generate(msgs, max_new_tokens=12)
    assert g.text and g.prompt_tokens > 50 and 1 <= g.completion_tokens <= 12
    deltas: list[str] = []
    s = llm.generate(msgs, max_new_tokens=12, on_token=deltas.append)
    assert len(deltas) >= 2 and "".join(deltas).strip() == s.text
    assert s.text == g.text  # greedy (temperature 0): the same answer streamed or not
    assert s.prefill_s > 0 and s.decode_s > 0


def test_warmed_prefix_is_reused_after_other_traffic(llama):
    """A declared prefix warmed with max_tokens=1 is served from the server's cache after an unrelated request
    replaced its live context; the same prompt with a never-warmed prefix is not (the server's own counts)."""
    from generate.openai_compat import OpenAICompatBackend
    from generate.warm_prefix import PrefixWarmer, WarmPrefix

    llm = OpenAICompatBackend(llama.base_url, model="smollm2", api_key_env=None, timeout=120)
    other = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say OK."}]

    def timed(msgs):
        llm.generate(other, max_new_tokens=1)
        before = llama.counters.snapshot()
        g = llm.generate(msgs, max_new_tokens=1)
        import time

        time.sleep(0.1)
        return g, llama.counters.diff(llama.counters.snapshot(), before)

    warm_msgs = _messages("123456", "What causes rickets?")
    warmer = PrefixWarmer(llama.base_url, "smollm2", [WarmPrefix("hot", (warm_msgs[0], {"role": "user", "content": PASSAGES}))])
    assert warmer.warm_once()["hot"] is not None and warmer.stats.sent == {"hot": 1}
    g_warm, warm = timed(warm_msgs)
    g_cold, cold = timed(_messages("654321", "What causes rickets?"))
    assert g_warm.prompt_tokens == g_cold.prompt_tokens
    assert warm["state_hits"] == 1 and warm["cached_tokens"] >= 0.8 * g_warm.prompt_tokens, (warm, g_warm.prompt_tokens)
    assert cold["cached_tokens"] < 0.1 * g_cold.prompt_tokens, (cold, g_cold.prompt_tokens)


def test_serve_answers_through_a_launched_llama_server_with_warm_prefixes(tmp_path):
    """ragfix serve with answer_llm_server: llama-cpp and two declared prefixes: /v1/answer streams through the
    llama.cpp server, the warmer re-warms on its interval, /metrics shows the server's own cache counts; SIGTERM
    stops both processes."""
    import json
    import re
    import signal
    import time
    from pathlib import Path

    import httpx

    from data import data_root, load_documents_jsonl
    from tests.integration.serve_process import ServeProcess

    corpus = data_root() / "scifact" / "corpus.jsonl"
    if not corpus.is_file():
        pytest.skip(f"SciFact corpus not found at {corpus}")
    hot = load_documents_jsonl(corpus)[0].id
    config = tmp_path / "serve.yaml"
    config.write_text(f"answer: true\nanswer_llm: smollm2\nanswer_llm_server: llama-cpp\nanswer_corpus: scifact\nanswer_corpus_limit: 40\n"
                      f"answer_retriever: bm25\nanswer_retrieve_k: 3\nanswer_context_k: 1\nanswer_max_tokens: 8\nwarm_interval_s: 2\n"
                      f"warm_prefixes:\n  - {{name: system}}\n  - {{name: hot, documents: ['{hot}']}}\n")
    srv = ServeProcess(["--config", config, "--model", "reranker-l2", "--torch-threads", "1", "--deadline-ms", "120000"],
                       pattern=r"listening on (http://\S+)")
    proc, lines = srv.proc, srv.lines
    try:
        base = srv.wait_listening(240)
        t_end = time.monotonic() + 240
        while time.monotonic() < t_end and httpx.get(base + "/readyz").status_code != 200:
            if proc.poll() is not None:
                pytest.fail("ragfix serve exited:\n" + srv.tail())
            time.sleep(0.5)
        assert httpx.get(base + "/readyz").status_code == 200, srv.tail()
        with httpx.stream("POST", base + "/v1/answer", json={"query": "What do rare variants create?", "max_tokens": 6}, timeout=120) as r:
            assert r.status_code == 200
            events = [json.loads(x[6:]) for x in r.iter_lines() if x.startswith("data: ")]
        assert "answer" in events[-1], (events[-1], "".join(lines[-30:]))
        assert events[-1]["answer"] and events[-1]["model"] == "smollm2" and "ttft" in events[-1]["timings_ms"]
        t_end = time.monotonic() + 60
        while time.monotonic() < t_end:  # the warmer's second round (warm_interval_s: 2)
            text = httpx.get(base + "/metrics").text
            rounds = re.search(r"^ragfix_serve_warm_prefix_rounds_total (\S+)", text, re.M)
            if rounds and float(rounds.group(1)) >= 2:
                break
            time.sleep(0.5)
        ok = {m.group(1): float(m.group(2)) for m in re.finditer(r'ragfix_serve_warm_prefix_requests_total\{outcome="ok",prefix="(\w+)"\} (\S+)', text)}
        assert ok.get("system", 0) >= 2 and ok.get("hot", 0) >= 2, text
        cached = re.search(r'ragfix_serve_llm_server_log_tokens_total\{kind="cached"\} (\S+)', text)
        assert cached and float(cached.group(1)) > 0, text  # the server reused warmed prompt tokens
        assert re.search(r"^ragfix_serve_llm_server_prefix_hit_ratio \S+", text, re.M), text
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0, "".join(lines[-20:])
    pid = re.search(r"llama\.cpp server pid (\d+)", "".join(lines))
    assert pid, "".join(lines[-20:])
    assert not Path(f"/proc/{pid.group(1)}").exists(), "the llama.cpp server outlived ragfix serve"
