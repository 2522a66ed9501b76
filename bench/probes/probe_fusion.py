"""Which rerank-stage fusion, checked on queries the cross-encoder never trained on (V).

``python -m bench.probes.probe_fusion [--queries 150] [--model reranker-l6] [--backend auto]``

The rerank stage's fusion (z-score CombSUM against reciprocal-rank fusion of the cross-encoder,
BM25 and dense signals, ``rerank.fusion``) was picked on SciFact test, where both have been
reported side by side since the first reranker. This probe asks the same question on held-out
data: HotpotQA questions from HaluEval QA (the embedded corpus: about 10k knowledge passages, one
relevant passage per question) that none of the reranker's training stages sampled. It reranks
the hybrid top ``depth`` (BM25 + MiniLM, RRF, as ``retrieval.HybridRetriever``) and reports
nDCG@10 for the first stage, the cross-encoder alone, and each of ``eval-reranker``'s fusions
(``bench.eval.rerank.stage_fusions``: ``specialist`` is the stage, ``fusion_no_ce`` its ablation,
``*_rrf`` the rank-fusion alternative).
"""
from __future__ import annotations

import argparse
import json
import random

import numpy as np

from bench.cli.argtypes import non_negative_int, positive_int

__all__ = ["held_out_hotpot_queries", "probe_fusion", "TRAINED_HOTPOT_SAMPLES"]

# (seed, questions) of each reranker-l6 training stage's HotpotQA sample (`--seed`, `--hotpot-queries`).
TRAINED_HOTPOT_SAMPLES = ((13, 1000), (21, 600), (55, 300))


def held_out_hotpot_queries(query_ids: list[str], samples=TRAINED_HOTPOT_SAMPLES) -> list[str]:
    """Query ids no training stage drew, each stage's draw rebuilt by ``data.rerank_pairs.hotpotqa_draw``."""
    from data.rerank_pairs import hotpotqa_draw

    used = {q for seed, n in samples for q in hotpotqa_draw(query_ids, n, random.Random(seed))}
    return [q for q in sorted(query_ids, key=lambda q: int(q[1:])) if q not in used]


def probe_fusion(n_queries: int = 150, model: str = "reranker-l6", backend: str = "auto", depth: int = 100,
                 seed: int = 0) -> dict:
    """nDCG@10 of first stage, cross-encoder alone and both fusions on held-out HotpotQA questions."""
    import time

    from data import load_halueval_qa
    from bench.eval.metrics import evaluate
    from registry import load_cross_encoder, load_embedder
    from bench.eval.rerank import stage_fusions
    from rerank.backends import resolve_backend
    from rerank.engine import RerankEngine
    from rerank.stage import FusedRerankStage
    from retrieval.retrievers import BM25Retriever, DenseRetriever, HybridRetriever
    from retrieval.types import Document

    ds = load_halueval_qa()
    held = held_out_hotpot_queries(list(ds.queries))
    qids = sorted(random.Random(seed).sample(held, min(n_queries, len(held))), key=lambda q: int(q[1:]))
    # Same ids and texts as the training miner used, so the dense embeddings come from its cache.
    docs = [Document(f"hotpotqa:{i}", d.text) for i, d in enumerate(ds.corpus)]
    qrels = {q: {f"hotpotqa:{int(d[2:])}": r for d, r in ds.qrels[q].items()} for q in qids}
    texts = [ds.queries[q] for q in qids]
    bm25 = BM25Retriever().index(docs)
    dense = DenseRetriever(load_embedder("minilm")).index(docs)
    r_b, r_d = bm25.search(texts, 1000), dense.search(texts, 1000)
    r_h = HybridRetriever([bm25, dense]).search(texts, depth)
    backend = resolve_backend(backend)
    engine = RerankEngine(load_cross_encoder(model).model, backend=backend)
    stages = {name: FusedRerankStage(engine, rule, name=name) for name, rule in stage_fusions().items()}  # as eval-reranker
    runs: dict[str, dict] = {k: {} for k in ("hybrid", "ce_only_hybrid", *stages)}
    t0, n_pairs = time.perf_counter(), 0
    for qi, q in enumerate(qids):
        cand = [int(j) for j in r_h.indices[qi] if j >= 0]
        ce = engine.score_pairs([(texts[qi], docs[j].text) for j in cand])
        n_pairs += len(cand)
        bm = {int(j): float(s) for j, s in zip(r_b.indices[qi], r_b.scores[qi]) if j >= 0}
        dn = {int(j): float(s) for j, s in zip(r_d.indices[qi], r_d.scores[qi]) if j >= 0}
        first_stage = {"bm25": np.array([bm.get(j, -np.inf) for j in cand]), "dense": np.array([dn.get(j, -np.inf) for j in cand])}
        runs["hybrid"][q] = {docs[j].id: float(s) for j, s in zip(cand, r_h.scores[qi])}
        runs["ce_only_hybrid"][q] = {docs[j].id: float(v) for j, v in zip(cand, ce)}
        for name, stage in stages.items():
            runs[name][q] = {docs[j].id: float(v) for j, v in zip(cand, stage.fuse(ce, first_stage))}
    metrics = {k: evaluate(qrels, run, ("ndcg@10",))["ndcg@10"] for k, run in runs.items()}
    return {"data": "halueval-qa (HotpotQA) questions no training stage sampled", "queries": len(qids),
            "held_out_pool": len(held), "corpus": len(docs), "depth": depth, "model": model, "backend": backend,
            "pairs": n_pairs, "seconds": round(time.perf_counter() - t0, 1), "ndcg@10": metrics}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=positive_int, default=150)
    ap.add_argument("--model", default="reranker-l6")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--depth", type=positive_int, default=100)
    ap.add_argument("--seed", type=non_negative_int, default=0)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    rep = probe_fusion(a.queries, a.model, a.backend, a.depth, a.seed)
    text = json.dumps(rep, indent=2)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
