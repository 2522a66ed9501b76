"""Reranker evaluation on a BEIR test split: first stages, the cross-encoder alone, and the fused rerank
stage (:class:`rerank.stage.FusedRerankStage`, the object ``pipeline.Pipeline`` runs) with its ablations.
Used by ``ragfix train eval-reranker``, the specialists benchmark and the fusion probe."""
from __future__ import annotations

import json
import logging
import platform
import time
from pathlib import Path

__all__ = ["evaluate_reranker", "stage_fusions", "PairScoreCache", "model_key", "scorer_cache"]

log = logging.getLogger(__name__)


def model_key(path: Path) -> str:
    """First 16 hex of sha256 over a model folder's ``*.safetensors`` and ``config.json`` bytes (the cache's key)."""
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

    Not moved onto the SQLite helper (:mod:`monitor.sqlite_store`) like the other stores: its files
    are append-only, one writer per evaluation, and hold hours of CPU scoring that a format change
    would throw away; a cut-short last line is rescored, so JSONL needs no transaction.
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


def scorer_cache(cache_dir: Path | str, model: str, max_length: int, tag: str = "") -> PairScoreCache:
    """The :class:`PairScoreCache` of one scorer configuration: ``model`` (a folder or a registry
    cross-encoder name) keyed by its weights' hash (:func:`model_key`), its max length and ``tag``
    (backend, windows); ``-logit`` names the scale of every ranker's ``score_pairs``."""
    from registry import Registry

    path = Path(model) if Path(model).exists() else Registry().resolve(model, "cross-encoder").path
    return PairScoreCache(cache_dir, f"{model_key(Path(path))}-len{max_length}{tag}-logit")


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
                      backend: str = "fp32", windows: tuple[int, int] | None = None, keep_runs: bool = False,
                      bm25_pool: bool = True, embedder: str = "minilm") -> dict:
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
    ``bm25_pool=False``: score only the hybrid candidates the stage reranks, dropping ``ce_only_bm25``
    (on the first 20 SciFact test claims at depth 100: 2,000 pairs instead of 2,718); every other system is unchanged.
    """
    import numpy as np
    import torch

    from data import data_root, load_beir
    from bench.eval.metrics import evaluate
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
    dense = DenseRetriever(load_embedder(embedder)).index(ds.corpus)  # the hybrid's dense half (--embedder)
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
    cache = scorer_cache(cache_dir, str(spec_path), ce.max_length, tag)

    stages = {name: FusedRerankStage(ranker, rule, name=name) for name, rule in stage_fusions().items()}
    runs = {k: {} for k in ("bm25", "hybrid", *(("ce_only_bm25",) if bm25_pool else ()), "ce_only_hybrid", *stages)}
    t_ce, n_scored = 0.0, 0
    from bench.report.progress import progress

    for qi, qid in enumerate(progress(qids, f"eval {Path(spec_path).name}", unit="query")):
        query = ds.queries[qid]
        keys = {}  # corpus index -> content key of (this query, that document)
        bm = {int(j): float(s) for j, s in zip(r_bm25.indices[qi], r_bm25.scores[qi]) if j >= 0}
        hit = r_hyb.indices[qi] >= 0
        cand_b = [int(j) for j in r_bm25.indices[qi][:depth] if j >= 0]
        scored_b = cand_b if bm25_pool else []
        cand_h = [int(j) for j in r_hyb.indices[qi][hit]]
        for j in dict.fromkeys(scored_b + cand_h):
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
        if bm25_pool:
            runs["ce_only_bm25"][qid] = {cid(j): cache[keys[j]] for j in cand_b}
        runs["ce_only_hybrid"][qid] = {cid(j): cache[keys[j]] for j in cand_h}
        ce_logits = np.array([cache[keys[j]] for j in cand_h], dtype=np.float64)
        first_stage = {name: s[qi][hit] for name, s in r_hyb.signals.items()}
        for name, stage in stages.items():  # the stage's own fusion, on the cached logits
            f = stage.fuse(ce_logits, first_stage)
            runs[name][qid] = {cid(j): float(v) for j, v in zip(cand_h, f)}
    log.info("scored %d pairs now (%d queries)", n_scored, len(qids))
    metrics = {name: evaluate(ds.qrels, run, ("ndcg@10", "recall@100")) for name, run in runs.items()}
    report = {"model": model, "embedder": embedder, "model_key": model_key(Path(spec_path)), "data": str(ds.name), "split": "test", "queries": len(qids), "depth": depth,
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
