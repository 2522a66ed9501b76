"""Why the 2-layer cascade stage does not train from [CLS]: a frozen-feature probe (VIII, V).

``python -m bench.probes.probe_pooling [--pairs 800] [--layers 2,6]``

For SciFact *train* (claim, abstract) pairs (qrels positives and BM25 hard negatives, 1:1), the
MiniLM weights are cut to the first ``layers`` encoder layers and run as a cross-encoder input
(query [SEP] passage, 128 tokens). Per layer count it reports, for the [CLS] state and for the
masked mean of all token states: the spread across inputs (mean per-dimension standard deviation)
and the 5-fold cross-validated ROC AUC of a logistic regression on the frozen features. A state
that barely varies with the input gives a 1-logit head nothing to learn from; that is what the
listwise and distillation runs of the 2-layer stage ran into.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bench.cli.argtypes import positive_int

__all__ = ["probe_pooling"]


def probe_pooling(n_pairs: int = 800, layers: tuple[int, ...] = (2, 6), max_length: int = 128, seed: int = 0) -> dict:
    """Spread and linear-probe AUC of [CLS] vs mean-pooled states after ``layers`` MiniLM layers."""
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from transformers import AutoModel, AutoTokenizer

    from data import data_root
    from data.rerank_pairs import scifact_qrel_pairs
    from rerank.train import minilm_path

    pairs = scifact_qrel_pairs(data_root() / "scifact", n_neg=1)[:n_pairs]
    y = np.array([p.label for p in pairs])
    if len(set(y)) < 2:
        raise ValueError(f"need positive and negative pairs, got labels {sorted(set(y))}")
    tok = AutoTokenizer.from_pretrained(minilm_path())
    cv = StratifiedKFold(5, shuffle=True, random_state=seed)
    out: dict = {"pairs": len(pairs), "positives": int(y.sum()), "max_length": max_length}
    # One model, one pass: BERT's hidden state after layer n is exactly the output of the model cut to n layers.
    model = AutoModel.from_pretrained(minilm_path(), num_hidden_layers=max(layers)).eval()
    cls: dict[int, list] = {n: [] for n in layers}
    mean: dict[int, list] = {n: [] for n in layers}
    with torch.no_grad():
        for s in range(0, len(pairs), 32):
            b = pairs[s: s + 32]
            enc = tok([p.query for p in b], [p.passage for p in b], truncation=True, max_length=max_length,
                      padding=True, return_tensors="pt")
            states = model(**enc, output_hidden_states=True).hidden_states
            mask = enc["attention_mask"].unsqueeze(-1).float()
            for n in layers:
                cls[n].append(states[n][:, 0].numpy())
                mean[n].append(((states[n] * mask).sum(1) / mask.sum(1)).numpy())
    for n in layers:
        for name, x in (("cls", np.concatenate(cls[n])), ("mean", np.concatenate(mean[n]))):
            auc = cross_val_score(LogisticRegression(max_iter=2000), x, y, cv=cv, scoring="roc_auc")
            out[f"layers{n}_{name}"] = {"spread": float(x.std(0).mean()), "probe_auc": float(auc.mean()),
                                        "probe_auc_folds": [round(float(a), 4) for a in auc]}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.probes.probe_pooling", description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=positive_int, default=800)
    p.add_argument("--layers", default="2,6")
    p.add_argument("--out", type=Path, default=None, help="results JSON (with provenance); Markdown beside it")
    a = p.parse_args(argv)
    res = probe_pooling(a.pairs, tuple(int(x) for x in a.layers.split(",")))
    print(json.dumps(res, indent=2))
    if a.out:
        from bench.report import write_results

        rows = "\n".join(f"| {k} | {v['spread']:.4f} | {np.mean(v['probe_auc_folds']):.3f} |"
                         for k, v in res.items() if isinstance(v, dict) and "spread" in v)
        md = (f"Pooling probe ({res['pairs']} SciFact pairs): spread of the pooled state across inputs and a 5-fold "
              f"logistic-regression probe's AUC for relevance.\n\n| layers_pooling | spread | probe AUC |\n|---|---|---|\n{rows}\n")
        write_results(a.out, {"pairs": a.pairs, "layers": a.layers}, res, md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
