"""The recipe behind ``ragfix distill judge`` (parsed by :mod:`bench.cli.distill`): train a student judge on a teacher's cached verdicts; held-out agreement and cost per 1k (IX).

``--teacher`` is a registered cross-encoder (``reranker-l6``): its verdict on a (query, document) pair
is ``score > --threshold`` on the scale ``score_pairs`` returns (sentence-transformers' sigmoid here,
so 0.5 is logit 0). Every verdict goes through :class:`distill.judge_cache.JudgeCache` (``--cache``),
so a second run, or the drift bench, pays nothing for pairs already judged -- the cache *is* the
training set. ``--student`` is a :class:`distill.student.FeatureStudent` (logistic regression):
``logreg-ce:reranker-l2`` (default) on the 2-layer cross-encoder's logit, query-word overlap and document
length (:func:`distill.student.score_features`; its scores cached too), or ``logreg:<embedder>`` on
embedding features (:func:`distill.student.pair_features`). ``--data`` names one or more pools of :mod:`data.judge_pairs`
(``scifact``, ``nq``, ``hotpotqa``: ``--queries`` queries x BM25 top ``--top-k`` each); pairs are split
by query into train and held-out (``--heldout`` share), so no query is on both sides.

Prints and writes (``--out`` folder: ``student.npz``, ``student.json``, ``report.json``): held-out
agreement with its Clopper-Pearson 95% interval, the teacher's positive share, and cost per 1,000
verdicts of teacher and student from measured CPU seconds priced with ``configs/prices.yaml``
(``compute.cpu_core_hour_usd``). LLM teachers are served by the same cache
(:class:`distill.judge_cache.LLMJudgeScorer`) but not by this command (SmolLM2 at 1-2 s a pair is
the judge-spend bench's business).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from bench.report import atomic_write_text

__all__ = ["parse_student", "pool_names", "PoolPair", "build_pool", "teacher_verdicts", "embed_pairs", "split_by_query", "distill_judge",
           "student_features", "STUDENT_KINDS"]

STUDENT_KINDS = ("logreg-ce", "logreg")


class PoolPair(NamedTuple):
    source: str
    qid: str
    query: str
    doc: str
    gold: int


def parse_student(spec: str) -> tuple[str, str]:
    kind, _, name = spec.partition(":")
    if kind not in STUDENT_KINDS or not name:
        raise ValueError(f"--student must be logreg-ce:<cross-encoder> (e.g. logreg-ce:reranker-l2) or "
                         f"logreg:<embedder> (e.g. logreg:minilm), got {spec!r}")
    return kind, name


def student_features(pairs: list[PoolPair], student: str, cache: Path | str, prices) -> tuple[np.ndarray, float]:
    """The student's feature matrix for ``pairs`` and its CPU seconds per pair (features only; predict is extra).

    ``logreg-ce:<name>``: :func:`distill.student.score_features` of that cross-encoder's scores, themselves
    cached in the JudgeCache (a cheap scorer is a judge too); ``logreg:<embedder>``:
    :func:`distill.student.pair_features` of the embeddings (documents included in the CPU time).
    """
    from distill.student import pair_features, score_features

    kind, name = parse_student(student)
    if kind == "logreg-ce":
        _, scores, cpu, _ = teacher_verdicts(pairs, name, cache, 0.5, prices)
        c0 = time.process_time()
        X = score_features(scores, [p.query for p in pairs], [p.doc for p in pairs])
        return X, cpu + (time.process_time() - c0) / max(1, len(pairs))
    from registry import load_embedder

    q, d, cpu = embed_pairs(pairs, load_embedder(name))
    return pair_features(q, d), cpu


def pool_names(data: str) -> list[str]:
    from data.judge_pairs import SOURCES

    names = [s.strip() for s in data.split(",") if s.strip()]
    bad = [n for n in names if n not in SOURCES]
    if not names or bad:
        raise ValueError(f"--data must list pools among {', '.join(SOURCES)}, got {data!r}")
    return names


def build_pool(source: str, n_queries: int, k: int = 10, seed: int = 0, max_chars: int = 1000) -> list[PoolPair]:
    """``n_queries`` of ``source`` (:mod:`data.judge_pairs`) x their BM25 top ``k``, as flat pairs with gold labels."""
    import data.judge_pairs as J

    fn = {"scifact": J.scifact_candidates, "nq": J.nq_candidates, "hotpotqa": J.hotpotqa_candidates}[source]
    return [PoolPair(source, q.qid, q.query, d, g) for q in fn(n_queries, k, seed, max_chars) for d, g in zip(q.docs, q.gold)]


def split_by_query(pairs: list[PoolPair], heldout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of (train, held-out) pairs; whole queries go to one side (seeded)."""
    if not 0.0 < heldout < 1.0:
        raise ValueError(f"held-out share must be in (0, 1), got {heldout}")
    qids = sorted({(p.source, p.qid) for p in pairs})
    rng = np.random.default_rng(seed)
    held = {qids[i] for i in rng.permutation(len(qids))[: max(1, int(round(heldout * len(qids))))]}
    mask = np.array([(p.source, p.qid) in held for p in pairs])
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def teacher_verdicts(pairs: list[PoolPair], teacher: str, cache_path: Path | str, threshold: float, prices, ledger=None):
    """Teacher labels, scores and CPU seconds per pair for ``pairs``, through the JudgeCache (paid once per pair ever).

    Returns ``(labels, scores, cpu_s_per_pair, RefreshReport)``.
    """
    from distill.judge_cache import JudgeCache, PairScorerJudge
    from registry import Registry, load_cross_encoder, weights_sha256

    spec = Registry().resolve(teacher, "cross-encoder")
    ranker = load_cross_encoder(teacher)
    scorer = PairScorerJudge(ranker, weights_sha256(spec.path) if spec.path else teacher, threshold, prices=prices)
    Path(cache_path).parent.mkdir(parents=True, exist_ok=True)
    with JudgeCache(cache_path, ledger=ledger) as cache:
        verdicts, report = cache.refresh(scorer, [(p.query, p.doc) for p in pairs])
    return (np.array([v.label for v in verdicts], dtype=int), np.array([v.score for v in verdicts]),
            float(np.mean([v.cpu_s for v in verdicts])), report)


