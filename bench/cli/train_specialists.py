"""``ragfix train faithfulness`` and ``ragfix train intent``: the two non-relevance specialists of issue 3 (V).

Wired into the ``train`` group of :mod:`bench.cli.train` by one call, ``add_train_parsers(sub)``.

- ``faithfulness``: builds the (evidence, claim) pairs of :func:`data.faithfulness.build_faithfulness_pairs`,
  trains the MiniLM cross-encoder with checkpoints under ``--work`` (rerun the same command to
  resume; the pairs are frozen in ``<work>/pairs.jsonl`` on the first run), writes fp16 weights to
  ``--out``, evaluates (held-out length-matched HaluEval QA, summarization OOD) and writes the model card.
- ``intent``: :class:`cascade.intent.EmbeddingIntentClassifier` on MiniLM embeddings of CLINC150
  (default) or the user's own CSV/JSONL of ``text,label``; saves ``--out`` with a model card.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import shlex
import sys
import time
from pathlib import Path

from bench.report import atomic_write_text
from bench.cli.argtypes import fraction, non_negative_int, positive_float, positive_int, unit_interval

__all__ = ["add_train_parsers", "train_faithfulness_cmd", "train_intent_cmd"]

log = logging.getLogger(__name__)


def add_train_parsers(sub) -> None:
    """Add ``faithfulness`` and ``intent`` to an existing ``ragfix train`` subparsers group."""
    f = sub.add_parser("faithfulness", help="faithfulness specialist (evidence, claim[, question]) -> P(supported)")
    f.add_argument("--arch", choices=("lexical", "cross-encoder"), default="lexical",
                   help="lexical: support features + logistic regression (default, seconds on CPU); "
                        "cross-encoder: MiniLM fine-tune (hours on CPU)")
    f.add_argument("--qa-rows", type=non_negative_int, default=None,
                   help="HaluEval QA train rows, 2 items each (default: 7000 lexical, 1150 cross-encoder)")
    f.add_argument("--dialogue-rows", type=non_negative_int, default=None, help="HaluEval dialogue rows (default: 0 lexical, 250 cross-encoder)")
    f.add_argument("--scifact-pairs", type=non_negative_int, default=250, help="SciFact train SUPPORT/CONTRADICT pairs (0 to skip)")
    f.add_argument("--augment", type=unit_interval, default=0.35, help="share of QA rows giving length counter-examples")
    f.add_argument("--heldout", type=positive_int, default=3000, help="HaluEval QA rows held out for evaluation")
    f.add_argument("--epochs", type=positive_int, default=1)
    f.add_argument("--batch-size", type=positive_int, default=16)
    f.add_argument("--lr", type=positive_float, default=7e-5)
    f.add_argument("--max-length", type=positive_int, default=128)
    f.add_argument("--seed", type=non_negative_int, default=13)
    f.add_argument("--threads", type=positive_int, default=None)
    f.add_argument("--work", default="runs/faithfulness-minilm", help="cross-encoder: checkpoints, pairs and logs")
    f.add_argument("--out", required=True,
                   help="model folder to write (required: no default, so the shipped models/ are never overwritten by accident)")
    f.add_argument("--force", action="store_true", help="overwrite --out if it exists and is not empty")
    f.add_argument("--eval-only", action="store_true", help="skip training; evaluate --out and rewrite its card")
    f.set_defaults(func=train_faithfulness_cmd)

    i = sub.add_parser("intent", help="intent classifier (logistic regression on MiniLM embeddings)")
    i.add_argument("--train", default=None, help="CSV or JSONL of text,label (default: CLINC150 train)")
    i.add_argument("--test", default=None, help="CSV or JSONL of text,label (default: CLINC150 test)")
    i.add_argument("--text-column", default="text", help="column (CSV header or JSONL key) holding the utterance")
    i.add_argument("--label-column", default="label",
                   help="column holding the intent (public sets often name it 'intent' or 'category')")
    i.add_argument("--oos-label", default="oos", help="label of out-of-scope examples (excluded from training)")
    i.add_argument("--embedder", default="minilm", help="registry name of the embedder")
    i.add_argument("--C", type=positive_float, default=10.0)
    i.add_argument("--oos-target-recall", type=fraction, default=None,
                   help="pick the max-probability threshold on the train set's held-out fold to reach this "
                        "in-scope recall (default: 0.95 when the training data has --oos-label rows, else no "
                        "out-of-scope cutoff)")
    i.add_argument("--out", required=True,
                   help="model folder to write (required: no default, so the shipped models/intent-clinc150 is never "
                        "overwritten by accident)")
    i.add_argument("--force", action="store_true", help="overwrite --out if it exists and is not empty")
    i.set_defaults(func=train_intent_cmd)


def _command() -> str:
    args = sys.argv[1:]
    if args and args[0] != "train":  # run as `python -m bench.cli.train_specialists ...`
        args = ["train"] + args
    return "ragfix " + " ".join(shlex.quote(a) for a in args)


def train_faithfulness_cmd(args: argparse.Namespace) -> int:
    import cascade.faithfulness as F
    import data.faithfulness as FD
    import rerank.train as T

    from bench.recipes.specialists import train_lexical_faithfulness, write_faithfulness_card
    from bench.report import check_output_folder

    if not args.eval_only:
        check_output_folder(args.out, args.force)
    if args.arch == "lexical":
        out = Path(args.out)
        metrics = train_lexical_faithfulness(out, args.qa_rows or 7000, args.dialogue_rows or 0, args.heldout,
                                             args.seed, _command())
        print(json.dumps(metrics, indent=2))
        return 0
    args.qa_rows = args.qa_rows or 1150
    args.dialogue_rows = 250 if args.dialogue_rows is None else args.dialogue_rows
    out, work = Path(args.out), Path(args.work)
    pairs_file = work / "pairs.jsonl"
    if not args.eval_only:
        from bench.report import check_work_manifest

        check_work_manifest(work, {k: getattr(args, k) for k in ("qa_rows", "dialogue_rows", "scifact_pairs", "augment",
                                                                 "heldout", "epochs", "batch_size", "lr", "max_length",
                                                                 "seed")})
        if pairs_file.is_file():
            pairs = T.load_pairs(pairs_file)
            log.info(f"resuming with the {len(pairs)} pairs frozen in {pairs_file}")
        else:
            pairs = FD.build_faithfulness_pairs(args.qa_rows, args.dialogue_rows, args.scifact_pairs, args.augment,
                                               args.heldout, args.seed)
            T.save_pairs(pairs, pairs_file)
        counts = T.pair_counts(pairs)
        log.info("pair counts: %s", json.dumps(counts))
        t0 = time.time()
        final = T.train_cross_encoder(pairs, work, layers=6, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                      max_length=args.max_length, seed=args.seed, checkpoint_every=20, threads=args.threads)
        train_s = time.time() - t0
        T.save_fp16(final, out)
        meta = {"format_version": F.FORMAT_VERSION, "pairs": counts, "n_pairs": len(pairs),
                "recipe": {k: getattr(args, k) for k in ("qa_rows", "dialogue_rows", "scifact_pairs", "augment", "heldout",
                                                         "epochs", "batch_size", "lr", "max_length", "seed")},
                "train_wall_s_last_session": round(train_s, 1), "command": _command(),
                "date": _dt.date.today().isoformat()}
        atomic_write_text(out / "training.json", json.dumps(meta, indent=2) + "\n")
    meta = F.read_card_meta(out)
    scorer = F.FaithfulnessScorer(out, max_length=256)
    metrics = FD.evaluate_faithfulness(scorer, n_heldout=meta["recipe"]["heldout"])
    meta["metrics"] = metrics
    atomic_write_text(out / "training.json", json.dumps(meta, indent=2) + "\n")
    write_faithfulness_card(out, meta)
    print(json.dumps(metrics, indent=2))
    return 0


# ----------------------------------------------------------------------------- intent

def train_intent_cmd(args: argparse.Namespace) -> int:
    from cascade.intent import evaluate_intent, fit_intent_model, load_text_labels

    from bench.report import check_output_folder

    if (args.train is None) != (args.test is None):
        raise ValueError("give both --train and --test (your own data), or neither (CLINC150)")
    check_output_folder(args.out, args.force)
    if args.train is None:
        from data.clinc import load_clinc150

        data = load_clinc150()
        tr_x, tr_y = data.split("train")
        te_x, te_y = data.split("test")
        ox, oy = data.split("oos_test")
        te_x, te_y = te_x + ox, te_y + oy
        source = "CLINC150 (data_full): train (15,000 in-scope) / test (4,500 in-scope + 1,000 out-of-scope)"
    else:
        tr_x, tr_y = load_text_labels(args.train, args.text_column, args.label_column)
        te_x, te_y = load_text_labels(args.test, args.text_column, args.label_column)
        source = f"{args.train} / {args.test}"
    t0 = time.time()
    from data.clinc import StoreCachedEmbedder
    from registry import load_embedder

    model = fit_intent_model(tr_x, tr_y, embedder=StoreCachedEmbedder(load_embedder(args.embedder)), C=args.C,
                             oos_label=args.oos_label, target_recall=args.oos_target_recall)
    fit_s = time.time() - t0
    metrics = evaluate_intent(model, te_x, te_y)
    meta = {"data": source, "n_train": len(tr_x), "n_test": len(te_x), "fit_wall_s": round(fit_s, 1),
            "command": _command(), "date": _dt.date.today().isoformat(), "metrics": metrics}
    model.save(args.out, meta=meta)
    print(json.dumps(metrics, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.cli.train_specialists faithfulness|intent ...`` (same as ``ragfix train ...``)."""
    parser = argparse.ArgumentParser(prog="ragfix train")
    add_train_parsers(parser.add_subparsers(dest="train", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
