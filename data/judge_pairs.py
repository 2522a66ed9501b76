"""Real (query, candidate) pairs for judging: each query with its BM25 top-k and the gold label of each candidate.

What an evaluation dashboard scores and what a distilled relevance judge serves (IV, IX):

- :func:`scifact_candidates`: SciFact claims (train and test qrels, 1,109 queries) x BM25 top-k over
  the 5,183 abstracts; gold = the abstract is cited in the qrels.
- :func:`nq_candidates`: NQ-open oracle questions (Liu et al., 2,655) x BM25 top-k over all the
  questions' gold passages; gold = the question's own passage.
- :func:`hotpotqa_candidates`: HaluEval QA (HotpotQA-derived) questions x BM25 top-k over the
  knowledge passages; gold = the question's own passage.

Queries come in a seeded order (``seed``), so "the first n" and "the next m" are reproducible.
Documents are cut to ``max_chars`` characters (an LLM judge prompt stays short; stated by callers).
A missing or malformed file raises :class:`data.DatasetError` from the loaders.

Example::

    qs = scifact_candidates(n_queries=50, k=10)
    pairs = [(q.query, d) for q in qs for d in q.docs]
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import NamedTuple

__all__ = ["QueryCandidates", "scifact_candidates", "nq_candidates", "hotpotqa_candidates", "SOURCES"]

SOURCES = ("scifact", "nq", "hotpotqa")


class QueryCandidates(NamedTuple):
    source: str
    qid: str
    query: str
    docs: list[str]
    gold: list[int]  # 1 where the candidate is the query's judged-relevant document


def _check(n_queries: int | None, k: int) -> None:
    if n_queries is not None and n_queries < 1:
        raise ValueError(f"n_queries must be >= 1 (or None for all), got {n_queries}")
    if k < 1:
        raise ValueError(f"k (candidates per query) must be >= 1, got {k}")


def _rank(texts: list[str], queries: list[str], k: int):
    from retrieval.bm25 import BM25Index

    return BM25Index().index(texts).search(queries, k).indices


def _build(source: str, qids: list[str], queries: list[str], texts: list[str], gold_sets: list[set[int]], k: int,
           max_chars: int) -> list[QueryCandidates]:
    ranked = _rank(texts, queries, k)
    out = []
    for qid, q, row, gold in zip(qids, queries, ranked, gold_sets):
        idx = [int(i) for i in row if i >= 0]
        out.append(QueryCandidates(source, qid, q, [texts[i][:max_chars] for i in idx], [int(i in gold) for i in idx]))
    return out


def _order(n: int, n_queries: int | None, seed: int) -> list[int]:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return order[:n_queries] if n_queries is not None else order


def scifact_candidates(n_queries: int | None = None, k: int = 10, seed: int = 0, max_chars: int = 1500,
                       folder: Path | str | None = None) -> list[QueryCandidates]:
    """SciFact claims (train + test qrels) with their BM25 top ``k`` abstracts, in a seeded order."""
    from data import data_root, load_beir

    _check(n_queries, k)
    folder = Path(folder) if folder else data_root() / "scifact"
    train, test = load_beir(folder, "train"), load_beir(folder, "test")
    texts = [d.full_text() for d in train.corpus]
    pos = {d.id: i for i, d in enumerate(train.corpus)}
    qrels = {**train.qrels, **test.qrels}
    queries = {**train.queries, **test.queries}
    qids = sorted(queries)
    pick = [qids[i] for i in _order(len(qids), n_queries, seed)]
    gold = [{pos[d] for d, g in qrels[q].items() if g > 0} for q in pick]
    return _build("scifact", pick, [queries[q] for q in pick], texts, gold, k, max_chars)


def nq_candidates(n_queries: int | None = None, k: int = 10, seed: int = 0, max_chars: int = 1500) -> list[QueryCandidates]:
    """NQ-open oracle questions with their BM25 top ``k`` among all questions' gold passages."""
    from data.nq_open import load_nq_oracle

    _check(n_queries, k)
    rows = load_nq_oracle()
    texts, index, gold = [], {}, []
    for _, _, passage in rows:
        if passage not in index:
            index[passage] = len(texts)
            texts.append(passage)
        gold.append(index[passage])
    pick = _order(len(rows), n_queries, seed)
    return _build("nq", [f"nq:{i}" for i in pick], [rows[i][0] for i in pick], texts, [{gold[i]} for i in pick], k, max_chars)


def hotpotqa_candidates(n_queries: int | None = None, k: int = 10, seed: int = 0, max_chars: int = 1500) -> list[QueryCandidates]:
    """HaluEval QA (HotpotQA) questions with their BM25 top ``k`` among the knowledge passages."""
    from data import load_halueval_qa

    _check(n_queries, k)
    ds = load_halueval_qa()
    texts = [d.text for d in ds.corpus]
    pos = {d.id: i for i, d in enumerate(ds.corpus)}
    qids = sorted(ds.queries, key=lambda q: int(q[1:]) if q[1:].isdigit() else q)
    pick = [qids[i] for i in _order(len(qids), n_queries, seed)]
    gold = [{pos[d] for d, g in ds.qrels[q].items() if g > 0} for q in pick]
    return _build("hotpotqa", pick, [ds.queries[q] for q in pick], texts, gold, k, max_chars)