def embed_pairs(pairs: list[PoolPair], embedder) -> tuple[np.ndarray, np.ndarray, float]:
    """(query vectors, document vectors, CPU seconds per pair): each distinct text embedded once."""
    c0 = time.process_time()
    qs = sorted({p.query for p in pairs})
    ds = sorted({p.doc for p in pairs})
    qv = dict(zip(qs, embedder.encode_queries(qs)))
    dv = dict(zip(ds, embedder.encode_documents(ds)))
    cpu = (time.process_time() - c0) / max(1, len(pairs))
    return np.stack([qv[p.query] for p in pairs]), np.stack([dv[p.doc] for p in pairs]), cpu


def distill_judge(teacher: str, student: str, data: str, out: str, queries: int = 150, top_k: int = 10,
                  threshold: float = 0.5, heldout: float = 0.4, max_chars: int = 1000,
                  cache: str = "runs/judge-cache.sqlite", seed: int = 0) -> dict:
    from distill.student import FeatureStudent
    from monitor.bounds import clopper_pearson
    from registry import load_prices

    parse_student(student)
    pools = pool_names(data)
    prices = load_prices()
    pairs = [p for src in pools for p in build_pool(src, queries, top_k, seed, max_chars)]
    labels, _, teacher_cpu, rep = teacher_verdicts(pairs, teacher, cache, threshold, prices)
    X, feat_cpu = student_features(pairs, student, cache, prices)
    tr, te = split_by_query(pairs, heldout, seed)
    st = FeatureStudent(features=student).fit(X[tr], labels[tr])
    c0 = time.process_time()
    pred = st.predict(X[te])
    predict_cpu = (time.process_time() - c0) / max(1, len(te))
    agree = clopper_pearson(int((pred == labels[te]).sum()), len(te))
    student_cpu = feat_cpu + predict_cpu
    report = {"teacher": teacher, "student": student, "data": pools, "pairs": len(pairs), "train_pairs": int(len(tr)),
              "heldout_pairs": int(len(te)), "teacher_positive_share": float(labels.mean()),
              "agreement": {"value": agree.estimate, "ci95": [agree.lower, agree.upper]},
              "cost_per_1k_usd": {"teacher": 1000 * prices.compute_cost(teacher_cpu),
                                  "student": 1000 * prices.compute_cost(student_cpu)},
              "cpu_ms_per_pair": {"teacher": 1000 * teacher_cpu, "student": 1000 * student_cpu},
              "cache": {"teacher_calls_paid_now": rep.calls, "hits": rep.hits, "cache_file": str(cache)},
              "threshold": threshold, "heldout_share": heldout, "seed": seed}
    outp = Path(out)
    st.save(outp)
    atomic_write_text(outp / "report.json", json.dumps(report, indent=2) + "\n")
    return report
