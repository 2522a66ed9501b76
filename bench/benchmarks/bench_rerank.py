"""``ragfix bench rerank``: the reranker's latency on the request path, naive against each fix (VIII).

For each query the first stage (BM25, top K) is retrieved once; then every variant reranks the
same K candidates, the variants *interleaved* query by query in a rotating order, so a noisy,
shared machine slows all of them alike. Per variant: p50 / p95 / p99 rerank latency per query,
pairs scored per second, CPU seconds per query, nDCG@10, and top-10 overlap with the naive
ranking; beside them the arithmetic floor of the naive workload (its FLOPs over a matmul rate
measured in this run). A Pareto plot (latency vs nDCG@10) is written next to the JSON.

Variants:
    naive       sentence-transformers ``CrossEncoder.predict`` on all K pairs, fp32, batch 32, the
                model's own max length (the baseline the issue names)
    length      length-sorted token-budget batches (rerank.batching), same scores
    truncate    documents cut to ``--max-doc-tokens`` (rerank.truncation), batch 32
    int8        ``--int8-backend`` (default ONNX Runtime dynamic int8), batch 32
    bf16        torch bf16 autocast, batch 32 (skipped, with the reason, on CPUs without native bf16)
    cascade     the ``--pruner`` model scores all K, the model ranks the ``--keep`` best (rerank.cascade)
    adaptive    per-query candidate count from the BM25 scores, ratio fitted on the train split (fitted only
                when a variant uses it; a folder without ``qrels/train.tsv`` gets the unfitted default
                ratio ``DEFAULT_ADAPTIVE_RATIO`` = 0.5, and the results say so)
    microbatch  the length engine behind the cross-request MicroBatcher, one request at a time
    fastest     ``rerank.presets.fastest_stack``: adaptive -> the model on ``--fastest-backend`` (ONNX
                int8), length-aware batching: the fastest combination, which trades the full rerank's
                ranking for BM25's below the cut
    pruner      the ``--pruner`` alone over all K, the engine ``best_r1`` runs it on (its cost inside ``best_r1``)
    best_r1     the first round's ``best`` (``rerank.presets.best_stack``): cascade: the pruner on
                ``--best-pruner-backend`` (int8, ``--pruner-doc-tokens``) over all K, the model on
                ``--r1-backend`` over the ``--keep`` survivors, length-aware batching
    dense_pruner  the precomputed pruner alone (``rerank.precomputed.PrecomputedPruner``): query encoding
                + cosines against the index-time document vectors of ``--embedder``, z-fused with BM25
    best        ``rerank.presets.best_precomputed_stack``: the precomputed pruner over all K, the model on
                ``--best-backend`` (bf16) over the ``--best-keep`` best, final order ``--best-final``
                (``fused``: the fused stage's z-score CombSUM of logit + BM25 + cosine over the kept ones)
    best_ce     as ``best`` with the cross-encoder alone ordering the kept ones (``final="ce"``)
    onnx_peer   ONNX Runtime fp32 on our own export of the same model, batch 32, full length (what
                sentence-transformers' ``backend="onnx"`` runs, without optimum)

``best`` and ``fastest`` are the library objects of :mod:`rerank.presets`; this module only turns
its arguments into their constructor arguments.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from data import RetrievalDataset, load_beir
from bench.eval.metrics import evaluate
from bench.report import markdown_table, write_results
from bench.cli.argtypes import fraction, positive_int
from rerank.backends import BACKENDS
from rerank.presets import PRECOMPUTED_KEEP

__all__ = ["VARIANTS", "PRECOMPUTED", "HOTPOT", "DEFAULT_ADAPTIVE_RATIO", "run_rerank_bench", "pareto_plot", "add_parser",
           "hotpot_dataset", "ndcg_diff_vs_naive", "naive_scores"]

log = logging.getLogger(__name__)

# The adaptive rule's ratio when the data has no train split to fit it on (documented in the results).
DEFAULT_ADAPTIVE_RATIO = 0.5

VARIANTS = ("naive", "length", "truncate", "int8", "bf16", "cascade", "adaptive", "microbatch", "fastest", "pruner", "best_r1",
            "dense_pruner", "best", "best_ce", "onnx_peer")
# Variants built on the precomputed pruner (they report its index-time cost: index_s, bytes_per_doc).
PRECOMPUTED = ("dense_pruner", "best", "best_ce")
# The data value that selects the untrained-on corpus: HotpotQA questions (HaluEval QA) no training stage sampled.
HOTPOT = "halueval-qa"


def _load_ce(name: str, device: str = "cpu"):
    from registry import load_cross_encoder

    return load_cross_encoder(name, device=device).model


def hotpot_dataset(n_queries: int | None, seed: int = 0) -> RetrievalDataset:
    """HotpotQA questions (HaluEval QA) that no reranker training stage sampled, over its ~10k knowledge
    passages: the corpus and query draw of ``bench.probes.probe_fusion`` (``n_queries`` drawn with ``seed``)."""
    import random

    from data import load_halueval_qa
    from bench.probes.probe_fusion import held_out_hotpot_queries
    from retrieval.types import Document

    ds = load_halueval_qa()
    held = held_out_hotpot_queries(list(ds.queries))
    n = len(held) if n_queries is None else min(n_queries, len(held))
    qids = sorted(random.Random(seed).sample(held, n), key=lambda q: int(q[1:]))
    docs = [Document(f"hotpotqa:{i}", d.text) for i, d in enumerate(ds.corpus)]  # the training miner's ids: its cache
    qrels = {q: {f"hotpotqa:{int(d[2:])}": r for d, r in ds.qrels[q].items()} for q in qids}
    return RetrievalDataset("halueval-qa-heldout", docs, {q: ds.queries[q] for q in qids}, qrels)


def _fit_adaptive(data: Path, k: int, min_k: int, target: float, n_queries: int = 300):
    """Fit the candidate-count ratio on the train split (never the test queries)."""
    from rerank.candidates import AdaptiveCandidateCount
    from retrieval.retrievers import BM25Retriever

    train = load_beir(data, "train").limit(n_queries)
    bm = BM25Retriever().index(train.corpus)
    qids = list(train.queries)
    res = bm.search([train.queries[q] for q in qids], k)
    scores, masks = [], []
    for i, q in enumerate(qids):
        ids = [train.corpus[int(j)].id for j in res.indices[i] if j >= 0]
        scores.append(np.asarray(res.scores[i][: len(ids)]))
        masks.append(np.array([train.qrels.get(q, {}).get(d, 0) > 0 for d in ids]))
    return AdaptiveCandidateCount(min_k=min_k, max_k=k).fit(scores, masks, target=target)


def _wanted_variants(args: argparse.Namespace) -> list[str]:
    """The ``--variants`` list, checked (names, bf16 support) before any model is loaded."""
    from rerank.backends import bf16_refusal

    wanted = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = sorted(set(wanted) - set(VARIANTS))
    if bad or not wanted:
        raise ValueError(f"--variants: unknown {bad or 'empty list'}; allowed: {', '.join(VARIANTS)}")
    no_bf16 = None if args.force_bf16 or args.device != "cpu" else bf16_refusal()
    for opt, variant in (("best_backend", "best"), ("best_backend", "best_ce"), ("r1_backend", "best_r1"),
                         ("best_pruner_backend", "best_r1"), ("fastest_backend", "fastest")):
        if no_bf16 and variant in wanted and getattr(args, opt) == "bf16":
            raise ValueError(f"--{opt.replace('_', '-')} bf16: {no_bf16}; pick onnx-int8 or fp32, or pass --force-bf16")
    return wanted


def _uses_adaptive(wanted: Sequence[str], pruner: str | None) -> bool:
    return "adaptive" in wanted or "fastest" in wanted or ("best_r1" in wanted and not pruner)


def _adaptive_for(args: argparse.Namespace, wanted: Sequence[str]):
    """The adaptive candidate rule if a variant uses it: fitted on ``qrels/train.tsv``, or the default
    ratio when there is no train split; ``(rule or None, how it was chosen)``."""
    from rerank.candidates import AdaptiveCandidateCount

    if not _uses_adaptive(wanted, args.pruner):
        return None, "not used by the variants run"
    if not (Path(args.data) / "qrels" / "train.tsv").is_file():
        return (AdaptiveCandidateCount(DEFAULT_ADAPTIVE_RATIO, min(args.min_k, args.k), args.k),
                f"default ratio {DEFAULT_ADAPTIVE_RATIO} ({args.data} has no qrels/train.tsv to fit it on)")
    return _fit_adaptive(args.data, args.k, min(args.min_k, args.k), args.adaptive_target), "fitted on the train split"


def _build_variants(args: argparse.Namespace, model, pruner, adaptive, doc_index=None,
                    embedder=None) -> tuple[dict[str, Callable], dict[str, str]]:
    """variant -> f(query, docs, first_stage_scores) -> (order over docs, pairs scored)."""
    from rerank.backends import bf16_refusal
    from rerank.candidates import AdaptiveReranker
    from rerank.cascade import CascadeReranker
    from rerank.engine import RerankEngine
    from rerank.microbatch import MicroBatcher
    from rerank.precomputed import PrecomputedPruner
    from rerank.presets import best_precomputed_stack, best_stack, fastest_stack

    wanted = _wanted_variants(args)
    no_bf16 = None if args.force_bf16 or args.device != "cpu" else bf16_refusal()
    budget = args.max_tokens_per_batch
    fns: dict[str, Callable] = {}
    skipped: dict[str, str] = {}

    dump = getattr(args, "_dump", None)  # --dump-scores: per query, the scores each variant computed

    def by_scores(scorer, name=None):
        def f(q, texts, _fs, _docs=None):
            s = scorer.score_pairs([(q, t) for t in texts])
            if dump is not None and name:
                dump.setdefault(q, {})[name] = np.asarray(s, dtype=np.float32)
            return np.argsort(-s, kind="stable"), len(texts)
        return f

    def naive(q, texts, _fs, _docs=None):
        return np.argsort(-naive_scores(model, q, texts), kind="stable"), len(texts)

    def cascade_fn(casc):
        def f(q, texts, _fs, _docs=None):
            from retrieval.types import Document

            docs = [Document(str(i), t) for i, t in enumerate(texts)]
            r = casc.rank(q, docs)
            return r.order, len(texts) + min(casc.keep, len(texts))
        return f

    def with_adaptive(inner):
        def f(q, texts, fs, _docs=None):
            k = adaptive.select(fs)
            order, pairs = inner(q, texts[:k], fs[:k])
            return np.concatenate([order, np.arange(k, len(texts))]), pairs
        return f

    def stack_fn(stack):  # a preset: pairs counted by the stack itself
        def f(q, texts, fs, _docs=None):
            from retrieval.types import Document

            docs = [Document(str(i), t) for i, t in enumerate(texts)]
            before = stack.pairs_scored_
            r = stack.rank(q, docs, fs) if isinstance(stack, AdaptiveReranker) else stack.rank(q, docs)
            return r.order, stack.pairs_scored_ - before
        return f

    def precomputed_fn(stack):  # the request pays the query encoding, the lookups, the pairs it keeps
        def f(q, texts, fs, docs):
            before = stack.pairs_scored_
            r = stack.rank(q, docs, fs)
            if dump is not None and stack.name == "best":
                dump.setdefault(q, {}).update(pruner=r.signals["pruner"].astype(np.float32), dense=r.signals["dense"].astype(np.float32),
                                              kept=r.order[: r.kept].copy(), ce_kept=r.signals["ce_kept"].astype(np.float32),
                                              bm25=np.asarray(fs, dtype=np.float32), ids=[d.id for d in docs])
            return r.order, stack.pairs_scored_ - before
        return f

    def pruner_only(pr):
        def f(q, texts, fs, docs):
            return np.argsort(-pr.score(q, docs, fs)[0], kind="stable"), 0
        return f

    best = None
    if "best_r1" in wanted or ("pruner" in wanted and pruner is not None):
        best = best_stack(model, pruner, adaptive=adaptive, backend=args.r1_backend,
                          pruner_backend=args.best_pruner_backend, keep=args.keep, max_tokens_per_batch=budget,
                          ranker_doc_tokens=args.best_ranker_doc_tokens, pruner_doc_tokens=args.pruner_doc_tokens)

    for v in wanted:
        if v == "naive" and getattr(args, "quality_only", False):
            # Quality-only runs score the naive pairs with the fp32 length-sorted engine: the same logits as
            # CrossEncoder.predict (tests/unit/test_rerank_engine.py::test_fp32_engine_matches_crossencoder_predict)
            # for less padding; its latency is not the naive one and is not reported as such.
            fns[v] = by_scores(RerankEngine(model, "fp32", max_tokens_per_batch=budget, name="naive-scores"), "naive")
        elif v == "naive":
            fns[v] = naive
        elif v == "length":
            fns[v] = by_scores(RerankEngine(model, "fp32", max_tokens_per_batch=budget, name="length"))
        elif v == "truncate":
            fns[v] = by_scores(RerankEngine(model, "fp32", length_sort=False, max_batch=32, max_doc_tokens=args.max_doc_tokens))
        elif v == "int8":
            fns[v] = by_scores(RerankEngine(model, args.int8_backend, length_sort=False, max_batch=32))
        elif v == "bf16":
            if no_bf16:
                skipped[v] = f"{no_bf16}; run with --force-bf16 to measure it anyway"
                continue
            fns[v] = by_scores(RerankEngine(model, "bf16", length_sort=False, max_batch=32))
        elif v == "cascade":
            if pruner is None:
                skipped[v] = "no --pruner model"
                continue
            fns[v] = cascade_fn(CascadeReranker(RerankEngine(pruner, "fp32", length_sort=False, max_batch=32),
                                                RerankEngine(model, "fp32", length_sort=False, max_batch=32), keep=args.keep))
        elif v == "adaptive":
            fns[v] = with_adaptive(naive)
        elif v == "microbatch":
            mb = MicroBatcher(RerankEngine(model, "fp32", max_tokens_per_batch=budget), max_wait_ms=2.0)
            fns[v] = by_scores(mb)
            fns[v].closer = mb  # type: ignore[attr-defined]
        elif v == "fastest":
            fns[v] = stack_fn(fastest_stack(model, adaptive, backend=args.fastest_backend, max_tokens_per_batch=budget))
        elif v == "pruner":
            if pruner is None:
                skipped[v] = "no --pruner model"
                continue
            fns[v] = by_scores(best.pruner)  # the engine best runs the pruner on
        elif v == "best_r1":
            fns[v] = stack_fn(best)
        elif v == "dense_pruner":
            fns[v] = pruner_only(PrecomputedPruner(embedder, doc_index))
        elif v in ("best", "best_ce"):
            fns[v] = precomputed_fn(best_precomputed_stack(
                model, embedder, doc_index, keep=args.best_keep, backend=args.best_backend,
                final="ce" if v == "best_ce" else args.best_final, max_tokens_per_batch=budget, name=v,
                gap=args.best_gap, min_keep=args.best_min_keep))
        elif v == "onnx_peer":
            fns[v] = by_scores(RerankEngine(model, "onnx", length_sort=False, max_batch=32))
    return fns, skipped


def naive_scores(model, query: str, texts: Sequence[str]) -> np.ndarray:
    """The baseline every rerank fix is measured against: ``CrossEncoder.predict`` over all pairs, fp32, batch 32."""
    import torch

    s = model.predict([(query, t) for t in texts], batch_size=32, show_progress_bar=False,
                      activation_fn=torch.nn.Identity(), convert_to_numpy=True)
    return np.asarray(s).reshape(len(texts), -1)[:, 0]


def ndcg_diff_vs_naive(variant: dict, naive: dict, qids: Sequence[str], n_boot: int = 2000, seed: int = 0) -> dict:
    """Paired nDCG@10 difference against naive over the same queries: mean and percentile bootstrap 95% interval.

    ``variant`` / ``naive``: query id -> nDCG@10. The bar of issue 21: point >= -0.005, lower end >= -0.01
    (``ndcg_bar_met``). A query missing from either is refused (the runs must cover the same queries).
    """
    from monitor.bounds import bootstrap_interval

    missing = [q for q in qids if q not in variant or q not in naive]
    if missing or not qids:
        raise ValueError(f"ndcg_diff_vs_naive: {len(missing)} of {len(qids)} queries lack a per-query nDCG@10 "
                         f"(first: {missing[:3]}); score every query with every variant")
    d = np.array([variant[q] - naive[q] for q in qids], dtype=np.float64)
    if d.size < 2:  # no interval from one query
        return {"ndcg_diff": float(d.mean()), "ndcg_diff_ci95": [float("nan"), float("nan")], "ndcg_bar_met": False}
    ci = bootstrap_interval(d, n_boot=n_boot, seed=seed)
    return {"ndcg_diff": float(d.mean()), "ndcg_diff_ci95": [ci.lower, ci.upper],
            "ndcg_bar_met": bool(d.mean() >= -0.005 and ci.lower >= -0.01)}


def _pct(xs: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1000.0, p)) if xs else float("nan")


def run_rerank_bench(ds: RetrievalDataset, args: argparse.Namespace) -> tuple[dict, dict]:
    import torch

    from rerank.floor import config_flops, matmul_gflops
    from rerank.truncation import TruncationPolicy, encode_pairs
    from retrieval.retrievers import BM25Retriever

    if args.threads:
        torch.set_num_threads(args.threads)
    # Everything that can be wrong with the arguments is found before a model loads.
    from registry import Registry

    wanted = _wanted_variants(args)
    registry = Registry()
    for name in filter(None, (args.model, args.pruner)):
        if not Path(name).exists():
            registry.resolve(name, "cross-encoder")
    adaptive, adaptive_how = _adaptive_for(args, wanted)
    model = _load_ce(args.model, args.device)
    uses_pruner = any(v in wanted for v in ("cascade", "pruner", "best_r1"))
    pruner = _load_ce(args.pruner, args.device) if args.pruner and uses_pruner else None
    embedder = doc_index = None
    if any(v in wanted for v in PRECOMPUTED):
        from registry import load_embedder
        from rerank.precomputed import DocVectorIndex

        embedder = load_embedder(args.embedder, registry, **({"device": args.device} if args.device != "cpu" else {}))
        # Index time, measured: the document side is encoded once over the whole corpus (a fresh
        # encoding unless --reuse-index, so index_s is a real build and not a cache load).
        doc_index = DocVectorIndex.build(embedder, ds.corpus, refresh=not args.reuse_index)
        log.info(f"document vectors: {len(doc_index)} docs in {doc_index.index_s:.1f} s "
                 f"({'cache load' if doc_index.from_cache else 'encoded'}), {doc_index.bytes_per_doc} bytes/doc")
    fns, skipped = _build_variants(args, model, pruner, adaptive, doc_index, embedder)
    names = list(fns)

    qids = list(ds.queries)
    bm = BM25Retriever().index(ds.corpus)
    res = bm.search([ds.queries[q] for q in qids], args.k)
    cands = []
    for i, q in enumerate(qids):
        idx = [int(j) for j in res.indices[i] if j >= 0]
        cands.append(([ds.corpus[j] for j in idx], np.asarray(res.scores[i][: len(idx)], dtype=np.float64)))

    # Warm-up (not timed): first calls pay thread-pool start, ONNX session and allocator costs.
    q0, (d0, s0) = ds.queries[qids[0]], cands[0]
    for n in names:
        fns[n](q0, [d.full_text() for d in d0[:8]], s0[:8], d0[:8])

    lat = {n: [] for n in names}
    cpu = {n: [] for n in names}
    pairs = {n: 0 for n in names}
    runs = {n: {} for n in names}
    rates, floors = [], []
    policy = TruncationPolicy(int(model.max_length))
    t_loop, planned = time.perf_counter(), len(qids)
    for qi, qid in enumerate(list(qids)):
        if args.time_budget_s and time.perf_counter() - t_loop > args.time_budget_s:
            log.warning(f"--time-budget-s {args.time_budget_s}: stopping after {qi} of {planned} queries")
            qids = qids[:qi]
            break
        query = ds.queries[qid]
        docs, fs = cands[qi]
        texts = [d.full_text() for d in docs]
        if not args.quality_only:
            rates.append(matmul_gflops(1024, repeats=3))
            floors.append(config_flops(encode_pairs(model.tokenizer, [(query, t) for t in texts], policy).lengths,
                                       model.model.config))
        rot = qi % len(names)
        for n in names[rot:] + names[:rot]:
            w0, c0 = time.perf_counter(), time.process_time()
            order, npairs = fns[n](query, texts, fs, docs)
            lat[n].append(time.perf_counter() - w0)
            cpu[n].append(time.process_time() - c0)
            pairs[n] += npairs
            runs[n][qid] = {docs[int(j)].id: float(len(order) - r) for r, j in enumerate(order)}
        if args.progress:
            log.info(f"  [{qi + 1}/{len(qids)}] " + "  ".join(f"{n}={lat[n][-1] * 1000:.0f}ms" for n in names))
    for n in names:
        closer = getattr(fns[n], "closer", None)
        if closer is not None:
            closer.close()

    rate = float(max(rates)) if rates else float("nan")
    floor_ms = float(np.median(floors)) / (rate * 1e9) * 1000.0 if floors else float("nan")
    metrics: dict[str, dict] = {}
    qrels = {q: ds.qrels[q] for q in qids if q in ds.qrels}  # the queries run (all, unless --time-budget-s cut them)
    per_q = {n: evaluate(qrels, runs[n], ("ndcg@10",), per_query=True)[1]["ndcg@10"] for n in names}
    for n in names:
        nd = evaluate(qrels, runs[n], ("ndcg@10",))["ndcg@10"]
        overlap = float(np.mean([len(set(sorted(runs[n][q], key=runs[n][q].get, reverse=True)[:10])
                                     & set(sorted(runs["naive"][q], key=runs["naive"][q].get, reverse=True)[:10])) / 10
                                 for q in qids])) if "naive" in runs else None
        metrics[n] = {"p50_ms": _pct(lat[n], 50), "p95_ms": _pct(lat[n], 95), "p99_ms": _pct(lat[n], 99),
                      "pairs_per_s": pairs[n] / max(sum(lat[n]), 1e-9), "cpu_s": float(np.mean(cpu[n])),
                      "ndcg@10": nd, "top10_overlap_naive": overlap, "pairs_per_query": pairs[n] / len(qids)}
        if "naive" in per_q:
            metrics[n].update(ndcg_diff_vs_naive(per_q[n], per_q["naive"], qids))
        if n in PRECOMPUTED and doc_index is not None:
            metrics[n].update(index_s=doc_index.index_s, index_from_cache=doc_index.from_cache,
                              bytes_per_doc=doc_index.bytes_per_doc, index_docs=len(doc_index),
                              embedder=args.embedder, embedder_fingerprint=doc_index.fingerprint)
    base = metrics.get("naive")
    for n in names:
        if base:
            metrics[n]["speedup_p50"] = base["p50_ms"] / metrics[n]["p50_ms"]
            metrics[n]["base_p50_ms"] = base["p50_ms"]
            metrics[n]["base_ndcg@10"] = base["ndcg@10"]
    extra = {"floor_ms": floor_ms, "matmul_gflops": rate, "matmul_gflops_median": float(np.median(rates)),
             "skipped": skipped,
             "adaptive": None if adaptive is None else {
                 "ratio": adaptive.ratio, "how": adaptive_how, "fit_kept_share": getattr(adaptive, "kept_share_", None),
                 "fit_mean_k": getattr(adaptive, "mean_k_", None), "min_k": adaptive.min_k},
             "first_stage": f"BM25 top {args.k}", "device": args.device, "n_queries_run": len(qids),
             "n_queries_planned": planned,
             "timing": ("NOT VALID: --quality-only run (naive scored by the fp32 length-sorted engine, no floor, "
                        "machine under load); only ndcg@10, ndcg_diff*, top10_overlap_naive count")
                       if args.quality_only else "interleaved per query"}
    return metrics, extra


def pareto_plot(metrics: dict, out: Path, floor_ms: float | None = None, title: str = "") -> Path:
    """Latency (p50, log x) against nDCG@10 per variant, with the Pareto front drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    pts = sorted((m["p50_ms"], m["ndcg@10"], n) for n, m in metrics.items())
    for x, y, n in pts:
        ax.scatter(x, y, color="C3" if n == "naive" else ("C2" if n == "best" else "C0"), zorder=3)
        ax.annotate(n, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    front, best_y = [], -1.0
    for x, y, _ in pts:
        if y > best_y:
            front.append((x, y))
            best_y = y
    if len(front) > 1:
        ax.plot(*zip(*front), color="C2", lw=1, ls="--", label="Pareto front")
    if floor_ms and np.isfinite(floor_ms):
        ax.axvline(floor_ms, color="grey", ls=":", lw=1, label=f"floor of the naive workload ({floor_ms:.0f} ms)")
    ax.set_xscale("log")
    ax.set_xlabel("rerank latency per query, p50 (ms, log scale)")
    ax.set_ylabel("nDCG@10")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def rerank_markdown(metrics: dict, extra: dict, args: argparse.Namespace, ds_name: str) -> tuple[str, str]:
    """The results table and the verdict lines of one run (``(header line, whole markdown)``)."""
    split = args.split if str(args.data) != HOTPOT else "held-out questions"
    cols = ["variant", "p50_ms", "p95_ms", "p99_ms", "speedup_p50", "pairs_per_s", "cpu_s", "ndcg@10", "ndcg_diff",
            "ndcg_diff_ci95", "top10_overlap_naive", "pairs_per_query"]
    if args.quality_only:  # no valid latency in such a run: keep it out of the table
        cols = ["variant", "ndcg@10", "ndcg_diff", "ndcg_diff_ci95", "top10_overlap_naive", "pairs_per_query"]
    rows = [{"variant": n, **m, "ndcg_diff_ci95": "[{:+.4f}, {:+.4f}]".format(*m["ndcg_diff_ci95"]) if "ndcg_diff_ci95" in m else ""}
            for n, m in metrics.items()]
    # Name only the pruners of the variants that ran.
    pruners = ([f", pruner {args.pruner}"] if args.pruner and any(v in metrics for v in ("cascade", "pruner", "best_r1")) else []) + \
              ([f", precomputed pruner {args.embedder}"] if any(v in metrics for v in PRECOMPUTED) else [])
    head = (f"Rerank on {ds_name} ({split}, {extra['n_queries_run']} queries, {extra['first_stage']}), model {args.model}"
            f"{''.join(pruners)}; floor of the naive workload {extra['floor_ms']:.0f} ms "
            f"at {extra['matmul_gflops']:.0f} GFLOP/s (best 1024^3 fp32 matmul in this run)\n\n")
    if args.quality_only:
        head = (f"Rerank quality on {ds_name} ({split}, {extra['n_queries_run']} of {extra['n_queries_planned']} queries run, "
                f"{extra['first_stage']}), model {args.model}; --quality-only: naive's logits from the fp32 length-sorted "
                f"engine, latency not measured; ndcg_diff = variant - naive, paired bootstrap 95% interval\n\n")
    md = head + markdown_table(rows, cols, floatfmt=".3g")
    for name in ("best", "best_ce", "fastest"):
        if name in metrics and "naive" in metrics:
            b, n = metrics[name], metrics["naive"]
            ok = b["speedup_p50"] >= 8 and b["ndcg_bar_met"]
            if args.quality_only:
                md += (f"\n{name}: nDCG@10 {n['ndcg@10']:.4f} -> {b['ndcg@10']:.4f} ({b['ndcg_diff']:+.4f}, paired 95% interval "
                       f"[{b['ndcg_diff_ci95'][0]:+.4f}, {b['ndcg_diff_ci95'][1]:+.4f}]), top-10 overlap "
                       f"{b['top10_overlap_naive']:.2f}; quality bar (diff >= -0.005, low >= -0.01): "
                       f"{'met' if b['ndcg_bar_met'] else 'NOT met'}; latency not measured in a --quality-only run\n")
                continue
            md += (f"\nnaive -> {name}: p50 {n['p50_ms']:.0f} -> {b['p50_ms']:.0f} ms ({b['speedup_p50']:.1f}x), "
                   f"nDCG@10 {n['ndcg@10']:.4f} -> {b['ndcg@10']:.4f} ({b['ndcg@10'] - n['ndcg@10']:+.4f}), "
                   f"paired 95% interval [{b['ndcg_diff_ci95'][0]:+.4f}, {b['ndcg_diff_ci95'][1]:+.4f}], "
                   f"top-10 overlap {b['top10_overlap_naive']:.2f}; target (>= 8x; diff >= -0.005, interval low >= -0.01): "
                   f"{'met' if ok else 'NOT met'}\n")
            if "index_s" in b:
                md += (f"  {name}'s index-time side: {b['bytes_per_doc']} bytes/doc ({args.embedder} float16 vectors), "
                       f"{b['index_s']:.1f} s for {b['index_docs']} docs ({'cache load' if b['index_from_cache'] else 'encoded'})\n")
    for v, why in extra["skipped"].items():
        md += f"\nskipped {v}: {why}\n"
    return head, md


def _cmd(args: argparse.Namespace) -> int:
    ds = hotpot_dataset(args.limit, args.seed) if str(args.data) == HOTPOT else load_beir(args.data, args.split).limit(args.limit)
    if args.dump_scores and not args.quality_only:
        raise ValueError("--dump-scores needs --quality-only (it stores scores, the timing run stays lean)")
    args._dump = {} if args.dump_scores else None
    metrics, extra = run_rerank_bench(ds, args)
    if args.dump_scores:
        import pickle

        args.dump_scores.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.dump_scores.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            from bench.report.environment import environment

            pickle.dump({"queries": {q: ds.queries[q] for q in ds.queries}, "qrels": ds.qrels, "scores": args._dump,
                         "environment": environment()}, fh)
        tmp.replace(args.dump_scores)
    head, md = rerank_markdown(metrics, extra, args, ds.name)
    print(md)
    if args.out:
        config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("func", "_dump")}
        config["n_queries"] = extra["n_queries_run"]
        png = Path(args.out).with_suffix(".png")
        png.parent.mkdir(parents=True, exist_ok=True)
        pareto_plot(metrics, png, extra["floor_ms"], title=head.split(";")[0])
        write_results(args.out, config, metrics, md, **extra, plot=str(png))
        log.info(f"wrote {args.out} (+ .md, .png)")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rerank", help="reranker latency on the request path: naive vs each fix vs best (VIII)")
    p.add_argument("--data", required=True, type=Path,
                   help=f"BEIR-layout folder (corpus.jsonl, queries.jsonl, qrels/), or {HOTPOT} for the untrained-on HotpotQA "
                        "questions of bench.probes.probe_fusion (--limit of them drawn with --seed)")
    p.add_argument("--seed", type=int, default=0, help=f"{HOTPOT}: the query draw's seed (as probe_fusion)")
    p.add_argument("--split", default="test")
    p.add_argument("--k", type=positive_int, default=100, help="first-stage (BM25) candidates per query")
    p.add_argument("--limit", type=positive_int, default=None, help="first N judged queries only")
    p.add_argument("--out", type=Path, default=None, help="results JSON (.md and Pareto .png written beside it)")
    p.add_argument("--model", default="reranker-l6", help="the cross-encoder whose ranking counts (registry name or folder)")
    p.add_argument("--pruner", default="reranker-l2", help="small cross-encoder for the cascade ('' for none)")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list from {', '.join(VARIANTS)}")
    p.add_argument("--keep", type=positive_int, default=20, help="cascade: candidates the pruner passes to the model")
    p.add_argument("--max-doc-tokens", type=positive_int, default=64, help="truncate variant: document tokens kept")
    p.add_argument("--best-ranker-doc-tokens", type=positive_int, default=None, help="best: document tokens kept by the model (default all)")
    p.add_argument("--max-tokens-per-batch", type=positive_int, default=4096, help="length-aware batching: padded tokens per forward pass")
    p.add_argument("--int8-backend", default="onnx-int8", choices=["int8", "onnx-int8"])
    p.add_argument("--best-backend", default="bf16", choices=list(BACKENDS),
                   help="best/best_ce: the model's backend (bf16 keeps its ranking best where the CPU has native bf16; "
                        "cuda-bf16/cuda-fp16 on a GPU)")
    p.add_argument("--best-keep", type=positive_int, default=PRECOMPUTED_KEEP, help="best/best_ce: candidates the precomputed pruner passes to the model")
    p.add_argument("--best-gap", type=float, default=None,
                   help="best/best_ce: per-query count, the candidates within this many pruner standard deviations of the "
                        "top one (at most --best-keep, at least --best-min-keep); default: --best-keep for every query")
    p.add_argument("--best-min-keep", type=positive_int, default=8, help="best/best_ce with --best-gap: fewest candidates kept")
    p.add_argument("--best-final", default="fused", choices=["fused", "ce"],
                   help="best: final order of the kept candidates (fused: logit + BM25 + cosine z-sum, the fused stage's rule)")
    p.add_argument("--embedder", default="minilm", help="best/best_ce/dense_pruner: the embedder whose document vectors are precomputed")
    p.add_argument("--reuse-index", action="store_true",
                   help="load the document vectors from the embedding cache if there (index_s is then a load, not a build)")
    p.add_argument("--r1-backend", default="onnx-int8", choices=list(BACKENDS), help="best_r1: the model's backend")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="where the models run (cuda: a GPU machine, scripts/gpu_bench.sh; CPU is the tested path)")
    p.add_argument("--best-pruner-backend", default="onnx-int8", choices=["fp32", "bf16", "int8", "onnx", "onnx-int8"],
                   help="best: the pruner's backend (its errors only matter where they cross the --keep boundary)")
    p.add_argument("--pruner-doc-tokens", type=positive_int, default=None,
                   help="best: document tokens the pruner sees (default all; cutting them cost the pruner its agreement here)")
    p.add_argument("--fastest-backend", default="onnx-int8", choices=["fp32", "bf16", "int8", "onnx", "onnx-int8"],
                   help="fastest: the model's backend")
    p.add_argument("--min-k", type=positive_int, default=20, help="adaptive: never fewer candidates than this")
    p.add_argument("--adaptive-target", type=fraction, default=0.98, help="adaptive: share of relevant candidates kept on train")
    p.add_argument("--force-bf16", action="store_true", help="measure bf16 even without native CPU support")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--progress", action="store_true", help="print each query's latencies")
    p.add_argument("--time-budget-s", type=positive_int, default=None,
                   help="stop starting queries after this many seconds and report on the queries run (n_queries_run)")
    p.add_argument("--dump-scores", type=Path, default=None,
                   help="with --quality-only: write per query the naive logits and best's pruner/cosine/BM25 scores, kept "
                        "positions and logits (a pickle, for offline sweeps of keep and the final rule)")
    p.add_argument("--quality-only", action="store_true",
                   help="nDCG@10 / intervals / overlap only: naive's logits from the fp32 length-sorted engine (equal to "
                        "CrossEncoder.predict, less padding), no floor; the latencies in the file are then not valid")
    p.set_defaults(func=_cmd)
