"""``ragfix bench specialists``: each specialist against the LLM judge, quality and cost per 1,000 calls (V).

Single-LLM Overspend: one LLM scores relevance, checks faithfulness and classifies intents. This
bench puts, per task, the project's specialist beside an LLM judge on the same items, and prices
both from *measured* tokens and seconds recorded in an attribution ledger
(:mod:`distill.ledger`, written next to ``--out`` as ``<out>.ledger.sqlite``; an existing one is replaced
only with ``--overwrite-ledger`` and only when the run succeeds, the run writing to a temporary file beside it):

- **relevance**: nDCG@10 on SciFact test. ``first_stage`` (hybrid BM25 + MiniLM, RRF), ``specialist``
  (the rerank stage over the hybrid top-100: z-score CombSUM of cross-encoder, BM25 and dense,
  ``rerank.fusion.zsum_scores``), ``ce_only_bm25`` (the cross-encoder alone over BM25's
  top-100), ``bm25``; computed by ``bench.eval.rerank.evaluate_reranker`` for the registered
  ``--relevance-model``. ``llm``: the judge's yes/no on BM25's top 10 for the first
  ``--judge-limit // 10`` queries (yes first, BM25 order within), with the specialist's nDCG@10 on
  the same queries beside it (``specialist_same_queries``).
- **faithfulness**: balanced accuracy on the held-out, length-matched HaluEval QA split
  (:func:`cascade.faithfulness.length_matched_eval`) for the specialist, the length-only baseline and,
  on a seeded balanced sample of ``--judge-limit`` items, the judge (with the specialist on that sample).
- **intent**: CLINC150 test accuracy (in-scope; an out-of-scope prediction is wrong) and out-of-scope
  recall, specialist on the whole test set (or ``--limit``), judge on a seeded sample of ``--judge-limit``.

Cost per 1,000 calls: the specialist is priced by CPU seconds (``compute.cpu_core_hour_usd``), one call
= one pair / utterance scored (batched, CPU time amortised over the batch). Relevance is served the way
the pipeline serves it: :class:`rerank.RerankEngine` on ``--relevance-backend`` (``auto``: bf16 where
the CPU has it natively, else fp32) over each judge query's BM25 top 100, one request per query, with
its top-10 overlap against fp32 on the same lists reported (``cost_engine``), so a cheaper backend
cannot buy its price with a different ranking unseen. The judge is priced twice:
``llm`` at the API price of ``--price-as`` (USD per million tokens, ``prices.yaml``) on the tokens the
local judge actually used, and ``llm_local_cpu`` at the CPU seconds it took here. Unparseable judge
replies are counted (``unparseable``) and scored as wrong.

Leaves out: GPU serving of the judge, batching of judge calls, judges larger than SmolLM2-135M offline.
"""
from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from bench.cli.argtypes import non_negative_int, positive_int

__all__ = ["run_specialists_bench", "markdown", "add_parser", "TASKS"]

log = logging.getLogger(__name__)

TASKS = ("relevance", "faithfulness", "intent")


def _judge(name: str):
    from registry import load_llm

    return load_llm(name)


def _cost_per_1k(ledger, task: str, prices) -> dict:
    rows = [r for r in ledger.rows() if r["task"] == task]
    out: dict[str, Any] = {}
    sp = [r for r in rows if r["kind"] == "specialist"]
    llm = [r for r in rows if r["kind"] == "llm"]
    if sp:
        out["specialist"] = 1000 * sum(r["cost_usd"] for r in sp) / len(sp)
        out["specialist_calls_measured"] = len(sp)
        out["specialist_cpu_ms_per_call"] = 1000 * sum(r["cpu_s"] for r in sp) / len(sp)
    if llm:
        out["llm"] = 1000 * sum(r["cost_usd"] for r in llm) / len(llm)
        out["llm_priced_as"] = llm[0]["priced_as"]
        out["llm_local_cpu"] = 1000 * sum(prices.compute_cost(r["cpu_s"]) for r in llm) / len(llm)
        out["llm_calls_measured"] = len(llm)
        out["llm_tokens_in_per_call"] = sum(r["tokens_in"] for r in llm) / len(llm)
        out["llm_tokens_out_per_call"] = sum(r["tokens_out"] for r in llm) / len(llm)
        out["llm_wall_s_per_call"] = sum(r["wall_s"] for r in llm) / len(llm)
    if "specialist" in out and "llm" in out and out["specialist"] > 0:
        out["llm_over_specialist"] = out["llm"] / out["specialist"]
    return out


