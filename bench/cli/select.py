"""``ragfix select``: pick a first stage on the user's own corpus, with intervals (Embedding Plateau, VI).

For every candidate (``bm25``, an embedder name or ``models/NAME`` folder, ``hybrid`` or
``hybrid:a+b``) on the folder's queries: nDCG@10, recall@100, MRR@10, each with a bootstrap 95%
interval, and the paired bootstrap interval of its difference to the incumbent (resampling the
same queries for both, so per-query difficulty cancels). A difference counts as significant when
its interval excludes 0. Also: per-query A/B against the incumbent (wins / losses / ties on
nDCG@10), a failure breakdown by query kind (digits, identifier-like tokens, rare terms, length
buckets), and a recommendation: the candidate with the largest significant nDCG@10 gain, else
"keep the incumbent".

**Label-free mode** (always computed; the only mode when the folder has no ``qrels/<split>.tsv``):
``--pseudo-queries`` held-out inverse-cloze sentences from the corpus (seeded apart from
``ragfix adapt``'s draw); each sentence is removed from its source document before indexing
(the inverse-cloze task, so no candidate can win by matching the sentence verbatim), every
candidate's top ``--pool-depth`` is pooled, and the teacher cross-encoder labels each pooled
document relevant when its probability is >= 0.5 (its best document when none is). With qrels,
``label_free.kendall_tau`` is Kendall's tau between the candidates' label-free and real nDCG@10, so
a user without qrels knows how far to trust the label-free ranking.

Dense candidates reuse the embedding cache (keyed by model fingerprint and corpus hash); the
label-free corpus re-encodes only the documents it changed.

Failure modes: a folder without ``corpus.jsonl`` -> :class:`data.DatasetError`; an unknown
candidate model -> :class:`registry.UnknownModelError` (both exit 2, nothing written); an
incumbent not among the candidates is added to them.
"""
from __future__ import annotations

import argparse
import random
import re
import time
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from bench.cli.argtypes import positive_int

__all__ = ["paired_bootstrap", "query_kinds", "run_candidates", "select_report", "add_parser"]

