"""``ragfix bench distill-drift``: a distilled judge served while traffic shifts, watched by a shadow monitor (IX).

Distillation Drift: a student judge agrees with its teacher on held-out data, then production moves
to another distribution and agreement falls silently. The real case here:

- **teacher**: the 6-layer cross-encoder ``reranker-l6``; verdict = score > ``--threshold`` (0.5 on its
  sigmoid scale), every verdict through the :class:`distill.judge_cache.JudgeCache` (``--cache``: a
  bounded pool of pairs is scored once, cached, and every stream is drawn from that pool);
- **student**: :class:`distill.student.FeatureStudent` (logistic regression) on the 2-layer cross-encoder
  ``reranker-l2``'s logit, query-word overlap and document length (``--student``, see ``ragfix distill judge``),
  trained on the teacher's verdicts for SciFact pairs (``--in-queries`` claims x BM25 top-``--top-k``,
  60% of queries; the other 40% are the in-distribution held-out pool);
- **shift**: traffic moves to NQ-open and HotpotQA pairs (``--shift-queries`` each), split by query
  into a *traffic* half (what streams serve, and what shadow labels come from) and a *fresh* half
  (only for the retrained student's acceptance test);
- **monitor**: :class:`distill.agreement_monitor.ShadowMonitor` -- ``--audit-share`` of items also go to
  the teacher; Bernoulli CUSUM on disagreement from ``p0`` (95% upper Clopper-Pearson bound of
  held-out disagreement) to ``p1 = --ratio * p0``, ``h = ln(horizon / 0.05)`` with horizon = expected
  audited items per stream; while it alarms, traffic is served by the teacher.

Streams (seeded): ``--pre`` items from the held-out SciFact pool, then ``--post`` items from the shifted
traffic pool (drawn with replacement), ``--runs`` of them; ``--fa-runs`` unshifted streams of the same
length from the held-out pool give the false-alarm rate (with its Clopper-Pearson 95% upper bound).
Quality served = accuracy against gold relevance labels (SciFact qrels, the NQ / HotpotQA question's
own passage) over the post-shift items: student only, with escalation, and the teacher (per run, with
its Clopper-Pearson interval); ``quality.after_alarm`` compares the same on the escalated window only (from
the alarm on), since the items served before the alarm are the student's by design. The audit draw is
seeded, so the measured share scatters around ``--audit-share``; the default 0.045 keeps it under 5%. After each shifted run the student is retrained on its training set
plus that run's post-shift shadow labels, and accepted (:meth:`ShadowMonitor.accept`) only if its
agreement on the fresh pool is within 0.02 of the in-distribution agreement.

JSON keys: ``metrics.agreement.{in_distribution, shifted, after_retrain}`` (each a number with ``_ci95``
beside it -- ``after_retrain`` is run 0's, ``after_retrain_runs`` the spread), ``metrics.runs``,
``.detected_runs``, ``.max_delay_items`` (audited items after the shift until the alarm), ``.false_alarm_rate``
(+ ``_upper95``), ``.audit_share`` (measured), ``.quality`` and ``.retrain``; ``metrics.cost_per_1k_usd``.

Leaves out: a per-source monitor, LLM teachers (see ``ragfix bench judge-spend``), gradual shifts.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

__all__ = ["add_parser", "run_distill_drift", "markdown"]


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("distill-drift", help="IX: distilled judge under traffic shift; shadow monitor, escalation, retraining")
    p.add_argument("--out", required=True, help="results JSON (Markdown beside it)")
    p.add_argument("--teacher", default="reranker-l6")
    p.add_argument("--student", default="logreg-ce:reranker-l2", help="see ragfix distill judge --student")
    p.add_argument("--in-queries", type=int, default=150, help="SciFact queries in the pool")
    p.add_argument("--shift-queries", type=int, default=100, help="NQ-open and HotpotQA queries each")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--audit-share", type=float, default=0.045,
                   help="share of items audited (a seeded draw: 0.045 keeps the measured share under the 5%% budget)")
    p.add_argument("--ratio", type=float, default=2.0, help="p1 / p0 of the CUSUM")
    p.add_argument("--pre", type=int, default=2000, help="in-distribution items before the shift")
    p.add_argument("--post", type=int, default=12000, help="shifted items after it")
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--fa-runs", type=int, default=100)
    p.add_argument("--max-chars", type=int, default=1000)
    p.add_argument("--cache", default="runs/judge-cache.sqlite")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    if not args.out.endswith(".json"):
        raise ValueError(f"--out must name a .json file, got {args.out!r}")
    if not 0.0 < args.audit_share <= 0.05:
        raise ValueError(f"--audit-share must be in (0, 0.05] (the issue's budget), got {args.audit_share}")
    if args.runs < 1 or args.fa_runs < 1 or args.pre < 1 or args.post < 1:
        raise ValueError("--runs, --fa-runs, --pre and --post must be >= 1")
    doc = run_distill_drift(**{k: getattr(args, k) for k in ("out", "teacher", "student", "in_queries", "shift_queries",
                                                            "top_k", "threshold", "audit_share", "ratio", "pre", "post",
                                                            "runs", "fa_runs", "max_chars", "cache", "seed")})
    m = doc["metrics"]
    a = m["agreement"]
    print(f"agreement in-dist {a['in_distribution']:.4f}, shifted {a['shifted']:.4f}, after retrain {a['after_retrain']:.4f}; "
          f"detected {m['detected_runs']}/{m['runs']}, max delay {m['max_delay_items']} audited items, "
          f"false alarms {m['false_alarm_rate']:.3f} (<= {m['false_alarm_rate_upper95']:.3f}); audit share {m['audit_share']:.4f}; "
          f"wrote {args.out}")
    return 0


def _ci(k: int, n: int) -> tuple[float, list[float]]:
    from monitor.bounds import clopper_pearson

    iv = clopper_pearson(int(k), int(n))
    return iv.estimate, [iv.lower, iv.upper]


def _stream(mon, items: np.ndarray, student: np.ndarray, teacher: np.ndarray) -> dict:
    """Serve ``items`` (pool indices) through ``mon``; served labels and the audit count before each item."""
    served = np.empty(len(items), dtype=int)
    audited_before = np.empty(len(items), dtype=int)
    for j, i in enumerate(items):
        audited_before[j] = mon.n_audited_
        served[j] = mon.route(int(i), int(student[i]), lambda k: int(teacher[k]))
    return {"served": served, "audited_before": audited_before}


def run_distill_drift(out: str, teacher: str = "reranker-l6", student: str = "logreg-ce:reranker-l2", in_queries: int = 150,
                      shift_queries: int = 100, top_k: int = 10, threshold: float = 0.5, audit_share: float = 0.05,
                      ratio: float = 2.0, pre: int = 2000, post: int = 12000, runs: int = 30, fa_runs: int = 100,
                      max_chars: int = 1000, cache: str = "runs/judge-cache.sqlite", seed: int = 0) -> dict:
    from bench.recipes.distill import parse_student, build_pool, split_by_query, student_features, teacher_verdicts
    from bench.report import write_results
    from distill.agreement_monitor import ShadowMonitor
    from distill.student import FeatureStudent
    from registry import load_prices

    parse_student(student)

    t_start = time.time()
    prices = load_prices()
    in_pool = build_pool("scifact", in_queries, top_k, seed, max_chars)
    sh_pool = build_pool("nq", shift_queries, top_k, seed, max_chars) + build_pool("hotpotqa", shift_queries, top_k, seed, max_chars)
    pool = in_pool + sh_pool
    t_lab, _, teacher_cpu, rep = teacher_verdicts(pool, teacher, cache, threshold, prices)
    gold = np.array([p.gold for p in pool])
    X, feat_cpu = student_features(pool, student, cache, prices)
    n_in = len(in_pool)
    tr, held = split_by_query(in_pool, 0.4, seed)
    traffic_rel, fresh_rel = split_by_query(sh_pool, 0.5, seed + 1)
    traffic, fresh = traffic_rel + n_in, fresh_rel + n_in

    model = FeatureStudent(features=student).fit(X[tr], t_lab[tr])
    c0 = time.process_time()
    s_lab = model.predict(X)
    predict_cpu = (time.process_time() - c0) / len(pool)
    k_in = int((s_lab[held] == t_lab[held]).sum())
    in_agree, in_ci = _ci(k_in, len(held))
    sh_all = np.arange(n_in, len(pool))
    sh_agree, sh_ci = _ci(int((s_lab[sh_all] == t_lab[sh_all]).sum()), len(sh_all))
    by_source = {}
    for src in ("nq", "hotpotqa"):
        idx = np.array([i for i in sh_all if pool[i].source == src])
        by_source[src] = dict(zip(("value", "ci95"), _ci(int((s_lab[idx] == t_lab[idx]).sum()), len(idx))))

    n_audit_expected = int(math.ceil(audit_share * (pre + post)))
    make = lambda s: ShadowMonitor.from_heldout(k_in, len(held), audit_share, horizon=n_audit_expected, alpha=0.05,
                                                ratio=ratio, seed=s)
    rng = np.random.default_rng(seed)

    # -- unshifted streams: false alarms ----------------------------------------------------------
    fa = 0
    for r in range(fa_runs):
        mon = make(10_000 + r)
        _stream(mon, rng.choice(held, size=pre + post), s_lab, t_lab)
        fa += mon.escalating
    fa_rate, fa_ci = _ci(fa, fa_runs)

    # -- shifted streams ---------------------------------------------------------------------------
    delays, detected, early, audits, items = [], 0, 0, 0, 0
    q_student, q_served, q_teacher, within = [], [], [], 0
    q_after_served, q_after_teacher, within_after = [], [], 0
    after, accepted = [], 0
    for r in range(runs):
        mon = make(r)
        stream = np.concatenate([rng.choice(held, size=pre), rng.choice(traffic, size=post)])
        res = _stream(mon, stream, s_lab, t_lab)
        audits += mon.n_audited_
        items += len(stream)
        if mon.alarm_item_ is not None and mon.alarm_item_ <= pre:
            early += 1  # alarmed before the shift: a false alarm inside a shifted run
        elif mon.alarm_item_ is not None:
            detected += 1
            delays.append(int(res["audited_before"][mon.alarm_item_ - 1] + 1 - res["audited_before"][pre]))
        post_items = stream[pre:]
        g = gold[post_items]
        q_student.append(float((s_lab[post_items] == g).mean()))
        q_served.append(float((res["served"][pre:] == g).mean()))
        t_acc, t_ci = _ci(int((t_lab[post_items] == g).sum()), len(post_items))
        q_teacher.append((t_acc, t_ci))
        within += t_ci[0] <= q_served[-1] <= t_ci[1]
        if mon.alarm_item_ is not None and mon.alarm_item_ > pre:  # the escalated window: from the alarm on
            a_items = stream[mon.alarm_item_ - 1:]
            ga = gold[a_items]
            q_after_served.append(float((res["served"][mon.alarm_item_ - 1:] == ga).mean()))
            ta, ta_ci = _ci(int((t_lab[a_items] == ga).sum()), len(a_items))
            q_after_teacher.append(ta)
            within_after += ta_ci[0] <= q_after_served[-1] <= ta_ci[1]
        # retrain on the original training set + this run's post-shift shadow labels (audited items only)
        shadow = np.array(sorted({i for i, _ in mon.shadow_ if i >= n_in}), dtype=int)
        idx = np.concatenate([tr, shadow])
        st2 = FeatureStudent(features=student).fit(X[idx], t_lab[idx])
        p2 = st2.predict(X[fresh])
        acc = mon.accept(p2, t_lab[fresh], reference=in_agree, tolerance=0.02)
        accepted += acc.accepted
        after.append({"run": r, "shadow_items": int(len(shadow)), "agreement": acc.agreement.estimate,
                      "ci95": [acc.agreement.lower, acc.agreement.upper], "accepted": acc.accepted})
    old_fresh_agree = float((s_lab[fresh] == t_lab[fresh]).mean())

    teacher_per_1k = 1000 * prices.compute_cost(teacher_cpu)
    student_per_1k = 1000 * prices.compute_cost(feat_cpu + predict_cpu)
    metrics = {
        "agreement": {"in_distribution": in_agree, "in_distribution_ci95": in_ci, "shifted": sh_agree, "shifted_ci95": sh_ci,
                      "shifted_by_source": by_source, "after_retrain": after[0]["agreement"],
                      "after_retrain_ci95": after[0]["ci95"], "before_retrain_on_fresh": old_fresh_agree,
                      "after_retrain_runs": {"min": min(a["agreement"] for a in after),
                                             "mean": float(np.mean([a["agreement"] for a in after])),
                                             "max": max(a["agreement"] for a in after)}},
        "runs": runs, "detected_runs": detected, "alarmed_before_shift": early,
        "max_delay_items": max(delays) if delays else None,
        "median_delay_items": float(np.median(delays)) if delays else None,
        "delays_items": delays,
        "false_alarm_rate": fa_rate, "false_alarm_rate_upper95": fa_ci[1], "false_alarm_runs": fa_runs,
        "audit_share": audits / items,
        "monitor": {"p0": make(0).p0, "p1": make(0).p1, "threshold_h": make(0).cusum.threshold, "horizon": n_audit_expected,
                    "alpha": 0.05},
        "quality": {"metric": "accuracy of served verdicts vs gold relevance, post-shift items, mean over runs",
                    "student_only": float(np.mean(q_student)), "with_escalation": float(np.mean(q_served)),
                    "teacher": float(np.mean([t for t, _ in q_teacher])),
                    "teacher_ci95_run0": q_teacher[0][1],
                    "runs_with_escalation_within_teacher_ci95": within,
                    "after_alarm": {"with_escalation": float(np.mean(q_after_served)) if q_after_served else None,
                                    "teacher": float(np.mean(q_after_teacher)) if q_after_teacher else None,
                                    "runs_within_teacher_ci95": within_after, "runs": len(q_after_served)}},
        "retrain": {"accepted_runs": accepted, "tolerance": 0.02, "reference": in_agree,
                    "shadow_items_mean": float(np.mean([a["shadow_items"] for a in after])), "per_run": after},
        "pool": {"in_pairs": n_in, "in_train": int(len(tr)), "in_heldout": int(len(held)), "shift_traffic": int(len(traffic)),
                 "shift_fresh": int(len(fresh)), "teacher_positive_share_in": float(t_lab[:n_in].mean()),
                 "teacher_positive_share_shift": float(t_lab[n_in:].mean())},
        "cost_per_1k_usd": {"teacher": teacher_per_1k, "student": student_per_1k},
        "cache": {"teacher_calls_paid_this_run": rep.calls, "hits": rep.hits, "pairs": rep.pairs},
    }
    config = {"teacher": teacher, "student": student, "in": "scifact", "shift": ["nq", "hotpotqa"],
              "in_queries": in_queries, "shift_queries": shift_queries, "top_k": top_k, "threshold": threshold,
              "audit_share": audit_share, "ratio": ratio, "pre": pre, "post": post, "runs": runs, "fa_runs": fa_runs,
              "max_chars": max_chars, "seed": seed, "wall_s": round(time.time() - t_start, 1)}
    return write_results(out, config, metrics, markdown(config, metrics))


def markdown(config: dict, m: dict) -> str:
    from bench.report import markdown_table

    a = m["agreement"]
    f = lambda v, ci: f"{v:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]"
    rows = [{"traffic": "SciFact held-out (in distribution)", "student-teacher agreement": f(a["in_distribution"], a["in_distribution_ci95"])},
            {"traffic": "NQ-open + HotpotQA (shifted)", "student-teacher agreement": f(a["shifted"], a["shifted_ci95"])},
            {"traffic": "shifted, fresh items, after retraining on shadow labels (run 0)",
             "student-teacher agreement": f(a["after_retrain"], a["after_retrain_ci95"])}]
    qual = m["quality"]
    qrows = [{"served by": "student only", "accuracy vs gold": qual["student_only"]},
             {"served by": "student + escalation while alarmed", "accuracy vs gold": qual["with_escalation"]},
             {"served by": "teacher", "accuracy vs gold": qual["teacher"]}]
    return (f"# Distillation drift: {config['student']} from {config['teacher']}, SciFact -> NQ-open + HotpotQA\n\n"
            + markdown_table(rows, ["traffic", "student-teacher agreement"])
            + f"\nMonitor (audit share {m['audit_share']:.4f}, CUSUM p0 {m['monitor']['p0']:.4f} -> p1 {m['monitor']['p1']:.4f}, "
            f"h {m['monitor']['threshold_h']:.2f}): detected {m['detected_runs']}/{m['runs']} shifted runs, max delay "
            f"{m['max_delay_items']} audited items (median {m['median_delay_items']}); false alarms {m['false_alarm_rate']:.3f} "
            f"of {m['false_alarm_runs']} unshifted streams (95% upper bound {m['false_alarm_rate_upper95']:.3f}).\n\n"
            + markdown_table(qrows, ["served by", "accuracy vs gold"], floatfmt=".4f")
            + f"\nOver the whole post-shift window (student until the alarm), served quality is within the teacher's 95% "
            f"interval in {qual['runs_with_escalation_within_teacher_ci95']}/{m['runs']} runs; from the alarm on it is "
            f"{qual['after_alarm']['with_escalation']:.4f} against the teacher's {qual['after_alarm']['teacher']:.4f} on the same "
            f"items (within its interval in {qual['after_alarm']['runs_within_teacher_ci95']}/{qual['after_alarm']['runs']} runs). Retrained students accepted in {m['retrain']['accepted_runs']}/{m['runs']} runs "
            f"(tolerance 0.02 of in-distribution agreement). Cost per 1k verdicts: teacher ${m['cost_per_1k_usd']['teacher']:.5f}, "
            f"student ${m['cost_per_1k_usd']['student']:.5f}.\n")
