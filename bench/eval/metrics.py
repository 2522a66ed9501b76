"""IR metrics: nDCG@k, recall@k, MRR@k over ``qrels`` and ``run`` dicts.

Follows trec_eval's conventions (linear gain, ``ndcg_cut``; ties broken by document id descending;
queries judged in qrels but absent from the run score 0) so numbers line up with pytrec_eval and
ranx; ``tests/unit/test_metrics.py`` checks agreement with pytrec_eval to 1e-6 on random runs.
Private numpy kernels under thin public functions, one metric each.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from retrieval.types import Document, SearchResults

__all__ = ["ndcg_at_k", "recall_at_k", "mrr_at_k", "evaluate", "run_from_results", "METRICS"]

Qrels = Mapping[str, Mapping[str, int]]
Run = Mapping[str, Mapping[str, float]]


def _ranked(run_q: Mapping[str, float], k: int) -> list[str]:
    # trec_eval order: score descending, then document id descending.
    return [d for d, _ in sorted(run_q.items(), key=lambda kv: (-kv[1], _neg_key(kv[0])))][:k]


def _neg_key(doc_id: str) -> tuple:
    return tuple(-ord(c) for c in doc_id) + (1,)


def _dcg(gains: np.ndarray) -> float:
    if gains.size == 0:
        return 0.0
    return float(np.sum(gains / np.log2(np.arange(2, gains.size + 2))))


def _ndcg_one(rel: Mapping[str, int], ranked: list[str], k: int) -> float:
    gains = np.array([max(rel.get(d, 0), 0) for d in ranked], dtype=np.float64)
    ideal = np.sort(np.array([g for g in rel.values() if g > 0], dtype=np.float64))[::-1][:k]
    idcg = _dcg(ideal)
    return _dcg(gains) / idcg if idcg > 0 else 0.0


def _recall_one(rel: Mapping[str, int], ranked: list[str]) -> float:
    n_rel = sum(1 for g in rel.values() if g > 0)
    return sum(1 for d in ranked if rel.get(d, 0) > 0) / n_rel if n_rel else 0.0


def _mrr_one(rel: Mapping[str, int], ranked: list[str]) -> float:
    for i, d in enumerate(ranked, start=1):
        if rel.get(d, 0) > 0:
            return 1.0 / i
    return 0.0


def _per_query(qrels: Qrels, run: Run, k: int, fn) -> dict[str, float]:
    return {q: fn(rel, _ranked(run.get(q, {}), k)) for q, rel in qrels.items()}


def ndcg_at_k(qrels: Qrels, run: Run, k: int = 10) -> dict[str, float]:
    """Per-query nDCG@k with linear gain (trec_eval ``ndcg_cut_k``)."""
    return _per_query(qrels, run, k, lambda rel, r: _ndcg_one(rel, r, k))


def recall_at_k(qrels: Qrels, run: Run, k: int = 100) -> dict[str, float]:
    """Per-query recall@k: share of the judged-relevant documents found in the top k."""
    return _per_query(qrels, run, k, _recall_one)


def mrr_at_k(qrels: Qrels, run: Run, k: int = 10) -> dict[str, float]:
    """Per-query reciprocal rank of the first relevant document within the top k (0 if none)."""
    return _per_query(qrels, run, k, _mrr_one)


METRICS = {"ndcg": ndcg_at_k, "recall": recall_at_k, "mrr": mrr_at_k}


def evaluate(qrels: Qrels, run: Run, metrics: tuple[str, ...] = ("ndcg@10", "recall@100", "mrr@10"), per_query: bool = False):
    """Mean of each metric over the judged queries; ``{"ndcg@10": 0.67, ...}``.

    With ``per_query=True`` also returns ``{metric: {qid: value}}`` (for paired significance tests).
    """
    if not qrels:
        raise ValueError("qrels is empty: nothing to evaluate")
    means: dict[str, float] = {}
    per: dict[str, dict[str, float]] = {}
    for m in metrics:
        name, _, k = m.partition("@")
        if name not in METRICS or not k.isdigit():
            raise ValueError(f"unknown metric {m!r}; use one of {sorted(METRICS)} with @k, e.g. 'ndcg@10'")
        vals = METRICS[name](qrels, run, int(k))
        per[m] = vals
        means[m] = float(np.mean(list(vals.values())))
    return (means, per) if per_query else means


def run_from_results(query_ids: list[str], results: SearchResults, corpus: list[Document]) -> dict[str, dict[str, float]]:
    """Turn index positions into a ``run`` dict keyed by document id."""
    run: dict[str, dict[str, float]] = {}
    for qi, qid in enumerate(query_ids):
        run[qid] = {corpus[int(j)].id: float(s) for j, s in zip(results.indices[qi], results.scores[qi]) if j >= 0}
    return run
