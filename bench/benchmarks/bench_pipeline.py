"""``ragfix bench pipeline``: end-to-end time to first token, naive vs fixed, at several concurrencies (VIII).

Reranker on the Request Path, measured where the user feels it. One process, torch at one thread
per operation, so the reranker and the LLM each get one of this machine's two cores -- the CPU
stand-in for a reranker and an LLM on separate devices. Requests are SciFact test claims
(``--limit``), BM25 top ``--k`` candidates, ``--context-k`` passages to SmolLM2.

- ``naive``: sentence-transformers ``CrossEncoder.predict`` over all K pairs (fp32, batch 32), then
  the LLM reads the whole prompt (rerank, then prefill).
- ``fixed_no_overlap``: the rerank engine (``--backend``, length-aware batching; with
  ``--pruner`` a 2-layer cascade keeping ``--keep``), then prefill (isolates the rerank fixes).
- ``fixed``: the same engine, and the [system + question] prefix prefilled on the LLM's core while
  reranking runs (:class:`pipeline.Pipeline` ``overlap_prefill=True``); only the passages and the
  question's restatement are prefilled after reranking.

At each ``--concurrency`` c, c client threads send the requests; the table gives TTFT and total
latency p50/p95 and throughput. At concurrency 1 the variants run interleaved request by request (the
order rotated), so the machine's drift hits all alike, and the overlap's saving is also given paired,
request by request, with a bootstrap interval; at higher concurrency each variant runs as a block
(``--rounds`` blocks, rotated, median reported). Cross-request batching is measured on the rerank stage alone, with every core given to
both sides: c threads each scoring their K pairs through one shared engine (per-request batches,
run concurrently) vs through :class:`rerank.microbatch.MicroBatcher` (merged batches); requests/s
and the ratio. What overlap cannot save: with a bare question the prefix is only the system prompt and
the question (~60 tokens here), so TTFT falls by at most the prefill time of those tokens. The
``--history-words`` sweep (concurrency 1) puts real chat turns (HaluEval dialogue) before each
question -- a conversation that differs per request, so no cross-request prefix cache holds it --
and measures the saving as that known-early prefix grows; it is bounded by the rerank time, since
the prefill can hide only behind work that runs concurrently.
"""
from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench.cli.argtypes import positive_int

__all__ = ["add_parser", "run_pipeline_bench", "run_stream_bench"]

log = logging.getLogger(__name__)


class _NaiveReranker:
    """sentence-transformers CrossEncoder.predict over all pairs, batch 32: the baseline."""

    def __init__(self, model) -> None:
        self.model = model

    def rank(self, query, docs, top_k=None):
        from bench.benchmarks.bench_rerank import naive_scores
        from rerank.cross_encoder import RankedResults

        s = naive_scores(self.model, query, [d.full_text() for d in docs])
        order = np.argsort(-s, kind="stable")
        return RankedResults([docs[i] for i in order], s[order], order)