METRICS = ("ndcg@10", "recall@100", "mrr@10")
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]*")


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0) -> dict:
    """Mean of ``a`` and of ``a - b`` with percentile 95% intervals over ``n_boot`` resamples of the same queries."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"paired bootstrap needs two equal non-empty arrays, got {a.shape} and {b.shape}")
    idx = np.random.default_rng(seed).integers(0, a.size, size=(n_boot, a.size))
    ma, md = a[idx].mean(axis=1), (a - b)[idx].mean(axis=1)
    return {"mean": float(a.mean()), "ci95": [float(np.percentile(ma, 2.5)), float(np.percentile(ma, 97.5))],
            "delta": float((a - b).mean()), "delta_ci95": [float(np.percentile(md, 2.5)), float(np.percentile(md, 97.5))]}


def query_kinds(queries: dict[str, str], doc_freq: Counter, n_docs: int) -> dict[str, list[str]]:
    """Query ids per kind: ``digits``, ``identifier`` (a token mixing letters with digits or hyphens, or an
    all-caps acronym), ``rare_term`` (a token in at most 0.1% of documents, min 2), and three length buckets."""
    rare_cut = max(2, int(0.001 * n_docs))
    kinds: dict[str, list[str]] = {k: [] for k in ("digits", "identifier", "rare_term", "short<=8", "mid9-15", "long>15")}
    for qid, text in queries.items():
        toks = _TOKEN.findall(text)
        if any(c.isdigit() for c in text):
            kinds["digits"].append(qid)
        if any((re.search(r"\d", t) and re.search(r"[A-Za-z]", t)) or "-" in t or (t.isupper() and len(t) >= 2) for t in toks):
            kinds["identifier"].append(qid)
        if any(0 < doc_freq.get(t.lower(), 0) <= rare_cut for t in toks if len(t) > 2):
            kinds["rare_term"].append(qid)
        n = len(text.split())
        kinds["short<=8" if n <= 8 else "mid9-15" if n <= 15 else "long>15"].append(qid)
    return kinds


def _components(system: str) -> list[str]:
    if system.startswith("hybrid"):
        return system.split(":", 1)[1].split("+") if ":" in system else ["bm25", "minilm"]
    return [system]


def run_candidates(systems: Sequence[str], docs: Sequence, queries: Sequence[str], k: int = 100,
                   patch: dict[int, str] | None = None, embedders: dict | None = None, depth: int = 1000) -> dict:
    """SearchResults per system over ``docs`` (with ``patch``: index -> replacement text for a few documents).

    Same retrieval as ``bench retrieval`` (BM25, exact inner product on cached embeddings, RRF with
    k=60 over each component's top ``depth``), but dense rows named in ``patch`` are re-encoded alone.
    """
    from bench.benchmarks.bench_retrieval import build_retriever
    from retrieval.bm25 import BM25Index
    from retrieval.cache import EmbeddingCache
    from retrieval.dense import DenseIndex
    from retrieval.hybrid import reciprocal_rank_fusion

    patch = patch or {}
    embedders = {} if embedders is None else embedders
    texts = [patch.get(i, d.full_text()) for i, d in enumerate(docs)]
    base_texts = [d.full_text() for d in docs]
    ids = [d.id for d in docs]
    single: dict = {}
    need = max(k, depth)
    for comp in dict.fromkeys(c for s in systems for c in _components(s)):
        if comp == "bm25":
            single[comp] = BM25Index().index(texts).search(list(queries), need)
            continue
        emb_model = build_retriever(comp, None, embedders).embedder  # loads (or reuses) the embedder
        emb = EmbeddingCache().get_or_compute(emb_model.fingerprint, ids, base_texts, emb_model.encode_documents)
        if patch:
            rows = sorted(patch)
            emb = emb.copy()
            emb[rows] = emb_model.encode_documents([patch[r] for r in rows])
        single[comp] = DenseIndex(emb.shape[1]).add(emb).search(emb_model.encode_queries(list(queries)), need)
    out = {}
    for s in systems:
        comps = _components(s)
        if len(comps) == 1 and not s.startswith("hybrid"):
            r = single[s]
            out[s] = type(r)(r.indices[:, :k], r.scores[:, :k])
        else:
            out[s] = reciprocal_rank_fusion([single[c] for c in comps], k=60, top_k=k)
    return out


def _per_query(qrels: dict, qids: list[str], results: dict, docs: Sequence) -> dict[str, dict[str, dict[str, float]]]:
    from bench.eval.metrics import evaluate, run_from_results

    return {s: evaluate(qrels, run_from_results(qids, r, list(docs)), METRICS, per_query=True)[1] for s, r in results.items()}


def _summarise(per: dict, qids: list[str], incumbent: str, n_boot: int) -> dict:
    out = {}
    for s, m in per.items():
        row: dict = {"ci95": {}, "vs_incumbent": {}}
        for name in METRICS:
            a = np.array([m[name][q] for q in qids])
            b = np.array([per[incumbent][name][q] for q in qids])
            bs = paired_bootstrap(a, b, n_boot)
            row[name] = round(bs["mean"], 4)
            row["ci95"][name] = [round(x, 4) for x in bs["ci95"]]
            if s != incumbent:
                lo, hi = bs["delta_ci95"]
                row["vs_incumbent"][name] = {"delta": round(bs["delta"], 4), "ci95": [round(lo, 4), round(hi, 4)],
                                             "significant": bool(lo > 0 or hi < 0)}
        a = np.array([m["ndcg@10"][q] for q in qids])
        b = np.array([per[incumbent]["ndcg@10"][q] for q in qids])
        row["ab"] = {"wins": int((a > b + 1e-9).sum()), "losses": int((a < b - 1e-9).sum()), "ties": int((np.abs(a - b) <= 1e-9).sum())}
        out[s] = row
    return out


def _recommend(summary: dict, incumbent: str) -> tuple[str, str]:
    best, gain = incumbent, 0.0
    for s, row in summary.items():
        v = row["vs_incumbent"].get("ndcg@10")
        if v and v["significant"] and v["delta"] > gain:
            best, gain = s, v["delta"]
    if best == incumbent:
        sig_worse = [s for s, r in summary.items() if r["vs_incumbent"].get("ndcg@10", {}).get("significant")]
        return incumbent, (f"keep the incumbent {incumbent}: no candidate's nDCG@10 gain has a 95% paired interval above 0"
                           + (f" ({', '.join(sig_worse)} significantly worse)" if sig_worse else ""))
    v = summary[best]["vs_incumbent"]["ndcg@10"]
    ab = summary[best]["ab"]
    return best, (f"switch to {best}: nDCG@10 {summary[best]['ndcg@10']:.3f} vs {summary[incumbent]['ndcg@10']:.3f}, "
                  f"delta {v['delta']:+.3f} (95% paired CI {v['ci95'][0]:+.3f} .. {v['ci95'][1]:+.3f}); "
                  f"per query {ab['wins']} wins, {ab['losses']} losses, {ab['ties']} ties")


def _label_free(docs: Sequence, systems: list[str], incumbent: str, n_queries: int, pool_depth: int, teacher: str,
                work: Path, n_boot: int, seed: int, embedders: dict, log) -> dict:
    from bench.cli.adapt import _teacher_cached
    from data.rerank_pairs import _ict_sentences

    held = _ict_sentences(docs, n_queries, random.Random(seed))
    if not held:
        raise ValueError("label-free selection found no sentence to use as a pseudo-query (documents need >= 3 sentences)")
    patch = {i: rest for i, _, rest in held}
    queries = [s for _, s, _ in held]
    qids = [f"pseudo:{docs[i].id}" for i, _, _ in held]
    res = run_candidates(systems, docs, queries, k=100, patch=patch, embedders=embedders)
    pools = [sorted({int(d) for r in res.values() for d in r.indices[row, :pool_depth] if d >= 0} | {held[row][0]})
             for row in range(len(held))]
    pairs = [(queries[row], patch.get(d, docs[d].full_text())) for row, pool in enumerate(pools) for d in pool]
    log(f"label-free: {len(held)} held-out pseudo-queries, {len(pairs)} pooled pairs for {teacher}")
    logits = _teacher_cached(work, teacher, pairs, 32, 256, log)
    qrels: dict[str, dict[str, int]] = {}
    i = 0
    for row, pool in enumerate(pools):
        z = logits[i:i + len(pool)]
        i += len(pool)
        rel = {docs[d].id: 1 for d, v in zip(pool, z) if v >= 0.0}  # sigmoid(logit) >= 0.5
        if not rel:
            rel = {docs[pool[int(np.argmax(z))]].id: 1}
        qrels[qids[row]] = rel
    per = _per_query(qrels, qids, res, docs)
    summary = _summarise(per, qids, incumbent, n_boot)
    rec, why = _recommend(summary, incumbent)
    return {"n_queries": len(held), "pool_depth": pool_depth, "teacher": teacher, "pooled_pairs": len(pairs),
            "judged_relevant_per_query": round(float(np.mean([len(v) for v in qrels.values()])), 2),
            "metrics": summary, "recommendation": rec, "evidence": why}


def select_report(data: Path, systems: list[str], incumbent: str, split: str = "test", teacher: str = "reranker-l6",
                  pseudo_queries: int = 200, pool_depth: int = 10, n_boot: int = 2000, seed: int = 20261202,
                  work: Path | None = None, limit: int | None = None, label_free: bool = True, log=print) -> dict:
    """The whole selection report as a dict (see the module docstring)."""
    from data import DatasetError, load_beir, load_documents_jsonl

    data = Path(data)
    if not (data / "corpus.jsonl").is_file():
        raise DatasetError(f"{data}: no corpus.jsonl; select needs the documents (one JSON line each with _id and text)")
    if incumbent not in systems:
        systems = [incumbent, *systems]
    work = Path(work) if work else Path("runs") / "select"
    work.mkdir(parents=True, exist_ok=True)
    has_qrels = (data / "qrels" / f"{split}.tsv").is_file()
    embedders: dict = {}
    report: dict = {"data": str(data), "split": split if has_qrels else None, "candidates": systems, "incumbent": incumbent}
    if has_qrels:
        ds = load_beir(data, split).limit(limit)
        docs, qids = ds.corpus, list(ds.queries)
        t0 = time.monotonic()
        res = run_candidates(systems, docs, [ds.queries[q] for q in qids], k=100, embedders=embedders)
        per = _per_query(ds.qrels, qids, res, docs)
        summary = _summarise(per, qids, incumbent, n_boot)
        rec, why = _recommend(summary, incumbent)
        df: Counter = Counter()
        for d in docs:
            df.update({t.lower() for t in _TOKEN.findall(d.full_text())})
        kinds = query_kinds({q: ds.queries[q] for q in qids}, df, len(docs))
        breakdown = {kind: {"n": len(ids), **{s: round(float(np.mean([per[s]["ndcg@10"][q] for q in ids])), 4) for s in systems}}
                     for kind, ids in kinds.items() if ids}
        report.update({"n_queries": len(qids), "n_docs": len(docs), "metrics": summary, "recommendation": rec, "evidence": why,
                       "breakdown_ndcg@10": breakdown, "seconds_real": round(time.monotonic() - t0, 1)})
    else:
        docs = load_documents_jsonl(data / "corpus.jsonl")
        report.update({"n_queries": 0, "n_docs": len(docs)})
    if label_free or not has_qrels:
        lf = _label_free(docs, systems, incumbent, pseudo_queries, pool_depth, teacher, work, n_boot, seed, embedders, log)
        if has_qrels:
            from scipy.stats import kendalltau

            real = [report["metrics"][s]["ndcg@10"] for s in systems]
            free = [lf["metrics"][s]["ndcg@10"] for s in systems]
            tau = kendalltau(real, free).statistic if len(systems) > 1 else float("nan")
            lf["kendall_tau"] = None if tau != tau else round(float(tau), 4)
            lf["top_matches"] = max(systems, key=lambda s: report["metrics"][s]["ndcg@10"]) == max(
                systems, key=lambda s: lf["metrics"][s]["ndcg@10"])
        else:
            report.update({"metrics": lf["metrics"], "recommendation": lf["recommendation"], "evidence": lf["evidence"]})
        report["label_free"] = lf
    return report


def _markdown(rep: dict) -> str:
    from bench.report import markdown_table

    lines = [f"Selection on {rep['data']} ({rep['n_queries']} {rep['split'] or 'no'}-qrels queries, {rep['n_docs']} docs); "
             f"incumbent {rep['incumbent']}", ""]
    rows = []
    for s, r in rep["metrics"].items():
        v = r["vs_incumbent"].get("ndcg@10")
        rows.append({"system": s, **{m: r[m] for m in METRICS},
                     "ndcg@10 ci95": f"{r['ci95']['ndcg@10'][0]:.3f}..{r['ci95']['ndcg@10'][1]:.3f}",
                     "delta vs incumbent (ci95)": f"{v['delta']:+.3f} ({v['ci95'][0]:+.3f}..{v['ci95'][1]:+.3f})" if v else "-",
                     "A/B w/l/t": f"{r['ab']['wins']}/{r['ab']['losses']}/{r['ab']['ties']}"})
    lines.append(markdown_table(rows, list(rows[0])))
    lines += ["", f"**Recommendation: {rep['recommendation']}** — {rep['evidence']}", ""]
    if "breakdown_ndcg@10" in rep:
        brow = [{"query kind": k, **v} for k, v in rep["breakdown_ndcg@10"].items()]
        lines += ["nDCG@10 by query kind:", "", markdown_table(brow, list(brow[0])), ""]
    lf = rep.get("label_free")
    if lf:
        lrow = [{"system": s, "label-free ndcg@10": r["ndcg@10"],
                 "ci95": f"{r['ci95']['ndcg@10'][0]:.3f}..{r['ci95']['ndcg@10'][1]:.3f}"} for s, r in lf["metrics"].items()]
        lines += [f"Label-free ({lf['n_queries']} held-out pseudo-queries, pool depth {lf['pool_depth']}, judged by {lf['teacher']}; "
                  f"recommends {lf['recommendation']}):", "", markdown_table(lrow, list(lrow[0])), ""]
        if "kendall_tau" in lf:
            lines.append(f"Agreement with the real qrels: Kendall tau {lf['kendall_tau']}, top candidate matches: {lf['top_matches']}")
    return "\n".join(lines) + "\n"


def _cmd(args: argparse.Namespace) -> int:
    from bench.report import write_results

    systems = [s.strip() for s in args.candidates.split(",") if s.strip()]
    if not systems:
        raise ValueError("--candidates is empty; give e.g. bm25,minilm,hybrid")
    rep = select_report(args.data, systems, args.incumbent, args.split, args.teacher, args.pseudo_queries, args.pool_depth,
                        args.n_boot, work=args.work, limit=args.limit, label_free=not args.no_label_free,
                        log=lambda m: print(m, flush=True))
    md = _markdown(rep)
    print(md)
    if args.out:
        config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"}
        extra = {k: v for k, v in rep.items() if k != "metrics"}
        write_results(args.out, config, rep["metrics"], md, **extra)
        print(f"wrote {args.out}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("select", help="choose a first stage on your corpus: intervals, A/B, label-free mode (VI)")
    p.add_argument("--data", required=True, type=Path, help="folder with corpus.jsonl (+ queries.jsonl, qrels/ if judged)")
    p.add_argument("--candidates", default="bm25,minilm,hybrid", help="comma list as in bench retrieval --systems")
    p.add_argument("--incumbent", default="bm25", help="the first stage in use now")
    p.add_argument("--split", default="test")
    p.add_argument("--teacher", default="reranker-l6", help="cross-encoder that labels pooled candidates (label-free)")
    p.add_argument("--pseudo-queries", type=positive_int, default=200)
    p.add_argument("--pool-depth", type=positive_int, default=10)
    p.add_argument("--n-boot", type=positive_int, default=2000)
    p.add_argument("--limit", type=positive_int, default=None, help="first N judged queries only")
    p.add_argument("--no-label-free", action="store_true", help="skip the label-free ranking when qrels exist")
    p.add_argument("--work", type=Path, default=None, help="teacher-label cache (default runs/select)")
    p.add_argument("--out", type=Path, default=None, help="results JSON (a .md beside it)")
    p.set_defaults(func=_cmd)
