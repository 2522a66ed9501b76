"""One week of the eval-drift bench's story, written as the two logs ``ragfix diagnose eval-drift`` reads (I).

``python -m bench.probes.export_eval_drift_logs --week 5 --out-dir runs/eval-drift-week5 [--out R.json]``

Writes ``eval.jsonl`` (the frozen eval set: ``query``, ``metric`` = the live release's nDCG@10 with the real
qrels, ``signals``) and ``traffic.jsonl`` (that week's traffic window: ``query``, ``signals``, and
``true_metric``, which the diagnose command never reads; it is there to check its answer), plus a results
file (``--out``, default ``DIR/week.json``: commit, machine, the cross-encoder's hash behind the signals,
command) with what the bench computes for that week: offline, true and estimated metric. ``signals`` are the label-free predictor inputs
the bench uses for the live release (:func:`bench.benchmarks.bench_eval_drift.judged_signals`: retrieval
signals plus the label-free cross-encoder's judgement of its top 3), so

``ragfix diagnose eval-drift --eval DIR/eval.jsonl --traffic DIR/traffic.jsonl``

shows, on real SciFact + NQ-open logs, the format a team's own logs take and the number the bench measured
(both call :func:`monitor.eval_drift.signals_estimate`). The stream, eval set and releases are the bench's
(split 0); ``--story-seed`` picks the story (0 is the bench's main story).
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

__all__ = ["export_week", "main"]

log = logging.getLogger(__name__)


def export_week(week: int, out_dir: Path | str, story_seed: int = 0, n_nq: int = 1500, n_eval: int = 300,
                window: int = 400) -> dict:
    """Write ``eval.jsonl`` and ``traffic.jsonl`` for ``week`` of the story into ``out_dir``; returns the week's numbers."""
    from bench.benchmarks import bench_eval_drift as b
    from bench.report import atomic_write_text
    from monitor.eval_drift import signals_estimate

    tilt, nq_share = b.default_schedule()
    if not 0 <= week < len(tilt):
        raise ValueError(f"week {week}: the story has weeks 0-{len(tilt) - 1}")
    st = b.setup_stream(n_nq, n_eval, 0)
    sig = b.judged_signals(st)
    names = list(st.ship)
    wins, _, _ = b.story_windows(st.d, st.eval_idx, st.pool, st.nq, window, story_seed, st.rel[names[-1]])
    r = b.live_release(names, week, len(tilt))
    m, s, idx = st.rel[r], sig[r], wins[week]
    texts = list(st.d.queries.values())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "eval.jsonl", "".join(
        json.dumps({"query": texts[i], "metric": float(m[i]), "signals": [float(x) for x in s[i]]}) + "\n"
        for i in st.eval_idx))
    atomic_write_text(out / "traffic.jsonl", "".join(
        json.dumps({"query": texts[i], "signals": [float(x) for x in s[i]], "true_metric": float(m[i])}) + "\n"
        for i in idx))
    q = st.d.query_emb.astype(np.float64)
    est, _, _ = signals_estimate(q[st.eval_idx], m[st.eval_idx], s[st.eval_idx], q[idx], s[idx], seed=story_seed,
                                 n_boot=500)
    info = {"week": week, "story_seed": story_seed, "release": r, "topic_tilt": tilt[week], "nq_share": nq_share[week],
            "n_eval": int(len(st.eval_idx)), "n_traffic": int(len(idx)), "offline": float(m[st.eval_idx].mean()),
            "true": float(m[idx].mean()), "bench_estimate": None if est.is_refused else est.estimate,
            "bench_refused": est.is_refused, "signals": "bench_eval_drift.judged_signals (retrieval + "
            f"{b.CE_MODEL} top 3)", "n_signals": int(s.shape[1])}
    return info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.probes.export_eval_drift_logs", description=__doc__.splitlines()[0])
    p.add_argument("--week", type=int, default=5, help="week of the story (0-11)")
    p.add_argument("--story-seed", type=int, default=0, help="story seed (0: the bench's main story)")
    p.add_argument("--out-dir", type=Path, required=True, help="folder for eval.jsonl and traffic.jsonl")
    p.add_argument("--out", type=Path, default=None, help="results JSON with the week's numbers (default DIR/week.json)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        info = export_week(args.week, args.out_dir, args.story_seed)
    except ValueError as e:
        p.error(str(e))
    from bench.report import write_results

    write_results(args.out or Path(args.out_dir) / "week.json",
                  {"week": args.week, "story_seed": args.story_seed, "out_dir": str(args.out_dir)}, info)
    print(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