def _pcts(xs: list[float]) -> dict:
    a = np.asarray(xs) * 1000.0
    return {"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)), "n": int(a.size)}


def _drive(pipe, queries: list[str], concurrency: int, histories: list[list[dict]] | None = None) -> dict:
    ttft, total = [], []
    lock = threading.Lock()

    def one(i: int) -> None:
        r = pipe.run(queries[i], histories[i] if histories else None)
        with lock:
            ttft.append(r.ttft_s)
            total.append(r.total_s)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as ex:
        list(ex.map(one, range(len(queries))))
    return _summary(ttft, total, time.perf_counter() - t0)


def _summary(ttft: list[float], total: list[float], wall: float) -> dict:
    """TTFT and total latency percentiles, requests per second of ``wall``, and the per-request TTFTs (ms)."""
    return {"ttft": _pcts(ttft), "total": _pcts(total), "throughput_rps": len(ttft) / wall, "wall_s": wall,
            "ttft_ms": [round(t * 1000.0, 1) for t in ttft]}


def _rotated(names: list[str], k: int) -> list[str]:
    """``names`` started at position ``k`` (mod its length): who goes first changes from one run to the next."""
    k %= len(names)
    return names[k:] + names[:k]


def _drive_interleaved(pipes: dict, queries: list[str], histories: list[list[dict]] | None = None) -> dict:
    """Concurrency 1, every variant on every request, interleaved request by request with the variant order
    rotated, so machine drift (other tenants, thermal) hits all variants alike; per-request TTFTs are kept
    for paired differences."""
    names = list(pipes)
    raw = {n: {"ttft": [], "total": [], "wall": 0.0} for n in names}
    for i, q in enumerate(queries):
        for n in _rotated(names, i):
            t0 = time.perf_counter()
            r = pipes[n].run(q, histories[i] if histories else None)
            raw[n]["wall"] += time.perf_counter() - t0
            raw[n]["ttft"].append(r.ttft_s)
            raw[n]["total"].append(r.total_s)
    return {n: _summary(v["ttft"], v["total"], v["wall"]) for n, v in raw.items()}


def _paired_saving(a: dict, b: dict) -> dict:
    """TTFT of ``a`` minus TTFT of ``b``, request by request: median, mean and the mean's 95% bootstrap interval (ms)."""
    from monitor.bounds import bootstrap_interval

    d = np.asarray(a["ttft_ms"]) - np.asarray(b["ttft_ms"])
    ci = bootstrap_interval(d)
    return {"median_ms": float(np.median(d)), "mean_ms": float(d.mean()), "mean_ci_ms": [ci.lower, ci.upper],
            "requests_faster": int((d > 0).sum()), "requests": int(d.size)}


def _rerank_rounds(per_req, mb, batches: list[list[tuple[str, str]]], concurrency: int, rounds: int) -> dict:
    """Per-request vs cross-request throughput, alternated for ``rounds`` rounds (the order flipped each round); medians."""
    rps: dict[str, list[float]] = {"per": [], "mb": []}
    scorers = {"per": per_req, "mb": mb}
    for r in range(rounds):
        for side in _rotated(["per", "mb"], r):
            rps[side].append(_rerank_throughput(scorers[side], batches, concurrency))
    a, b = rps["per"], rps["mb"]
    pa, pb = float(np.median(a)), float(np.median(b))
    return {"per_request_rps": pa, "cross_request_rps": pb, "ratio": pb / pa, "rounds": rounds,
            "per_request_rps_all": [round(x, 4) for x in a], "cross_request_rps_all": [round(x, 4) for x in b]}


def _histories(n: int, words: int) -> list[list[dict]]:
    """Per request, real chat turns (HaluEval dialogue, consecutive dialogues) of at least ``words`` words, ending
    with the assistant's turn: a conversation that is different for every request, so no cross-request prefix
    cache could hold it."""
    from data import load_halueval_dialogue_histories

    pool = iter(load_halueval_dialogue_histories())
    out = []
    for _ in range(n):
        turns: list[dict] = []
        while sum(len(m["content"].split()) for m in turns) < words:
            turns += next(pool)
            while turns and turns[-1]["role"] == "user":
                turns.pop()
        out.append(turns)
    return out


def _rerank_throughput(scorer, batches: list[list[tuple[str, str]]], concurrency: int) -> float:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as ex:
        list(ex.map(scorer.score_pairs, batches))
    return len(batches) / (time.perf_counter() - t0)


def run_pipeline_bench(args: argparse.Namespace) -> dict:
    import torch

    from data import load_beir
    from pipeline import Pipeline
    from registry import load_cross_encoder, load_llm
    from rerank.cascade import CascadeReranker
    from rerank.engine import RerankEngine
    from rerank.microbatch import MicroBatcher
    from retrieval.retrievers import BM25Retriever
    from retrieval.types import Document

    torch.set_num_threads(1)  # one core for the reranker, one for the LLM (see the module docstring)
    ds = load_beir(args.data, "test").limit(args.limit)
    queries = [ds.queries[q] for q in ds.queries]
    ce = load_cross_encoder(args.model)
    model = getattr(ce, "model", ce)
    engine = RerankEngine(model, args.backend, max_tokens_per_batch=args.token_budget)
    fixed_rr = engine
    if args.pruner:
        small = RerankEngine(getattr(load_cross_encoder(args.pruner), "model", None), args.backend, max_tokens_per_batch=args.token_budget)
        fixed_rr = CascadeReranker(small, engine, keep=args.keep)
    llm = load_llm(args.llm)
    bm25 = BM25Retriever()
    # fuse=False: this bench times the cross-encoder (or cascade) over BM25's top k, the configuration its
    # results were measured with; the fused stage (pipeline.Pipeline's default) needs the hybrid first stage.
    common = dict(retrieve_k=args.k, context_k=args.context_k, max_new_tokens=args.max_new_tokens, fuse=False)
    pipes = {"naive": Pipeline(bm25, llm, _NaiveReranker(model), **common).index(ds.corpus)}
    pipes["fixed_no_overlap"] = Pipeline(bm25, llm, fixed_rr, **common)
    pipes["fixed"] = Pipeline(bm25, llm, fixed_rr, overlap_prefill=True, **common)
    for name in ("fixed_no_overlap", "fixed"):  # share the indexed retriever
        pipes[name].corpus = pipes["naive"].corpus
    for p in pipes.values():  # warm-up: thread pools, ONNX sessions, allocator
        p.run(queries[0])
    levels = [int(c) for c in args.concurrency.split(",")]
    metrics: dict = {}
    for c in levels:
        if c == 1:
            log.info("all variants at concurrency 1, interleaved request by request ...")
            for name, m in _drive_interleaved(pipes, queries).items():
                metrics.setdefault(name, {})["c1"] = m
            continue
        for r in range(args.rounds):  # a block of c concurrent requests per variant; the order rotates per round
            for name in _rotated(list(pipes), r):
                log.info(f"{name} at concurrency {c} (round {r + 1}/{args.rounds}) ...")
                m = _drive(pipes[name], queries, c)
                metrics.setdefault(name, {}).setdefault(f"c{c}", []).append(m)
        for name in pipes:  # the round with the median TTFT p50 stands for the variant
            ms = sorted(metrics[name][f"c{c}"], key=lambda m: m["ttft"]["p50_ms"])
            metrics[name][f"c{c}"] = {**ms[len(ms) // 2], "rounds_ttft_p50_ms": [m["ttft"]["p50_ms"] for m in ms]}
    # When overlap can save time: a request-specific prefix (conversation so far) known before reranking ends.
    sweep: dict = {}
    for words in [int(w) for w in args.history_words.split(",") if w.strip()]:
        hist = _histories(len(queries), words)
        tokens = [len(llm.prompt_prefix(pipes["fixed"]._messages(q, [Document("-", "-")], h))) for q, h in zip(queries, hist)]
        row = {"history_words": words, "prefix_tokens_median": float(np.median(tokens))}
        log.info(f"fixed_no_overlap and fixed with {words} words of history, interleaved ...")
        row.update(_drive_interleaved({n: pipes[n] for n in ("fixed_no_overlap", "fixed")}, queries, hist))
        row["overlap_saving_ms"] = row["fixed_no_overlap"]["ttft"]["p50_ms"] - row["fixed"]["ttft"]["p50_ms"]
        row["paired_saving"] = _paired_saving(row["fixed_no_overlap"], row["fixed"])
        row["ttft_ratio"] = row["fixed_no_overlap"]["ttft"]["p50_ms"] / row["fixed"]["ttft"]["p50_ms"]
        sweep[str(words)] = row
    pipes["fixed"].close()
    # Cross-request batching on the rerank stage alone.
    res = bm25.search(queries, args.k)
    batches = [[(q, ds.corpus[int(j)].full_text()) for j in res.indices[i] if j >= 0] for i, q in enumerate(queries)]
    # Both get every core (ONNX Runtime takes its intra-op thread count at session creation): with
    # one thread each, the micro-batcher's single worker used one core while eight concurrent
    # per-request calls spread over both, which measured the thread count, not the batching.
    torch.set_num_threads(os.cpu_count() or 1)
    mb = MicroBatcher(RerankEngine(model, args.backend, max_tokens_per_batch=args.token_budget), max_wait_ms=2.0)
    per_req = RerankEngine(model, args.backend, max_tokens_per_batch=args.token_budget)
    per_req.score_pairs(batches[0])
    mb.score_pairs(batches[0])
    xb: dict = {}
    for c in sorted({1, max(levels)}):
        xb[f"c{c}"] = _rerank_rounds(per_req, mb, batches, c, args.rerank_rounds)
    mb.close()
    torch.set_num_threads(1)
    base, fix, fno = metrics["naive"], metrics["fixed"], metrics["fixed_no_overlap"]
    summary = {f"c{c}": {"ttft_p50_naive_ms": base[f"c{c}"]["ttft"]["p50_ms"], "ttft_p50_fixed_ms": fix[f"c{c}"]["ttft"]["p50_ms"],
                         "ttft_ratio": base[f"c{c}"]["ttft"]["p50_ms"] / fix[f"c{c}"]["ttft"]["p50_ms"],
                         "overlap_saving_ms": fno[f"c{c}"]["ttft"]["p50_ms"] - fix[f"c{c}"]["ttft"]["p50_ms"]} for c in levels}
    if 1 in levels:
        summary["c1"]["overlap_paired"] = _paired_saving(fno["c1"], fix["c1"])
        summary["c1"]["fixes_paired"] = _paired_saving(base["c1"], fix["c1"])
    return {"metrics": metrics, "cross_request_batching": xb, "summary": summary, "overlap_by_history": sweep,
            "config": {k: getattr(args, k) for k in ("model", "pruner", "keep", "backend", "llm", "k", "context_k", "limit",
                                                      "max_new_tokens", "concurrency", "token_budget", "history_words", "rounds",
                                                      "rerank_rounds")},
            "torch_threads": 1, "cross_request_threads": os.cpu_count(), "queries": len(queries)}


def run_stream_bench(args: argparse.Namespace) -> dict:
    """``--stream-overlap``: TTFT of the streaming overlap against the prefix-only overlap, paired (issue 21, item 4).

    Both pipelines run the same rerank stage, ``best`` (:func:`rerank.presets.best_precomputed_stack`: the
    precomputed pruner over BM25's top ``--k``, reranker-l6 on ``--best-backend`` over ``--best-keep``, fused
    order), and the same LLM; they differ only in ``overlap_prefill`` (``True``: the [system + history +
    question] prefix prefilled during the rerank; ``"stream"``: that, then each passage prefilled as soon as
    its place is fixed). Requests interleaved one by one, the order rotated; per-request TTFT differences
    with a bootstrap 95% interval (``stream_saving``: prefix-only minus streaming, > 0 = streaming faster).
    """
    import torch

    from data import load_beir
    from pipeline import Pipeline
    from registry import load_cross_encoder, load_embedder, load_llm
    from rerank.precomputed import DocVectorIndex
    from rerank.presets import best_precomputed_stack
    from retrieval.retrievers import BM25Retriever

    torch.set_num_threads(1)  # one core for the reranker, one for the LLM (see the module docstring)
    ds = load_beir(args.data, "test").limit(args.limit)
    queries = [ds.queries[q] for q in ds.queries]
    emb = load_embedder(args.embedder)
    t0 = time.perf_counter()
    index = DocVectorIndex.build(emb, ds.corpus)
    index_s = time.perf_counter() - t0
    best = best_precomputed_stack(getattr(load_cross_encoder(args.model), "model", None), emb, index,
                                  keep=args.best_keep, backend=args.best_backend)
    llm = load_llm(args.llm)
    bm25 = BM25Retriever()
    common = dict(retrieve_k=args.k, context_k=args.context_k, max_new_tokens=args.max_new_tokens)
    pipes = {"prefix": Pipeline(bm25, llm, best, overlap_prefill=True, **common).index(ds.corpus),
             "stream": Pipeline(bm25, llm, best, overlap_prefill="stream", **common)}
    pipes["stream"].corpus = pipes["prefix"].corpus  # share the indexed retriever
    for p in pipes.values():  # warm-up
        p.run(queries[0])
    # The streamed answer must be the non-streamed one (same prompt, same greedy decode).
    same = all(pipes["prefix"].run(q).answer == pipes["stream"].run(q).answer for q in queries[:2])
    metrics: dict = {}
    for words in [int(w) for w in args.history_words.split(",") if w.strip()]:
        hist = _histories(len(queries), words) if words else None
        log.info(f"prefix-only vs streaming overlap, {words} words of history, interleaved ...")
        row = _drive_interleaved(pipes, queries, hist)
        row["stream_saving"] = _paired_saving(row["prefix"], row["stream"])
        metrics[f"history{words}"] = row
    for p in pipes.values():
        p.close()
    return {"metrics": metrics, "answers_equal": same, "index_s": index_s, "index_from_cache": index.from_cache,
            "config": {k: getattr(args, k) for k in ("model", "embedder", "best_keep", "best_backend", "llm", "k",
                                                      "context_k", "limit", "max_new_tokens", "history_words")},
            "torch_threads": 1, "queries": len(queries)}


def stream_markdown(r: dict, command: str) -> str:
    lines = ["| history words | TTFT p50 prefix-only ms | TTFT p50 streaming ms | paired saving per request, mean [95% CI] ms "
             "| requests faster |", "|---|---|---|---|---|"]
    for key, m in r["metrics"].items():
        ps = m["stream_saving"]
        lines.append(f"| {key[len('history'):]} | {m['prefix']['ttft']['p50_ms']:.0f} | {m['stream']['ttft']['p50_ms']:.0f} | "
                     f"{ps['mean_ms']:.1f} [{ps['mean_ci_ms'][0]:.1f}, {ps['mean_ci_ms'][1]:.1f}] | "
                     f"{ps['requests_faster']}/{ps['requests']} |")
    lines += ["", f"Streamed answers equal the prefix-only ones: {r['answers_equal']}.",
              f"Command: `{command}` ({r['queries']} SciFact test claims, interleaved request by request, torch 1 thread per op)."]
    return "\n".join(lines) + "\n"


def markdown(r: dict, command: str) -> str:
    lines = ["| variant | concurrency | TTFT p50 ms | TTFT p95 ms | total p50 ms | total p95 ms | req/s |", "|---|---|---|---|---|---|---|"]
    for name, per in r["metrics"].items():
        for c, m in per.items():
            lines.append(f"| {name} | {c[1:]} | {m['ttft']['p50_ms']:.0f} | {m['ttft']['p95_ms']:.0f} | "
                         f"{m['total']['p50_ms']:.0f} | {m['total']['p95_ms']:.0f} | {m['throughput_rps']:.3f} |")
    if r.get("overlap_by_history"):
        lines += ["", "| conversation before the question | prefix tokens (median) | TTFT p50 no overlap ms | "
                      "TTFT p50 overlap ms | ratio | paired saving per request, mean [95% CI] ms | requests faster |",
                  "|---|---|---|---|---|---|---|"]
        for w, m in r["overlap_by_history"].items():
            ps = m.get("paired_saving")
            paired = (f"{ps['mean_ms']:.0f} [{ps['mean_ci_ms'][0]:.0f}, {ps['mean_ci_ms'][1]:.0f}] | "
                      f"{ps['requests_faster']}/{ps['requests']}") if ps else "- | -"
            lines.append(f"| {w} words | {m['prefix_tokens_median']:.0f} | {m['fixed_no_overlap']['ttft']['p50_ms']:.0f} | "
                         f"{m['fixed']['ttft']['p50_ms']:.0f} | {m['ttft_ratio']:.2f}x | {paired} |")
    lines += ["", "| rerank stage | concurrency | per-request req/s | cross-request req/s | ratio |", "|---|---|---|---|---|"]
    for c, m in r["cross_request_batching"].items():
        lines.append(f"| micro-batching | {c[1:]} | {m['per_request_rps']:.2f} | {m['cross_request_rps']:.2f} | {m['ratio']:.2f}x"
                     + (f" (median of {m['rounds']} alternating rounds)" if m.get("rounds", 1) > 1 else "") + " |")
    lines += [""] + [f"- concurrency {c[1:]}: TTFT p50 naive {s['ttft_p50_naive_ms']:.0f} ms -> fixed {s['ttft_p50_fixed_ms']:.0f} ms "
                     f"({s['ttft_ratio']:.2f}x); overlap alone saves {s['overlap_saving_ms']:.0f} ms"
                     + (f" (paired per request: mean {s['overlap_paired']['mean_ms']:.0f} ms "
                        f"[{s['overlap_paired']['mean_ci_ms'][0]:.0f}, {s['overlap_paired']['mean_ci_ms'][1]:.0f}])"
                        if "overlap_paired" in s else "") for c, s in r["summary"].items()]
    lines += ["", f"Command: `{command}` ({r['queries']} SciFact test claims; at concurrency 1 the variants run interleaved "
              "request by request; torch 1 thread per op: reranker and LLM on separate cores; "
              f"the rerank-stage rows give both sides all {r.get('cross_request_threads', '?')} cores)."]
    return "\n".join(lines) + "\n"


def _cmd(args: argparse.Namespace) -> int:
    import shlex
    import sys

    from bench.report import write_results

    r = run_stream_bench(args) if args.stream_overlap else run_pipeline_bench(args)
    out = Path(args.out)
    md = (stream_markdown if args.stream_overlap else markdown)(r, "ragfix " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    write_results(out, r["config"], r["metrics"], markdown=md,
                  **{k: v for k, v in r.items() if k not in ("metrics", "config")})
    print(md)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    from data import data_root

    p = sub.add_parser("pipeline", help="end-to-end TTFT and latency, naive vs fixed, at several concurrencies (VIII)")
    p.add_argument("--data", default=str(data_root() / "scifact"), help="BEIR-layout folder (test split)")
    p.add_argument("--model", default="reranker-l6")
    p.add_argument("--pruner", default=None, help="2-layer cascade stage (e.g. reranker-l2)")
    p.add_argument("--keep", type=positive_int, default=20)
    p.add_argument("--backend", default="onnx-int8", choices=["fp32", "int8", "onnx", "onnx-int8"])
    p.add_argument("--token-budget", type=positive_int, default=8192)
    p.add_argument("--llm", default="smollm2")
    p.add_argument("--k", type=positive_int, default=100)
    p.add_argument("--context-k", type=positive_int, default=3)
    p.add_argument("--max-new-tokens", type=positive_int, default=24)
    p.add_argument("--limit", type=positive_int, default=8, help="requests (SciFact test claims)")
    p.add_argument("--concurrency", default="1,4,8")
    p.add_argument("--history-words", default="0,250,500",
                   help="overlap sweep at concurrency 1: words of real chat history (HaluEval dialogue) before each question")
    p.add_argument("--rounds", type=positive_int, default=1, help="blocks per variant at concurrency > 1 (median round reported)")
    p.add_argument("--rerank-rounds", type=positive_int, default=3, help="alternating per-request / cross-request rounds (median)")
    p.add_argument("--stream-overlap", action="store_true",
                   help="only the streaming-overlap comparison (prefix-only vs streaming, paired TTFT, the `best` rerank "
                        "stage); --history-words gives its sweep")
    p.add_argument("--embedder", default="minilm", help="--stream-overlap: the precomputed pruner's embedder")
    p.add_argument("--best-keep", type=positive_int, default=20, help="--stream-overlap: candidates `best` passes to the model")
    p.add_argument("--best-backend", default="bf16", help="--stream-overlap: `best`'s cross-encoder backend")
    p.add_argument("--out", default="results/pipeline.json")
    p.set_defaults(func=_cmd)
