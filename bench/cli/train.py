"""``ragfix train ...``: one command per specialist recipe (``reranker`` now; ``faithfulness``, ``intent`` later).

``ragfix train reranker`` builds the training pairs (``rerank.train.build_training_pairs``),
trains a 6- or 2-layer cross-encoder with checkpoints under ``--work`` (rerun the same command to
resume), and writes an fp16 sentence-transformers CrossEncoder folder to ``--out``.
``ragfix train eval-reranker`` measures a reranker on SciFact test (:func:`bench.eval.rerank.evaluate_reranker`).
The recipe is :mod:`bench.recipes.rerank`; this module only parses arguments.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from bench.cli.argtypes import non_negative_int, positive_float, positive_int

__all__ = ["add_parser", "train_reranker_cmd"]

log = logging.getLogger(__name__)


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
    p.add_argument("--no-train-qrels", dest="train_qrels", action="store_false",
                   help="leave out the folder's train qrels: a model that saw no human relevance label of the corpus")
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
    e.add_argument("--embedder", default="minilm", help="the hybrid first stage's dense half (registry name or models/NAME)")
    e.add_argument("--out", default=None, help="JSON report")
    e.set_defaults(func=_eval_cmd)

    from bench.cli.train_specialists import add_train_parsers  # faithfulness, intent

    add_train_parsers(sub)


def train_reranker_cmd(args: argparse.Namespace) -> int:
    from bench.recipes.rerank import train_reranker
    from bench.report import check_output_folder

    out = check_output_folder(args.out, args.force)
    work = Path(args.work or Path("runs") / out.name)
    if args.bf16:  # refused before any data is built or written
        from rerank.backends import bf16_refusal

        why = bf16_refusal()
        if why:
            raise SystemExit(f"--bf16: {why}: drop --bf16")
    command = ("HF_HUB_OFFLINE=1 ragfix " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("ragfix")
               else "HF_HUB_OFFLINE=1 ragfix train reranker ...")
    keys = ("data", "layers", "epochs", "max_pairs", "ict_queries", "hotpot_queries", "nq_queries", "negatives", "miner",
            "loss", "teacher", "candidates", "depth", "pooling", "bf16", "batch_size", "lr", "max_length", "seed", "threads",
            "stop_at_step", "init", "train_qrels")
    meta = train_reranker(out, work, command=command, **{k: getattr(args, k) for k in keys})
    log.info(f"wrote {out} ({json.dumps(meta)})")
    return 0


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
    from bench.eval.rerank import evaluate_reranker

    report = evaluate_reranker(args.model, args.depth, args.limit, args.max_length, args.threads,
                               cache_dir=args.cache_dir, data=args.data, backend=args.backend, windows=windows,
                               embedder=args.embedder)
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
