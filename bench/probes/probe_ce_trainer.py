"""Does sentence-transformers' ``CrossEncoderTrainer`` reproduce ``rerank.train``'s listwise recipe?

``python -m bench.probes.probe_ce_trainer --out results/probe_ce_trainer.json`` (needs the
``datasets`` package, which the trainer requires and ragfix does not: ``pip install datasets``).

The same SciFact train groups (one cited abstract + ``negatives`` BM25 hard negatives per claim; only
claims with a single cited abstract, so the two losses are the same function), the same 2-layer
MiniLM start, the same number of optimiser steps, learning rate, warm-up, linear decay, weight decay
and gradient clipping, trained three ways:

- ``ragfix``: :func:`rerank.train.train_cross_encoder` (``loss="listwise"``: -log softmax mass of the
  positive in its group; head at 20x the learning rate; length-bucketed batches of whole groups);
- ``st_listnet``: ``CrossEncoderTrainer`` with ``ListNetLoss`` and labels (``label_scale``, 0, 0, ...),
  whose softmax is one-hot to float precision, so the loss is the same cross-entropy; the trainer's
  own AdamW (one learning rate for every parameter) and its own batch order;
- ``st_listnet_head20``: the same, given ragfix's optimiser (head at 20x) through ``optimizers=``.

Each model then reranks the BM25 top ``dev_depth`` of the first ``dev_queries`` SciFact test claims;
reported: nDCG@10 per trainer (and BM25's), the per-step training loss (first, last, mean of the last
quarter) and the steps run. Wall times are not reported (the machine is shared).

Run so far (ARCHITECTURE.md, "Training loop"): ``--queries 120`` on a loaded 2-core machine, stopped
after ragfix's 30 steps and 11 of the ``Trainer``'s; the ``st_listnet_head20`` variant and the
results file have not been exercised yet.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from bench.cli.argtypes import positive_float, positive_int

__all__ = ["probe_ce_trainer", "markdown"]

log = logging.getLogger(__name__)


def _groups(pairs) -> dict[str, list]:
    out: dict[str, list] = {}
    for p in pairs:
        out.setdefault(p.qid, []).append(p)
    return out


def _dev_ndcg(model, dev, depth: int) -> tuple[float, float]:
    """nDCG@10 of ``model`` reranking BM25's top ``depth`` (and BM25's own) on ``dev``."""
    from bench.eval.metrics import evaluate
    from retrieval.retrievers import BM25Retriever

    qids = list(dev.queries)
    res = BM25Retriever().index(dev.corpus).search([dev.queries[q] for q in qids], depth)
    run_ce, run_bm = {}, {}
    for row, qid in enumerate(qids):
        docs = [dev.corpus[int(j)] for j in res.indices[row] if j >= 0]
        scores = model.predict([(dev.queries[qid], d.full_text()) for d in docs], batch_size=32,
                               show_progress_bar=False)  # sigmoid or logit: the same ranking
        run_bm[qid] = {d.id: float(s) for d, s in zip(docs, res.scores[row])}
        if scores is not None:
            run_ce[qid] = {d.id: float(s) for d, s in zip(docs, np.asarray(scores).reshape(-1))}
    ce = evaluate(dev.qrels, run_ce, ("ndcg@10",))["ndcg@10"] if run_ce else float("nan")
    return ce, evaluate(dev.qrels, run_bm, ("ndcg@10",))["ndcg@10"]


def _loss_summary(losses: list[float]) -> dict:
    q = max(1, len(losses) // 4)
    return {"steps": len(losses), "first": round(losses[0], 4), "last": round(losses[-1], 4),
            "mean_last_quarter": round(float(np.mean(losses[-q:])), 4), "curve": [round(v, 4) for v in losses]}


def _st_train(pairs_by_q: dict[str, list], work: Path, layers: int, groups_per_batch: int, lr: float, max_length: int,
              seed: int, warmup: float, label_scale: float, head20: bool) -> tuple[object, list[float]]:
    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import ListNetLoss

    from rerank.train import _new_model

    torch.manual_seed(seed)
    model = _new_model(layers, max_length)
    rows = {"query": [], "docs": [], "labels": []}
    for group in pairs_by_q.values():
        rows["query"].append(group[0].query)
        rows["docs"].append([p.passage for p in group])
        rows["labels"].append([label_scale if p.label >= 0.5 else 0.0 for p in group])
    ds = Dataset.from_dict(rows)
    steps = -(-len(ds) // groups_per_batch)
    args = CrossEncoderTrainingArguments(
        output_dir=str(work), num_train_epochs=1, per_device_train_batch_size=groups_per_batch, learning_rate=lr,
        warmup_steps=max(1, int(warmup * steps)), lr_scheduler_type="linear", weight_decay=0.01, max_grad_norm=1.0,
        logging_steps=1, save_strategy="no", report_to=[], seed=seed, use_cpu=True, disable_tqdm=True,
        dataloader_drop_last=False)
    optimizers = (None, None)
    if head20:
        hf = model[0].model  # the transformers module, as rerank.train reaches it
        head = [p for n, p in hf.named_parameters() if n.startswith("classifier")]
        body = [p for n, p in hf.named_parameters() if not n.startswith("classifier")]
        opt = torch.optim.AdamW([{"params": body, "lr": lr}, {"params": head, "lr": 20 * lr}], weight_decay=0.01)
        n_warm = max(1, int(warmup * steps))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min((s + 1) / n_warm, max(0.0, (steps - s) / max(1, steps - n_warm))))
        optimizers = (opt, sched)
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=ds, loss=ListNetLoss(model),
                                  optimizers=optimizers)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h and "train_runtime" not in h]
    model.eval()
    return model, losses


def probe_ce_trainer(out_dir: Path | str = "runs/probe-ce-trainer", n_queries: int = 240, negatives: int = 3,
                     layers: int = 2, batch_size: int = 16, lr: float = 1e-4, max_length: int = 128, seed: int = 13,
                     dev_queries: int = 100, dev_depth: int = 30, label_scale: float = 30.0, warmup: float = 0.05) -> dict:
    """Train the three ways on the same groups and score each on the same dev claims (see the module docstring).

    ``batch_size`` is in pairs, as ``rerank.train`` counts it: ``batch_size // (1 + negatives)`` groups per
    step for every trainer. Raises ``ValueError`` if fewer than ``n_queries`` single-positive groups exist.
    """
    import torch
    from sentence_transformers import CrossEncoder

    from data import data_root, load_beir
    from data.rerank_pairs import scifact_qrel_pairs
    from rerank.train import train_cross_encoder

    folder = data_root() / "scifact"
    groups = {q: g for q, g in _groups(scifact_qrel_pairs(folder, n_neg=negatives, seed=seed)).items()
              if sum(p.label >= 0.5 for p in g) == 1 and len(g) == 1 + negatives}
    if len(groups) < n_queries:
        raise ValueError(f"n_queries={n_queries}: only {len(groups)} single-positive SciFact train groups exist")
    chosen = dict(sorted(groups.items())[:n_queries])
    pairs = [p for g in chosen.values() for p in g]
    per_batch = max(1, batch_size // (1 + negatives))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = load_beir(folder, "test").limit(dev_queries)

    log.info("ragfix loop: %d groups, %d pairs", len(chosen), len(pairs))
    final = train_cross_encoder(pairs, out / "ragfix", layers=layers, epochs=1, batch_size=per_batch * (1 + negatives),
                                lr=lr, max_length=max_length, seed=seed, warmup=warmup, checkpoint_every=10**9,
                                progress=False, loss="listwise")
    ours = [json.loads(line)["loss"] for line in (out / "ragfix" / "train_log.jsonl").read_text().splitlines()]
    model_ours = CrossEncoder(str(final), num_labels=1, max_length=max_length, device="cpu")
    result = {"ragfix": {"loss": _loss_summary(ours)}}
    result["ragfix"]["ndcg@10"], bm25 = _dev_ndcg(model_ours, dev, dev_depth)
    del model_ours
    for name, head20 in (("st_listnet", False), ("st_listnet_head20", True)):
        log.info("%s", name)
        model, losses = _st_train(chosen, out / name, layers, per_batch, lr, max_length, seed, warmup, label_scale, head20)
        result[name] = {"loss": _loss_summary(losses), "ndcg@10": _dev_ndcg(model, dev, dev_depth)[0]}
        del model
    from rerank.train import _new_model

    torch.manual_seed(seed)
    untrained = _new_model(layers, max_length)
    result["untrained_head"] = {"ndcg@10": _dev_ndcg(untrained, dev, dev_depth)[0]}
    result["bm25"] = {"ndcg@10": bm25}
    return {"config": {"n_queries": n_queries, "negatives": negatives, "pairs": len(pairs), "layers": layers,
                       "groups_per_step": per_batch, "lr": lr, "max_length": max_length, "seed": seed,
                       "dev": f"SciFact test, first {len(dev.queries)} claims, BM25 top {dev_depth}",
                       "label_scale": label_scale, "warmup": warmup},
            "metrics": result}


def markdown(res: dict) -> str:
    from bench.report import markdown_table

    m = res["metrics"]
    rows = [{"trainer": k, "nDCG@10 (dev)": v["ndcg@10"],
             "steps": v.get("loss", {}).get("steps", "-"), "loss first": v.get("loss", {}).get("first", "-"),
             "loss last-quarter mean": v.get("loss", {}).get("mean_last_quarter", "-")} for k, v in m.items()]
    c = res["config"]
    return (f"CrossEncoderTrainer vs rerank.train, {c['pairs']} pairs ({c['n_queries']} SciFact train claims x "
            f"{1 + c['negatives']}), {c['layers']}-layer MiniLM, {c['groups_per_step']} groups per step, lr {c['lr']}; "
            f"dev: {c['dev']}.\n\n" + markdown_table(rows, list(rows[0]), ".4f") + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.probes.probe_ce_trainer", description=__doc__.split("\n")[0])
    p.add_argument("--queries", type=positive_int, default=240, help="SciFact train claims (single-positive groups)")
    p.add_argument("--negatives", type=positive_int, default=3)
    p.add_argument("--layers", type=int, choices=(2, 6), default=2)
    p.add_argument("--batch-size", type=positive_int, default=16, help="pairs per step (whole groups)")
    p.add_argument("--lr", type=positive_float, default=1e-4)
    p.add_argument("--dev-queries", type=positive_int, default=100)
    p.add_argument("--dev-depth", type=positive_int, default=30)
    p.add_argument("--work", default="runs/probe-ce-trainer")
    p.add_argument("--out", required=True, help="results JSON (Markdown beside it)")
    args = p.parse_args(argv)
    from bench.report import check_output_path, write_results

    check_output_path(args.out)
    res = probe_ce_trainer(args.work, args.queries, args.negatives, args.layers, args.batch_size, args.lr,
                           dev_queries=args.dev_queries, dev_depth=args.dev_depth)
    md = markdown(res)
    write_results(args.out, res["config"], res["metrics"], md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
