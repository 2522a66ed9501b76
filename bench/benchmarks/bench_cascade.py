"""``ragfix bench cascade``: Cascade Saturation (X) on CLINC150, a cascade that keeps auditing itself.

Setup (everything real, nothing simulated except the order of requests):

* **cheap stage**: :class:`~cascade.intent.EmbeddingIntentClassifier` on MiniLM embeddings, trained
  on CLINC150 train utterances of the *known* intents only; ``--unseen`` intents are held out --
  "intents launched after the cascade was set up" -- and temperature-scaled on val. With
  ``--unseen-mode lookalike`` (default) the held-out intents are those whose MiniLM train centroid
  lies closest to another intent's (kept) centroid -- a new ``bill_due`` after ``bill_balance`` --
  the case where the cheap stage stays confident while wrong; ``random`` draws them by seed.
* **expensive stage**: the mean class probability of two logistic regressions over all 150
  intents, one on MiniLM embeddings, one on e5-small embeddings. A stand-in for the expensive model (an LLM call in many stacks): what makes it
  expensive here is the e5-small encode, priced from measured CPU seconds and
  ``configs/prices.yaml``; its accuracy against the gold labels is reported too.
* **threshold**: derived on val from the error budget (agreement with the expensive stage at a
  Clopper-Pearson lower bound).
* **traffic**: CLINC150 test utterances; ``--limit`` requests per run; the first third from known
  intents, then ``--shift-share`` of each request from the unseen intents.

Side by side: what the dashboard shows (escalation rate, cost per 1k requests, before/after the
shift -- the base view) and what the audit shows (pass-through error with its bound, alarm,
requests to alarm), recalibration, and the false-alarm rate over ``--runs`` seeded unshifted streams
of the same length.
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from data.clinc import TextEmbeddingStore, load_clinc150
from bench.report import markdown_table, write_results
from cascade.cascade import Cascade
from cascade.intent import EmbeddingIntentClassifier
from monitor.bounds import clopper_pearson
from monitor.calibration import TemperatureScaling, expected_calibration_error, reliability_diagram
from bench.cli.argtypes import fraction, non_negative_int, positive_int, unit_interval

__all__ = ["load_prices", "build_stages", "simulate", "run_cascade_bench", "add_parser"]

log = logging.getLogger(__name__)


def load_prices(path: Path | str | None = None) -> dict[str, Any]:
    """``configs/prices.yaml`` as a dict; raises with the path when missing or malformed."""
    from registry import config_dir

    path = Path(path) if path else config_dir() / "prices.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: price table not found; restore configs/prices.yaml")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    try:
        float(raw["compute"]["cpu_core_hour_usd"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{path}: needs compute.cpu_core_hour_usd (USD per core-hour)") from None
    return raw


def _cpu_seconds_per_text(fn, texts: list[str]) -> float:
    fn(texts[:4])  # warm-up (lazy init, allocator)
    t0 = time.process_time()
    fn(texts)
    return (time.process_time() - t0) / len(texts)


def _lookalike_intents(x: np.ndarray, labels: list[str], intents: list[str], k: int) -> set[str]:
    """The ``k`` intents with the most similar other intent (train centroids, cosine), never both of a pair."""
    y = np.asarray(labels)
    cent = np.stack([x[y == i].mean(0) for i in intents])
    cent /= np.linalg.norm(cent, axis=1, keepdims=True)
    sim = cent @ cent.T
    np.fill_diagonal(sim, -1.0)
    nearest = sim.argmax(1)
    held: set[str] = set()
    for i in np.argsort(-sim.max(1), kind="stable"):
        if len(held) >= k:
            break
        if intents[nearest[i]] not in held:
            held.add(intents[i])
    return held


def build_stages(unseen: int = 30, train_per_intent: int = 50, seed: int = 0,
                 unseen_mode: str = "lookalike") -> dict[str, Any]:
    """Fit both stages and score every val/test utterance once; returns arrays for the simulation."""
    from registry import load_embedder

    store = TextEmbeddingStore()
    mini, e5 = load_embedder("minilm"), load_embedder("e5-small")
    data = load_clinc150()
    intents = data.intents
    if unseen_mode not in ("lookalike", "random"):
        raise ValueError(f"unseen_mode must be 'lookalike' or 'random', got {unseen_mode!r}")

    def emb(model, texts):
        return store.encode(model.fingerprint, texts, model.encode_queries, "query")

    tr_t, tr_y = load_clinc150(per_intent=train_per_intent).split("train")
    if unseen_mode == "lookalike":
        unseen_set = _lookalike_intents(emb(mini, tr_t), tr_y, intents, unseen) if unseen else set()
    else:
        rng = np.random.default_rng(seed)
        unseen_set = set(rng.choice(intents, size=unseen, replace=False).tolist()) if unseen else set()
    known = [i for i in intents if i not in unseen_set]
    m_tr = np.array([y in unseen_set for y in tr_y])
    cheap = EmbeddingIntentClassifier(embedder_fingerprint=mini.fingerprint).fit(
        emb(mini, [t for t, u in zip(tr_t, m_tr) if not u]), [y for y, u in zip(tr_y, m_tr) if not u])
    # Expensive stage: mean of the class probabilities of two classifiers over all 150 intents, one on
    # MiniLM (same train utterances as the cheap stage, plus the unseen intents) and one on e5-small.
    ex_t, ex_y = load_clinc150(per_intent=min(20, train_per_intent)).split("train")
    exp_mini = EmbeddingIntentClassifier(embedder_fingerprint=mini.fingerprint).fit(emb(mini, tr_t), tr_y)
    exp_e5 = EmbeddingIntentClassifier(embedder_fingerprint=e5.fingerprint).fit(emb(e5, ex_t), ex_y)
    if list(exp_mini.classes_) != list(exp_e5.classes_):
        raise ValueError("expensive-stage classifiers disagree on the intent set; check the CLINC150 train split")

    def expensive_predict(xm: np.ndarray, xe: np.ndarray) -> np.ndarray:
        return exp_mini.classes_[(exp_mini.predict_proba(xm) + exp_e5.predict_proba(xe)).argmax(1)]

    va_t, va_y = load_clinc150(per_intent=10).split("val")
    keep = [i for i, y in enumerate(va_y) if y not in unseen_set]
    va_t, va_y = [va_t[i] for i in keep], [va_y[i] for i in keep]
    te_t, te_y = load_clinc150(per_intent=10).split("test")

    def score(texts):
        xm = emb(mini, texts)
        logits = cheap.decision_function(xm)
        exp_ans = expensive_predict(xm, emb(e5, texts))
        return logits, cheap.classes_[logits.argmax(1)], exp_ans

    va_logits, va_cheap, va_exp = score(va_t)
    te_logits, te_cheap, te_exp = score(te_t)
    cls_index = {c: i for i, c in enumerate(cheap.classes_)}
    ts = TemperatureScaling().fit(va_logits, np.array([cls_index[y] for y in va_y]))
    raw_conf = np.exp(va_logits - va_logits.max(1, keepdims=True))
    raw_conf = (1.0 / raw_conf.sum(1))  # max softmax probability at T = 1
    va_conf = ts.predict_proba(va_logits).max(1)
    te_conf = ts.predict_proba(te_logits).max(1)
    va_correct = np.asarray(va_cheap) == np.asarray(va_y)

    # Measured CPU seconds per request of each stage (uncached encodes of fresh texts).
    sample = te_t[:48]
    x_s = mini.encode_queries(sample)
    cheap_s = _cpu_seconds_per_text(mini.encode_queries, sample) + _cpu_seconds_per_text(
        lambda t: cheap.predict(x_s[: len(t)]), sample)
    exp_s = _cpu_seconds_per_text(e5.encode_queries, sample) + _cpu_seconds_per_text(
        lambda t: expensive_predict(x_s[: len(t)], x_s[: len(t)]), sample)
    return {
        "known": known, "unseen": sorted(unseen_set),
        "val": {"conf": va_conf, "raw_conf": raw_conf, "correct": va_correct,
                "agree": np.asarray(va_cheap) == np.asarray(va_exp)},
        "test": {"conf": te_conf, "cheap": np.asarray(te_cheap), "expensive": np.asarray(te_exp),
                 "gold": np.asarray(te_y), "unseen": np.array([y in unseen_set for y in te_y])},
        "temperature": ts.temperature_, "cheap_cpu_s": cheap_s, "expensive_cpu_s": exp_s,
        "expensive_accuracy": float(np.mean(np.asarray(te_exp) == np.asarray(te_y))),
        "n_train_cheap": int((~m_tr).sum()), "n_train_expensive": {"minilm": len(tr_t), "e5": len(ex_t)},
    }


def _stream(stages: dict, n: int, shift_at: int | None, share: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = stages["test"]
    known_idx, unseen_idx = np.flatnonzero(~t["unseen"]), np.flatnonzero(t["unseen"])
    idx = rng.choice(known_idx, size=n)
    if shift_at is not None and unseen_idx.size:
        post = np.arange(n) >= shift_at
        swap = post & (rng.random(n) < share)
        idx[swap] = rng.choice(unseen_idx, size=int(swap.sum()))
    return idx


def simulate(stages: dict, path: Path, threshold: float, idx: np.ndarray, shift_at: int | None, costs: tuple,
             budget: float, audit_rate: float, recalibrate: bool, seed: int, alarm_ratio: float = 3.0,
             recal_window: int = 500) -> dict[str, Any]:
    """Feed one stream through a fresh :class:`Cascade`; summarise before/after the shift and after recalibration."""
    t = stages["test"]
    horizon = max(100, int(len(idx) * audit_rate * 2))
    c = Cascade(path, threshold, error_budget=budget, audit_rate=audit_rate, cheap_cost=costs[0],
                expensive_cost=costs[1], horizon=horizon, alpha=0.05, alarm_ratio=alarm_ratio,
                recal_window=recal_window, seed=seed, synchronous="NORMAL")  # simulated calls cost nothing: no fsync each
    alarm_seq, recal_end = None, None
    routes = []
    for i in idx:
        d = c.decide(t["conf"][i], t["cheap"][i], lambda i=i: t["expensive"][i])
        routes.append(d.route)
        if d.alarm and alarm_seq is None:
            alarm_seq = c.seq
            if recalibrate:
                c.start_recalibration()
        if alarm_seq is not None and recal_end is None and c.recal_left == 0 and c.epoch > 0:
            recal_end = c.seq
    routes_arr = np.array(routes)

    def window(lo: int, hi: int) -> dict[str, Any]:
        s = c.stats(lo, hi)
        sel = idx[lo:hi]
        passed = routes_arr[lo:hi] == "pass"
        wrong = t["cheap"][sel] != t["expensive"][sel]
        k = int(np.sum(wrong & passed))
        iv = clopper_pearson(k, int(passed.sum()))
        gold_wrong = np.where(passed, t["cheap"][sel], t["expensive"][sel]) != t["gold"][sel]
        return {"n": s.get("n", 0), "escalation_rate": s.get("escalation_rate"),
                "expensive_call_rate": s.get("expensive_call_rate"),
                "cost_per_1k_usd": None if not s.get("n") else round(1000 * s["cost_per_request"], 6),
                "audited": s.get("n_audited"), "audit_passthrough_error": s.get("passthrough_error"),
                "audit_passthrough_error_lo": s.get("passthrough_error_lo"),
                "audit_passthrough_error_hi": s.get("passthrough_error_hi"),
                "true_passthrough_error": None if np.isnan(iv.estimate) else round(iv.estimate, 4),
                "answer_error_vs_gold": round(float(gold_wrong.mean()), 4) if len(sel) else None,
                "calibration_gap": s.get("calibration_gap"), "threshold": s.get("threshold_used")}

    n = len(idx)
    cut = shift_at if shift_at is not None else n // 3
    out = {"alarm_at": alarm_seq, "requests_to_alarm": None if alarm_seq is None else alarm_seq - cut,
           "before_shift": window(0, cut), "after_shift": window(cut, alarm_seq or n)}
    if recal_end is not None:
        out["after_recalibration"] = window(recal_end, n)
        out["recalibrated_threshold"] = c.threshold
    c.close()
    return out


def run_cascade_bench(limit: int = 4000, runs: int = 30, unseen: int = 30, shift_share: float = 0.2,
                      budget: float = 0.02, audit_rate: float = 0.1, train_per_intent: int = 50, seed: int = 0,
                      plot: Path | None = None, unseen_mode: str = "lookalike",
                      recal_window: int = 1500) -> tuple[dict[str, Any], dict[str, Any]]:
    if limit < 300:
        raise ValueError(f"--limit must be >= 300 requests for a meaningful audit, got {limit}")
    stages = build_stages(unseen, train_per_intent, seed, unseen_mode)
    prices = load_prices()
    usd_per_core_s = float(prices["compute"]["cpu_core_hour_usd"]) / 3600.0
    costs = (stages["cheap_cpu_s"] * usd_per_core_s, (stages["expensive_cpu_s"]) * usd_per_core_s)
    v = stages["val"]
    threshold = Cascade.derive(v["conf"], v["agree"], budget)
    calib = {"temperature": round(stages["temperature"], 4),
             "base_ece_val": round(expected_calibration_error(v["raw_conf"], v["correct"]), 4),
             "ece_val": round(expected_calibration_error(v["conf"], v["correct"]), 4)}
    if plot is not None:
        reliability_diagram(v["raw_conf"], v["correct"], plot, title="cheap stage on CLINC150 val (known intents)",
                            others={"temperature-scaled": (v["conf"], v["correct"])})
    shift_at = limit // 3
    with tempfile.TemporaryDirectory() as tmp:
        main = simulate(stages, Path(tmp) / "main.sqlite", threshold, _stream(stages, limit, shift_at, shift_share, seed),
                        shift_at, costs, budget, audit_rate, True, seed, recal_window=recal_window)
        rta, false_alarms = [], 0
        for r in range(runs):
            s = simulate(stages, Path(tmp) / f"shift{r}.sqlite", threshold,
                         _stream(stages, limit, shift_at, shift_share, 1000 + r), shift_at, costs, budget, audit_rate,
                         False, 1000 + r)
            rta.append(s["requests_to_alarm"])
            clean = simulate(stages, Path(tmp) / f"clean{r}.sqlite", threshold,
                             _stream(stages, limit, None, 0.0, 2000 + r), None, costs, budget, audit_rate, False, 2000 + r)
            false_alarms += clean["alarm_at"] is not None
    det = [x for x in rta if x is not None]
    far = clopper_pearson(false_alarms, runs)
    metrics = {
        "requests_to_alarm": main["requests_to_alarm"],
        "false_alarm_rate": round(far.estimate, 4), "false_alarm_rate_hi": round(far.upper, 4),
        "false_alarm_runs": runs,
        "requests_to_alarm_runs": {"detected": len(det), "runs": runs,
                                   "median": None if not det else int(np.median(det)),
                                   "min": None if not det else int(min(det)), "max": None if not det else int(max(det))},
        "escalation_rate_before_shift": main["before_shift"]["escalation_rate"],
        "escalation_rate_after_shift": main["after_shift"]["escalation_rate"],
        "cost_per_1k_before_shift_usd": main["before_shift"]["cost_per_1k_usd"],
        "cost_per_1k_after_shift_usd": main["after_shift"]["cost_per_1k_usd"],
        "error_budget": budget, "threshold": threshold, **calib,
        "main_run": main,
    }
    config = {"limit": limit, "runs": runs, "unseen_mode": unseen_mode, "unseen_intents": stages["unseen"],
              "recal_window": recal_window, "alarm": "Bernoulli CUSUM p0=budget, p1=3*budget, h=ln(horizon/0.05)", "shift_share": shift_share,
              "shift_at": shift_at, "error_budget": budget, "audit_rate": audit_rate,
              "train_per_intent": train_per_intent, "seed": seed, "cheap_cpu_s_per_request": stages["cheap_cpu_s"],
              "expensive_cpu_s_per_request": stages["expensive_cpu_s"], "usd_per_core_hour": prices["compute"]["cpu_core_hour_usd"],
              "expensive_accuracy_vs_gold": round(stages["expensive_accuracy"], 4),
              "n_train_cheap": stages["n_train_cheap"], "n_train_expensive": stages["n_train_expensive"],
              "cheap_stage": "LogisticRegression on MiniLM, known intents, temperature-scaled",
              "expensive_stage": "mean probability of LogisticRegression on MiniLM and on e5-small, all 150 intents "
                                 "(stand-in for an expensive model; its extra cost is the e5-small encode)"}
    return config, metrics


def _recal_note(m: dict) -> str:
    w = m["main_run"].get("after_recalibration")
    if not w:
        return "- recalibration did not complete within the stream\n"
    passed = "nothing passes" if w["true_passthrough_error"] is None else f"true pass-through error {w['true_passthrough_error']}"
    return (f"- after recalibration: threshold {w['threshold']:.6f}, escalation rate {w['escalation_rate']}, {passed}, "
            f"cost / 1k {w['cost_per_1k_usd']:.2e} USD. A threshold cannot separate look-alike intents the cheap stage "
            "never learned, so honouring the budget means escalating (almost) everything until the cheap stage is "
            "retrained on the new intents (not done here)\n")


def markdown(config: dict, m: dict) -> str:
    main = m["main_run"]
    rows = []
    for name in ("before_shift", "after_shift", "after_recalibration"):
        w = main.get(name)
        if not w:
            continue
        rows.append({"window": name, "requests": w["n"], "escalation rate": w["escalation_rate"],
                     "cost / 1k req (USD)": f"{w['cost_per_1k_usd']:.2e}",
                     "audit pass-through error [95% CP]": "n/a" if w["audit_passthrough_error"] is None else
                     f"{w['audit_passthrough_error']:.3f} [{w['audit_passthrough_error_lo']:.3f}, {w['audit_passthrough_error_hi']:.3f}]",
                     "true pass-through error": w["true_passthrough_error"], "answer error vs gold": w["answer_error_vs_gold"],
                     "threshold": f"{w['threshold']:.6f}"})
    cols = ["window", "requests", "escalation rate", "cost / 1k req (USD)", "audit pass-through error [95% CP]",
            "true pass-through error", "answer error vs gold", "threshold"]
    r = m["requests_to_alarm_runs"]
    return (f"Cascade Saturation (X) on CLINC150: {len(config['unseen_intents'])} intents unseen by the cheap stage; "
            f"from request {config['shift_at']} on, {config['shift_share']:.0%} of traffic comes from them. "
            f"Error budget {config['error_budget']}, audit {config['audit_rate']:.0%} of confident decisions.\n\n"
            "Base (dashboard: escalation rate, cost) -> Fixed (audit, alarm, recalibration):\n\n"
            + markdown_table(rows, cols)
            + f"\n- requests to alarm after the shift: **{m['requests_to_alarm']}** (over {r['runs']} seeded shifted runs: "
              f"detected {r['detected']}/{r['runs']}, median {r['median']}, range {r['min']}-{r['max']})\n"
              f"- false-alarm rate on unshifted streams of the same length: **{m['false_alarm_rate']}** "
              f"({m['false_alarm_runs']} seeded runs; 95% CP upper {m['false_alarm_rate_hi']})\n"
              + _recal_note(m) +
              f"- cheap stage ECE on val: {m['base_ece_val']} -> {m['ece_val']} after temperature scaling (T = {m['temperature']})\n"
              f"- measured CPU s/request: cheap {config['cheap_cpu_s_per_request']:.4f}, expensive "
              f"{config['expensive_cpu_s_per_request']:.4f}; expensive stage accuracy vs gold {config['expensive_accuracy_vs_gold']}\n")


def _cmd(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    plot = args.out.with_name(args.out.stem + "_reliability.png") if args.out else None
    config, metrics = run_cascade_bench(args.limit, args.runs, args.unseen, args.shift_share, args.budget,
                                        args.audit_rate, args.train_per_intent, args.seed, plot, args.unseen_mode,
                                        args.recal_window)
    config["wall_s"] = round(time.perf_counter() - t0, 1)
    md = markdown(config, metrics)
    print(md)
    if args.out:
        write_results(args.out, config, metrics, md)
        log.info(f"wrote {args.out}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cascade", help="audited cheap->expensive cascade under intent shift: alarm, recalibration (X)")
    p.add_argument("--limit", type=positive_int, default=4000, help="requests per simulated stream (shift after the first third)")
    p.add_argument("--runs", type=positive_int, default=30, help="seeded runs for requests-to-alarm and the false-alarm rate")
    p.add_argument("--unseen", type=non_negative_int, default=30, help="intents held out from the cheap stage")
    p.add_argument("--unseen-mode", choices=("lookalike", "random"), default="lookalike",
                   help="which intents the cheap stage never sees: look-alikes of kept intents, or random")
    p.add_argument("--shift-share", type=unit_interval, default=0.2, help="share of post-shift traffic from unseen intents")
    p.add_argument("--budget", type=unit_interval, default=0.02, help="pass-through error budget (disagreement with the expensive stage)")
    p.add_argument("--recal-window", type=positive_int, default=1500, help="decisions audited in full when recalibrating")
    p.add_argument("--audit-rate", type=fraction, default=0.1, help="fraction of confident decisions audited")
    p.add_argument("--train-per-intent", type=positive_int, default=50, help="CLINC train utterances per intent (cheap stage)")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--out", type=Path, default=None, help="results JSON (.md and _reliability.png beside it)")
    p.set_defaults(func=_cmd)