def _track_batches(ledger, task: str, model: str, fn, items: list, batch: int = 64) -> list:
    """Run ``fn`` over ``items`` in batches; record one specialist call per item, CPU/wall amortised."""
    out: list = []
    for s in range(0, len(items), batch):
        part = items[s: s + batch]
        w0, c0 = time.perf_counter(), time.process_time()
        out.extend(fn(part))
        w, c = time.perf_counter() - w0, time.process_time() - c0
        for _ in part:
            ledger.record(task, model, kind="specialist", wall_s=w / len(part), cpu_s=c / len(part), meta={"batch": len(part)})
    return out


# ----------------------------------------------------------------------------- tasks

def bench_faithfulness(ledger, judge, model: str, limit: int | None, judge_limit: int, seed: int) -> dict:
    import cascade.faithfulness as F
    import data.faithfulness as FD

    from registry import load_faithfulness

    scorer = load_faithfulness(model)
    rows = FD.load_halueval("qa")
    heldout = scorer.meta["recipe"]["heldout"] if getattr(scorer, "meta", None) else 3000
    train_idx, held = F.halueval_qa_split(len(rows), heldout)
    items = F.length_matched_eval(rows, held, seed=seed)
    if limit and len(items) > limit:
        rng = random.Random(seed)
        pos = [c for c in items if c.label == 1]
        neg = [c for c in items if c.label == 0]
        items = rng.sample(pos, limit // 2) + rng.sample(neg, limit // 2)
    y = np.array([c.label for c in items])
    p = np.array(_track_batches(ledger, "faithfulness", model,
                                lambda part: scorer.predict_proba([c.evidence for c in part], [c.claim for c in part],
                                                                  [c.question for c in part]), items))
    fit = F.unmatched_eval(rows, train_idx)
    base = F.LengthBaseline().fit([c.n_words for c in fit], [c.label for c in fit])
    b = base.predict_proba([c.n_words for c in items])
    m: dict[str, Any] = {
        "n": len(items), "eval_set": f"HaluEval QA held-out ({heldout} rows, split seed 7), length-matched per answer word count",
        "specialist": {"balanced_accuracy": F.balanced_accuracy(y, p >= 0.5), "n_truncated": scorer.n_truncated_},
        "length_baseline": {"balanced_accuracy": F.balanced_accuracy(y, b >= 0.5)},
    }
    if judge is not None and judge_limit:
        rng = random.Random(seed + 1)
        idx = rng.sample([i for i in range(len(items)) if y[i] == 1], judge_limit // 2) + \
            rng.sample([i for i in range(len(items)) if y[i] == 0], judge_limit // 2)
        verdicts = [judge.judge("faithfulness", evidence=items[i].evidence, claim=items[i].full_claim()) for i in idx]
        pred = np.array([v.label if v.parsed else 1 - y[i] for v, i in zip(verdicts, idx)])  # unparseable = wrong
        m["llm"] = {"balanced_accuracy": F.balanced_accuracy(y[idx], pred), "n": len(idx),
                    "unparseable": sum(not v.parsed for v in verdicts), "model": judge.backend.name,
                    "prompt_version": judge.version}
        m["specialist_same_sample"] = {"balanced_accuracy": F.balanced_accuracy(y[idx], p[idx] >= 0.5), "n": len(idx)}
        m["length_baseline_same_sample"] = {"balanced_accuracy": F.balanced_accuracy(y[idx], b[idx] >= 0.5)}
    return m


def bench_intent(ledger, judge, folder: str, limit: int | None, judge_limit: int, seed: int) -> dict:
    from data.clinc import load_clinc150
    from registry import load_intent_model

    model = load_intent_model(folder)
    data = load_clinc150()
    tx, ty = data.split("test")
    ox, oy = data.split("oos_test")
    texts, labels = tx + ox, ty + oy
    rng = random.Random(seed)
    if limit and len(texts) > limit:
        keep = sorted(rng.sample(range(len(texts)), limit))
        texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    pred = np.array(_track_batches(ledger, "intent", "intent-clinc150", lambda part: list(model.predict(part)), texts), dtype=object)
    y = np.array(labels, dtype=object)
    ins = y != model.oos_label
    m: dict[str, Any] = {"n_in_scope": int(ins.sum()), "n_oos": int((~ins).sum()), "specialist": {
        "accuracy": float(np.mean(pred[ins] == y[ins])), "oos_recall": float(np.mean(pred[~ins] == model.oos_label)),
        "oos_threshold": model.oos_threshold}}
    if judge is not None and judge_limit:
        intents = list(model.classifier.classes_)
        n_oos = max(1, round(judge_limit * (~ins).mean()))
        idx = rng.sample(list(np.flatnonzero(ins)), judge_limit - n_oos) + rng.sample(list(np.flatnonzero(~ins)), n_oos)
        verdicts = [judge.judge("intent", intents=intents + ["oos"], text=texts[i]) for i in idx]
        jl = np.array([v.label if v.parsed else "<unparseable>" for v in verdicts], dtype=object)
        yi = y[idx]
        jin = yi != model.oos_label
        m["llm"] = {"accuracy": float(np.mean(jl[jin] == yi[jin])) if jin.any() else None,
                    "oos_recall": float(np.mean(jl[~jin] == "oos")) if (~jin).any() else None,
                    "n": len(idx), "n_oos": int((~jin).sum()), "unparseable": sum(not v.parsed for v in verdicts),
                    "model": judge.backend.name, "prompt_version": judge.version}
        ps = pred[idx]
        m["specialist_same_sample"] = {"accuracy": float(np.mean(ps[jin] == yi[jin])) if jin.any() else None,
                                       "oos_recall": float(np.mean(ps[~jin] == model.oos_label)) if (~jin).any() else None}
    return m


def bench_relevance(ledger, judge, model: str, limit: int | None, judge_limit: int, seed: int,
                    backend: str = "auto", cost_depth: int = 100) -> dict:
    from bench.eval.rerank import evaluate_reranker  # the relevance engineer's evaluation, reused as is

    rep = evaluate_reranker(model, depth=100, limit=limit)
    mm = rep["metrics"]
    m: dict[str, Any] = {k: {"ndcg@10": mm[src]["ndcg@10"]} for k, src in
                         (("first_stage", "hybrid"), ("specialist", "specialist"), ("ce_only_bm25", "ce_only_bm25"), ("bm25", "bm25"))}
    m["queries"] = rep["queries"]
    m["depth"] = rep["depth"]
    # Cost: the serving engine (length-sorted token-budget batches, ``backend``) scores each judge
    # query's BM25 top ``cost_depth`` (one rerank request) under the ledger, one call per pair; the
    # judge sees the top 10 of the same lists. The fp32 reference scores the same pairs off the
    # ledger, so a faster backend has to show it keeps the ranking.
    from data import data_root, load_beir
    from bench.eval.metrics import evaluate
    from registry import load_cross_encoder
    from rerank.agreement import rank_agreement
    from rerank.backends import resolve_backend
    from rerank.engine import RerankEngine
    from retrieval.retrievers import BM25Retriever

    resolved = resolve_backend(backend)
    ds = load_beir(data_root() / "scifact", "test")
    nq = max(1, judge_limit // 10) if judge_limit else 5
    qids = list(ds.queries)[:nq]
    bm25 = BM25Retriever().index(ds.corpus)
    res = bm25.search([ds.queries[q] for q in qids], cost_depth)
    ce = load_cross_encoder(model)
    engine = RerankEngine(ce.model, backend=resolved, name=f"{model}:{resolved}")
    lists = [[int(j) for j in res.indices[qi] if j >= 0] for qi in range(len(qids))]
    pairs = [(q, j) for q, docs in zip(qids, lists) for j in docs]
    text = lambda part: [(ds.queries[q], ds.corpus[j].full_text()) for q, j in part]  # noqa: E731
    engine.score_pairs(text(pairs[:8]))  # warm-up (ONNX export / first-call allocation), not billed
    sc: list[float] = []
    for q, docs in zip(qids, lists):  # one rerank request per query
        sc += _track_batches(ledger, "relevance", engine.name, lambda part: list(engine.score_pairs(text(part))),
                             [(q, j) for j in docs], batch=len(docs))
    # fp32 reference on the same engine path (logits, like the engine's; not billed)
    ref = RerankEngine(ce.model, backend="fp32").score_pairs(text(pairs))
    bounds = np.cumsum([0] + [len(d) for d in lists])
    agree = [rank_agreement(ref[a:b], np.asarray(sc[a:b]), k=10) for a, b in zip(bounds[:-1], bounds[1:]) if b - a >= 2]
    m["cost_engine"] = {"backend": resolved, "requested": backend, "pairs": len(pairs), "depth": cost_depth,
                        "queries": len(qids), "top10_overlap_vs_fp32": float(np.mean([g.topk_overlap for g in agree])),
                        "spearman_vs_fp32": float(np.mean([g.spearman for g in agree])),
                        "max_abs_logit_diff_vs_fp32": float(max(g.max_abs_diff for g in agree))}
    ce_run: dict[str, dict[str, float]] = {}
    for (q, j), s_ in zip(pairs, sc):
        if len(ce_run.get(q, {})) < 10:  # the BM25 top 10, as the judge sees
            ce_run.setdefault(q, {})[ds.corpus[j].id] = float(s_)
    if judge is not None and judge_limit:
        run: dict[str, dict[str, float]] = {}
        unp = 0
        for q, docs in zip(qids, lists):
            for rank, j in enumerate(docs[:10]):
                v = judge.judge("relevance", query=ds.queries[q], passage=ds.corpus[j].full_text()[:1500])
                unp += not v.parsed
                # yes first, BM25 order within; an unparseable reply counts as "no"
                run.setdefault(q, {})[ds.corpus[j].id] = (1.0 if v.label == 1 else 0.0) - 0.001 * rank
        qrels = {q: ds.qrels[q] for q in qids}
        m["llm"] = {"ndcg@10": evaluate(qrels, run, ("ndcg@10",))["ndcg@10"], "queries": len(qids),
                    "pairs": sum(len(r) for r in run.values()), "unparseable": unp, "model": judge.backend.name,
                    "prompt_version": judge.version, "candidates": "BM25 top 10"}
        m["specialist_same_queries"] = {"ndcg@10": evaluate(qrels, ce_run, ("ndcg@10",))["ndcg@10"],
                                        "note": f"cross-encoder ({resolved}) alone over the same BM25 top 10"}
    return m


def _model_folder(name: str) -> str:
    from registry import Registry

    if Path(name).is_dir():
        return name
    return str(Registry().resolve(name, "cross-encoder").path)


# ----------------------------------------------------------------------------- run

def run_specialists_bench(out: Path | str, limit: int | None = None, judge_limit: int = 20, judge_model: str = "smollm2",
                          price_as: str = "gpt-4o-mini", relevance_model: str = "reranker-l6",
                          faithfulness_model: str = "faithfulness", intent_model: str = "models/intent-clinc150",
                          tasks: tuple[str, ...] = ("relevance", "faithfulness", "intent"), seed: int = 0,
                          relevance_backend: str = "auto", overwrite_ledger: bool = False) -> dict:
    """Run the bench; the ledger goes to ``<out>.ledger.sqlite``.

    An existing ledger there is a user's file: without ``overwrite_ledger`` the run is refused
    (:class:`FileExistsError`) before anything is loaded. The ledger is written to a temporary file in
    the same folder and renamed over the target only when the run succeeds, so a failed or killed run
    leaves the old ledger (or none) and no partial one.
    """
    from distill.ledger import Ledger
    from registry import load_prices

    out = Path(out)
    ledger_path = out.with_suffix(".ledger.sqlite")
    if ledger_path.exists() and not overwrite_ledger:
        raise FileExistsError(f"{ledger_path}: a ledger already exists there; pass --overwrite-ledger to replace it "
                              "(it is replaced only when the run succeeds), or choose another --out")
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"--tasks: unknown task(s) {', '.join(map(repr, unknown))}; choose from {', '.join(TASKS)}")
    prices = load_prices()
    prices.token_cost(price_as, 0, 0)  # fail now, not after an hour, if the API price is missing
    from rerank.backends import resolve_backend

    resolve_backend(relevance_backend)  # and an unusable backend
    out.parent.mkdir(parents=True, exist_ok=True)
    # a name of our own beside the target (same filesystem, so the final rename is atomic); created by
    # SQLite, so it gets the user's umask
    partial = ledger_path.with_name(f"{ledger_path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial")
    ledger = Ledger(partial, prices)
    try:
        doc = _run(out, ledger, partial, ledger_path, prices, limit, judge_limit, judge_model, price_as, relevance_model,
                   faithfulness_model, intent_model, tasks, seed, relevance_backend)
    except BaseException:
        ledger.close()
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(str(partial) + suffix).unlink(missing_ok=True)
        raise
    return doc


def _replace_sqlite(src: Path, dst: Path) -> None:
    """Rename a closed SQLite file over ``dst``; ``dst``'s stale ``-wal``/``-shm`` must not outlive it."""
    if Path(str(src) + "-wal").exists():  # close() normally checkpoints and removes it; never drop its rows
        import sqlite3

        db = sqlite3.connect(src)
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("PRAGMA journal_mode=DELETE")  # removes -wal; the file is whole on its own
        db.execute("PRAGMA journal_mode=WAL")
        db.close()
    for suffix in ("-wal", "-shm"):
        Path(str(src) + suffix).unlink(missing_ok=True)
        Path(str(dst) + suffix).unlink(missing_ok=True)
    os.replace(src, dst)


def _run(out: Path, ledger, partial: Path, ledger_path: Path, prices, limit, judge_limit, judge_model, price_as,
         relevance_model, faithfulness_model, intent_model, tasks, seed, relevance_backend) -> dict:
    from bench.report import write_results
    from distill.judge import LLMJudge
    from registry import Registry, load_judge_prompts

    judge = LLMJudge(_judge(judge_model), load_judge_prompts(), ledger=ledger, pricing="tokens", priced_as=price_as) if judge_limit else None
    reg = Registry()
    metrics: dict[str, Any] = {}
    notes: list[str] = []
    t0 = time.time()
    for task in tasks:
        log.info(f"{task} ...")
        if task == "relevance":
            if relevance_model not in reg.names("cross-encoder") and not Path(relevance_model).is_dir():
                notes.append(f"relevance: {relevance_model!r} is not registered in configs/models.yaml yet; "
                             "re-run this bench once it is")
                metrics["relevance"] = None
                continue
            metrics["relevance"] = bench_relevance(ledger, judge, relevance_model, limit, judge_limit, seed,
                                                   backend=relevance_backend)
        elif task == "faithfulness":
            try:
                reg.resolve(faithfulness_model, "faithfulness")
            except (FileNotFoundError, ValueError) as exc:  # registered but not trained yet, or unknown
                notes.append(f"faithfulness: {exc}; run `ragfix train faithfulness`, then re-run this bench")
                metrics["faithfulness"] = None
                continue
            metrics["faithfulness"] = bench_faithfulness(ledger, judge, faithfulness_model, limit, judge_limit, seed)
        elif task == "intent":
            metrics["intent"] = bench_intent(ledger, judge, intent_model, limit, judge_limit, seed)
        else:
            raise ValueError(f"task must be one of relevance, faithfulness, intent; got {task!r}")
    cost = {task: _cost_per_1k(ledger, task, prices) for task in tasks if metrics.get(task)}
    config = {"limit": limit, "judge_limit": judge_limit, "judge_model": judge_model, "price_as": price_as,
              "price_as_read_on": prices.llms[price_as].get("read_on"), "cpu_core_hour_usd": prices.cpu_core_hour_usd,
              "relevance_model": relevance_model, "relevance_backend": relevance_backend, "faithfulness_model": faithfulness_model, "intent_model": intent_model,
              "seed": seed, "judge_prompt_version": judge.version if judge else None, "ledger": str(ledger_path)}
    ledger.close()  # checkpoints the WAL into the file: one self-contained file to rename
    _replace_sqlite(partial, ledger_path)
    doc = write_results(out, config, metrics, markdown=None, cost_per_1k=cost, notes=notes, wall_s=round(time.time() - t0, 1))
    out.with_suffix(".md").write_text(markdown(doc))
    return doc


def markdown(doc: dict) -> str:
    from bench.report import markdown_table

    m, c, cfg = doc["metrics"], doc["cost_per_1k"], doc["config"]
    rows = []

    def fmt(v, k):
        return f"{v[k]:.3f}" if isinstance(v, dict) and isinstance(v.get(k), float) else "—"

    if m.get("relevance"):
        r = m["relevance"]
        rows.append({"task": "relevance (nDCG@10, SciFact test)", "metric": "ndcg@10",
                     "base (first stage)": fmt(r["first_stage"], "ndcg@10"), "specialist": fmt(r["specialist"], "ndcg@10"),
                     "LLM judge": f"{fmt(r.get('llm'), 'ndcg@10')} (n={r.get('llm', {}).get('queries', 0)} q; CE same q {fmt(r.get('specialist_same_queries'), 'ndcg@10')})"})
    if m.get("faithfulness"):
        f = m["faithfulness"]
        rows.append({"task": "faithfulness (HaluEval QA, length-matched)", "metric": "balanced acc",
                     "base (first stage)": f"length {fmt(f['length_baseline'], 'balanced_accuracy')}",
                     "specialist": fmt(f["specialist"], "balanced_accuracy"),
                     "LLM judge": f"{fmt(f.get('llm'), 'balanced_accuracy')} (n={f.get('llm', {}).get('n', 0)}; specialist same n {fmt(f.get('specialist_same_sample'), 'balanced_accuracy')})"})
    if m.get("intent"):
        i = m["intent"]
        rows.append({"task": "intent (CLINC150 test)", "metric": "accuracy / OOS recall", "base (first stage)": "—",
                     "specialist": f"{fmt(i['specialist'], 'accuracy')} / {fmt(i['specialist'], 'oos_recall')}",
                     "LLM judge": f"{fmt(i.get('llm'), 'accuracy')} / {fmt(i.get('llm'), 'oos_recall')} (n={i.get('llm', {}).get('n', 0)})"})
    t1 = markdown_table(rows, ["task", "metric", "base (first stage)", "specialist", "LLM judge"])
    crow = [{"task": t, "specialist USD/1k": f"{v.get('specialist', float('nan')):.6f}",
             f"LLM USD/1k ({cfg['price_as']} tokens)": f"{v.get('llm', float('nan')):.4f}",
             "LLM USD/1k (local CPU)": f"{v.get('llm_local_cpu', float('nan')):.4f}",
             "LLM / specialist": f"{v.get('llm_over_specialist', float('nan')):.0f}x"} for t, v in c.items()]
    t2 = markdown_table(crow, list(crow[0]) if crow else ["task"])
    eng = (m.get("relevance") or {}).get("cost_engine")
    if eng:
        t2 += (f"\nRelevance specialist served by `RerankEngine` ({eng['backend']}), {eng['pairs']} pairs in "
               f"{eng['queries']} requests of BM25 top {eng['depth']}; top-10 overlap with fp32 on the same lists "
               f"{eng['top10_overlap_vs_fp32']:.2f}.\n")
    notes = "".join(f"- {n}\n" for n in doc.get("notes", []))
    return (f"### Specialists vs LLM judge (V)\n\n{t1}\nJudge: `{cfg['judge_model']}` (prompts `{cfg['judge_prompt_version']}`), "
            f"sample sizes as shown (n); unparseable replies scored as wrong.\n\n**Cost per 1,000 calls** (specialist: CPU seconds at "
            f"${cfg['cpu_core_hour_usd']}/core-hour; LLM: its measured tokens at {cfg['price_as']} API prices read "
            f"{cfg['price_as_read_on']}, and its CPU seconds here)\n\n{t2}\n{notes}")


def _cmd(args: argparse.Namespace) -> int:
    try:
        doc = run_specialists_bench(args.out, args.limit, args.judge_limit, args.judge_model, args.price_as,
                                    args.relevance_model, args.faithfulness_model, args.intent_model,
                                    tuple(args.tasks.split(",")), args.seed, args.relevance_backend, args.overwrite_ledger)
    except FileExistsError as exc:
        print(f"ragfix: error: {exc}", file=sys.stderr)
        return 2
    print(Path(args.out).with_suffix(".md").read_text())
    return 0 if doc else 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("specialists", help="relevance / faithfulness / intent: specialist vs LLM judge, quality and cost per 1k")
    p.add_argument("--limit", type=positive_int, default=None, help="cap on specialist eval items per task (relevance: queries)")
    p.add_argument("--judge-limit", type=non_negative_int, default=20, help="LLM-judge calls per task (relevance: //10 queries x top 10; 0: no judge)")
    p.add_argument("--judge-model", default="smollm2", help="registry name of the judge LLM")
    p.add_argument("--price-as", default="gpt-4o-mini", help="API model in configs/prices.yaml whose token prices the judge is charged")
    p.add_argument("--relevance-model", default="reranker-l6")
    p.add_argument("--relevance-backend", default="auto",
                   help="engine backend the relevance cost is measured on: auto (bf16 where native, else fp32), "
                        "fp32, bf16, int8, onnx, onnx-int8; its top-10 agreement with fp32 is reported")
    p.add_argument("--faithfulness-model", default="faithfulness")
    p.add_argument("--intent-model", default="models/intent-clinc150")
    p.add_argument("--tasks", default="relevance,faithfulness,intent")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--out", required=True, help="results JSON (Markdown and the ledger are written beside it)")
    p.add_argument("--overwrite-ledger", action="store_true",
                   help="replace an existing <out>.ledger.sqlite (only when the run succeeds); without it the run "
                        "refuses to start (exit 2)")
    p.set_defaults(func=_cmd)
