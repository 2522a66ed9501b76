"""``ragfix diagnose context-rot`` and ``ragfix bench context``: the position curve and the order it picks (VII).

``diagnose context-rot --model NAME [--positions 10] [--passages 10] [--limit N]``: the model's
curve on a seeded sample of ``N`` NQ-open oracle questions (JSON + PNG), the order it
favours (:func:`generate.ordering.choose_order`) stored with the model's fingerprint in
``--orders PATH`` (e.g. ``configs/context_orders.json``, which the pipeline and the demo read) for
the pipeline to use; without ``--orders`` nothing outside ``--out`` is written.

``bench context [--heldout M]``: the same run, then every order on ``M`` *other* questions, paired against rank
order with bootstrap intervals; JSON (``metrics.<order>.{mean_loglik,accuracy}`` with intervals,
``chosen_order``) and Markdown.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from bench.report import atomic_write_text
from bench.cli.argtypes import non_negative_int, positive_int

__all__ = ["add_diagnose_parser", "add_bench_parser", "run_context", "measured_order", "HELDOUT_ORDERS"]

log = logging.getLogger(__name__)

HELDOUT_ORDERS = ("rank", "reverse", "edges", "chosen")


def _fingerprint(llm) -> str:
    import hashlib

    h = hashlib.sha256(str(getattr(llm.model, "name_or_path", llm.name)).encode())
    for p in list(llm.model.parameters())[:3]:
        h.update(p.detach().float().flatten()[:4096].numpy().tobytes())
    return h.hexdigest()[:16]


def measured_order(name: str, llm, orders_path: str | Path = "configs/context_orders.json") -> tuple[str, list[float] | None]:
    """The context order measured for ``name`` (``ragfix diagnose context-rot``), for ``Pipeline(order=, curve=)``.

    ``("rank", None)`` when nothing was measured for this model; :class:`generate.ordering.StaleOrderError`
    when the stored order was measured on other weights (the fingerprint differs).
    """
    from generate.ordering import OrderStore

    return OrderStore(orders_path).get(name, _fingerprint(llm))


def _plot(curve: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pos = curve["positions"]
    per = [curve["per_position"][str(p)] for p in pos]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, key, label in ((axes[0], "mean_loglik", "gold-answer log-likelihood"), (axes[1], "accuracy", "accuracy")):
        y = [v[key] for v in per]
        lo = [v[key] - v[key + "_ci"][0] for v in per]
        hi = [v[key + "_ci"][1] - v[key] for v in per]
        ax.errorbar([p + 1 for p in pos], y, yerr=[lo, hi], marker="o", capsize=3)
        ax.set_xlabel("position of the gold passage (1 = first)")
        ax.set_ylabel(label)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _dtype(name: str, llm) -> str:
    """``auto`` -> bf16 where it is native (CUDA, or a CPU with AVX512_BF16/AMX), else fp32."""
    import torch

    from rerank.backends import cpu_has_native_bf16

    if name == "auto":
        name = "bf16" if (str(getattr(llm, "device", "cpu")).startswith("cuda") or cpu_has_native_bf16()) else "fp32"
    if name not in ("fp32", "bf16"):
        raise ValueError(f"--dtype must be auto, fp32 or bf16, got {name!r}")
    llm.model.to(torch.bfloat16 if name == "bf16" else torch.float32)
    return name


_CURVE_KEYS = ("curve", "contrasts", "chosen_order", "order_scores_from_curve", "rank_weights")


def load_curve(path: str | Path, model: str, fingerprint: str, passages: int, positions: list[int], limit: int,
               max_words: int, seed: int) -> dict:
    """A curve measured by an earlier run (its result JSON), checked to be the one this run would measure.

    The curve is the expensive half of ``bench context`` (``limit`` x ``positions`` prompts); judging the
    chosen order on more held-out questions should not pay for it again. Every setting that decides which
    questions the curve saw and what it measured must match, or the held-out questions could overlap the
    curve's and the comparison would not be held out.
    """
    path = Path(path)
    try:
        r = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"--curve-from {path}: no such file; give the JSON an earlier `ragfix bench context` wrote") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"--curve-from {path}: not JSON ({e}); give the JSON an earlier `ragfix bench context` wrote") from None
    missing = [k for k in _CURVE_KEYS + ("fingerprint", "questions_curve") if k not in r]
    if missing:
        raise ValueError(f"--curve-from {path}: not a context result (missing {', '.join(missing)})")
    want = {"model": model, "fingerprint": fingerprint, "passages": passages, "positions": positions,
            "questions_curve": limit, "max_words_per_passage": max_words, "seed": seed}
    wrong = {k: (r.get(k), v) for k, v in want.items() if r.get(k) != v}
    if wrong:
        detail = "; ".join(f"{k}: file {a!r}, this run {b!r}" for k, (a, b) in wrong.items())
        raise ValueError(f"--curve-from {path}: measured with other settings ({detail}); rerun the curve or match them")
    return r


def run_context(model: str, positions: int, passages: int, limit: int, max_words: int, seed: int,
                heldout: int, orders_path: str | None, out: Path, dtype: str = "auto",
                cache_path: str | Path | None = "default", max_new_tokens: int = 16,
                curve_from: str | Path | None = None,
                heldout_orders: Sequence[str] = HELDOUT_ORDERS) -> dict:
    """The curve on ``limit`` questions, then (``heldout`` > 0) every order on ``heldout`` other questions.

    With ``curve_from``, the curve (and the order chosen from it) is taken from an earlier result for the
    same model, questions and settings (:func:`load_curve`) and only the held-out questions are run.
    """
    from registry import load_embedder, load_llm
    from data.nq_open import load_nq_oracle
    from generate.context_rot import PromptCache, build_items, evaluate_orders, position_curve, slots_for
    from generate.context_rot import bootstrap_ci
    from generate.ordering import OrderStore, choose_order, rank_distribution, reorder
    from retrieval.cache import default_cache_dir

    if limit < 1 or heldout < 0:
        raise ValueError(f"--limit must be >= 1 and --heldout >= 0, got {limit} and {heldout}")
    bad = sorted(set(heldout_orders) - set(HELDOUT_ORDERS))
    if bad or "rank" not in heldout_orders:
        raise ValueError(f"--heldout-orders: {', '.join(heldout_orders)} is not a subset of {', '.join(HELDOUT_ORDERS)} "
                         "holding 'rank' (the baseline every order is paired with)")
    t0 = time.time()
    llm = load_llm(model)
    fp = _fingerprint(llm)  # of the weights as stored, before any dtype cast: the pipeline loads them so
    dtype = _dtype(dtype, llm)
    if cache_path == "default":
        cache_path = default_cache_dir() / "context_rot.sqlite"
    cache = PromptCache(cache_path, f"{fp}/{dtype}/{max_new_tokens}")
    items = build_items(load_nq_oracle(), load_embedder("minilm"), n_passages=passages, limit=limit + heldout, seed=seed)
    fit_items, held_items = items[:limit], items[limit:]
    slots = slots_for(positions, passages)

    def bar(done: int, total: int) -> None:
        if done % 10 == 0 or done == total:
            log.info(f"  {done}/{total} prompts ({time.time() - t0:.0f} s)")

    result = {"model": model, "fingerprint": fp, "dtype": dtype, "max_new_tokens": max_new_tokens, "passages": passages,
              "positions": slots, "questions_curve": len(fit_items), "max_words_per_passage": max_words, "seed": seed}
    if curve_from:
        prior = load_curve(curve_from, model, fp, passages, slots, limit, max_words, seed)
        # A file that itself reused a curve passes on where the curve was measured, not its own held-out run.
        origin = prior.get("curve_from") or {"path": str(curve_from), "dtype": prior.get("dtype"),
                                             "wall_s": prior.get("wall_s"), "prompts": prior.get("prompts")}
        log.info(f"curve from {curve_from} ({prior['questions_curve']} questions, {origin['dtype']})")
        result.update({k: prior[k] for k in _CURVE_KEYS})
        result["curve_from"] = origin
        chosen = prior["chosen_order"]
    else:
        log.info(f"curve: {len(fit_items)} questions x {len(slots)} positions, {passages} passages")
        curve = position_curve(llm, fit_items, slots, max_words=max_words, max_new_tokens=max_new_tokens, progress=bar,
                               cache=cache)
        ll_curve = [curve["per_position"][str(p)]["mean_loglik"] for p in slots]
        full = [float(x) for x in np.interp(range(passages), slots, ll_curve)]
        # Where the retriever puts the gold passage (measured on the curve's questions, never the held-out ones)
        # weighs the slots: an order is worth what it does for the passages that are actually relevant.
        weights = rank_distribution([it.retrieval_rank for it in fit_items], passages)
        chosen, scores = choose_order(full, passages, rank_weights=weights)
        ll, acc = np.asarray(curve["loglik"]), np.asarray(curve["accuracy"])
        middle = [b for b, p in enumerate(slots) if 0 < p < passages - 1]
        contrasts = {}
        for name, b in (("first_minus_middle", 0), ("last_minus_middle", len(slots) - 1)):
            if middle and slots[b] in (0, passages - 1):  # paired per question: the same question at an end vs mid-context
                d_ll, d_acc = ll[:, b] - ll[:, middle].mean(1), acc[:, b] - acc[:, middle].mean(1)
                contrasts[name] = {"loglik": float(d_ll.mean()), "loglik_ci": bootstrap_ci(d_ll),
                                   "accuracy": float(d_acc.mean()), "accuracy_ci": bootstrap_ci(d_acc)}
        result.update({"curve": {k: v for k, v in curve.items() if k not in ("loglik", "accuracy")},
                       "contrasts": contrasts, "chosen_order": chosen, "order_scores_from_curve": scores,
                       "rank_weights": [round(w, 4) for w in weights]})
        if orders_path:
            OrderStore(orders_path).put(model, fp, chosen, full, f"NQ-open oracle, {len(fit_items)} questions, seed {seed}")
    result["retrieval"] = {"gold_ranked_first": sum(it.retrieval_rank == 0 for it in items) / len(items)}
    if held_items:
        log.info(f"orders on {len(held_items)} held-out questions")
        orders = {o: (lambda ranked, o=o: reorder(ranked, chosen if o == "chosen" else o)) for o in heldout_orders}
        result["metrics"] = evaluate_orders(llm, held_items, orders, max_words=max_words, max_new_tokens=max_new_tokens,
                                            progress=bar, cache=cache)
        result["questions_heldout"] = len(held_items)
    result["wall_s"] = round(time.time() - t0, 1)
    result["prompts"] = {"computed": cache.misses, "from_cache": cache.hits} if cache.db is not None else None
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    if not curve_from:  # a reused curve keeps the plot its own run drew
        _plot(curve, out.with_suffix(".png"), f"{model}: gold passage position among {passages} (NQ-open, {len(fit_items)} questions)")
    return result


def markdown(r: dict, command: str) -> str:
    lines = [f"Position curve of `{r['model']}` ({r['questions_curve']} NQ-open questions, {r['passages']} passages, "
             f"{r['max_words_per_passage']} words each); 95% bootstrap intervals.", "",
             "| gold position | answer log-likelihood | accuracy |", "|---|---|---|"]
    for p in r["positions"]:
        v = r["curve"]["per_position"][str(p)]
        lines.append(f"| {p + 1} | {v['mean_loglik']:.2f} [{v['mean_loglik_ci'][0]:.2f}, {v['mean_loglik_ci'][1]:.2f}] | "
                     f"{v['accuracy']:.3f} [{v['accuracy_ci'][0]:.3f}, {v['accuracy_ci'][1]:.3f}] |")
    for name, v in r.get("contrasts", {}).items():
        lines.append(f"\nPaired, {name.replace('_', ' ')} (per question, the gold at that end minus its mean over the middle "
                     f"positions): log-likelihood {v['loglik']:+.3f} [{v['loglik_ci'][0]:+.3f}, {v['loglik_ci'][1]:+.3f}], "
                     f"accuracy {v['accuracy']:+.3f} [{v['accuracy_ci'][0]:+.3f}, {v['accuracy_ci'][1]:+.3f}].")
    w = r.get("rank_weights")
    lines += ["", f"Order chosen from the curve: **{r['chosen_order']}**"
                  + (f" (slots weighted by where MiniLM ranks the gold passage on the curve's questions: first for "
                     f"{w[0]:.0%})." if w else ".")]
    cf = r.get("curve_from")
    if cf:
        lines += ["", f"The curve and the chosen order are those of an earlier run (`--curve-from {cf['path']}`, "
                      f"{cf['dtype']}); this run ({r['dtype']}) measured the held-out questions only."]
    if "metrics" in r:
        lines += ["", f"Held-out questions ({r['questions_heldout']}, none in the curve; passages ranked by MiniLM, gold first for "
                      f"{r['retrieval']['gold_ranked_first']:.0%}):", "",
                  "| order | log-likelihood | vs rank | accuracy | vs rank |", "|---|---|---|---|---|"]
        for name, v in r["metrics"].items():
            lines.append(f"| {name} | {v['mean_loglik']:.2f} | {v['delta_loglik_vs_rank']:+.3f} "
                         f"[{v['delta_loglik_vs_rank_ci'][0]:+.3f}, {v['delta_loglik_vs_rank_ci'][1]:+.3f}] | "
                         f"{v['accuracy']:.3f} | {v['delta_accuracy_vs_rank']:+.3f}"
                         + (f" [{v['delta_accuracy_vs_rank_ci'][0]:+.3f}, {v['delta_accuracy_vs_rank_ci'][1]:+.3f}]"
                            if "delta_accuracy_vs_rank_ci" in v else "") + " |")
    p = r.get("prompts") or {}
    cached = f"; {p['computed']} prompts computed, {p['from_cache']} from the prompt cache of an earlier run" if p.get("from_cache") else ""
    lines += ["", f"Command: `{command}` ({r['wall_s']:.0f} s{cached})."]
    return "\n".join(lines) + "\n"


def _args(p) -> None:
    p.add_argument("--model", default="smollm2", help="registry LLM")
    p.add_argument("--positions", type=positive_int, default=10, help="gold positions measured (spread over the context)")
    p.add_argument("--passages", type=positive_int, default=10, help="passages per prompt (gold + hard distractors)")
    p.add_argument("--limit", type=positive_int, default=20, help="questions the curve is measured on")
    p.add_argument("--dtype", default="auto", help="auto (bf16 where native), fp32 or bf16")
    p.add_argument("--max-new-tokens", type=positive_int, default=16, help="greedy answer length for the accuracy test")
    p.add_argument("--cache", default="default",
                   help="SQLite file keeping finished prompts so a killed run resumes ($RAGFIX_CACHE/context_rot.sqlite); '' for none")
    p.add_argument("--max-words", type=positive_int, default=100, help="words kept per passage")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--orders", default=None,
                   help="JSON file to store the chosen order in, per model (the pipeline and demo read "
                        "configs/context_orders.json); default: not stored")


def _diagnose(args: argparse.Namespace) -> int:
    out = Path(args.out)
    r = run_context(args.model, args.positions, args.passages, args.limit, args.max_words, args.seed, 0, args.orders, out,
                    args.dtype, args.cache or None, args.max_new_tokens)
    print(markdown(r, "ragfix diagnose context-rot ..."))
    return 0


def _bench(args: argparse.Namespace) -> int:
    import shlex
    import sys

    out = Path(args.out)
    r = run_context(args.model, args.positions, args.passages, args.limit, args.max_words, args.seed, args.heldout, args.orders,
                    out, args.dtype, args.cache or None, args.max_new_tokens, curve_from=args.curve_from,
                    heldout_orders=[o.strip() for o in args.heldout_orders.split(",") if o.strip()])
    md = markdown(r, "ragfix " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    out.with_suffix(".md").write_text(md)
    print(md)
    return 0


def add_diagnose_parser(sub) -> None:
    p = sub.add_parser("context-rot", help="the LLM's position curve on NQ-open with hard distractors (JSON + PNG)")
    _args(p)
    p.add_argument("--out", default="results/context_rot.json")
    p.set_defaults(func=_diagnose)


def add_bench_parser(sub) -> None:
    p = sub.add_parser("context", help="context orders on held-out NQ-open questions: rank vs reverse vs edges vs curve")
    _args(p)
    p.add_argument("--heldout", type=non_negative_int, default=20, help="other questions every order is judged on")
    p.add_argument("--curve-from", default=None,
                   help="reuse the curve of an earlier result JSON (same model, questions and settings); run only the held-out questions")
    p.add_argument("--heldout-orders", default=",".join(HELDOUT_ORDERS),
                   help="orders judged on the held-out questions (must hold rank; fewer orders, fewer prompts)")
    p.add_argument("--out", default="results/context.json")
    p.set_defaults(func=_bench)
