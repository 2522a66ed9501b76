"""Proof that the latency guard catches regressions on a busy machine and stays quiet on clean code.

Runs the project's perf suite (:mod:`bench.benchmarks.perf_workloads` through :class:`perfguard.Guard`, with
the committed baselines and the tests' settings) ``runs`` times, each in a fresh interpreter as a
CI job would, while ``load`` processes spin on the CPU. In every run each workload is checked
clean and with injected slowdowns (:func:`perfguard.slowed`: 1.5x, 2x, 3x). Reported per workload:
the catch rate of each slowdown and the false-failure rate of clean code, with Clopper-Pearson
95% intervals.

    ragfix perf proof --runs 20 --load 1 --unloaded-runs 20 --out results/perf_under_load.json
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from scipy.stats import binomtest

__all__ = ["prove", "run_once", "DEFAULT_BASELINE", "FACTORS"]

DEFAULT_BASELINE = Path(__file__).resolve().parents[2] / "tests" / "perf" / "baseline.json"
FACTORS = (1.5, 2.0, 3.0)


def run_once(baseline: Path, factors: Sequence[float] = FACTORS, tolerance: float = 1.5) -> dict:
    """One CI-like run in this process: ``{workload: {"clean_failed", "caught": {factor: bool}, "ratios"}}``."""
    from bench.benchmarks.perf_workloads import build_workloads
    from perfguard import BaselineStore, Guard, slowed

    guard = Guard(BaselineStore(baseline), tolerance=tolerance)
    workloads, close = build_workloads()
    out: dict = {}
    try:
        for w in workloads:
            clean = guard.check(w.name, w.run, w.reference)
            row = {"clean_failed": not clean.ok, "clean_ratios": clean.ratios, "baseline": clean.baseline,
                   "caught": {}, "ratios": {}}
            for f in factors:
                v = guard.check(w.name, slowed(w.run, f), w.reference)
                row["caught"][str(f)] = not v.ok
                row["ratios"][str(f)] = v.ratios
            out[w.name] = row
    finally:
        close()
    return out


def _spin() -> None:  # a CPU hog: one busy core
    while True:
        pass


def _rate(k: int, n: int) -> dict:
    ci = binomtest(k, n).proportion_ci(0.95, method="exact") if n else None
    return {"k": k, "n": n, "rate": k / n if n else float("nan"),
            "ci95": [round(ci.low, 4), round(ci.high, 4)] if ci else None}


def _condition(runs: int, load: int, baseline: Path, factors: Sequence[float], tolerance: float, log) -> dict:
    hogs = [mp.get_context("spawn").Process(target=_spin, daemon=True) for _ in range(load)]
    for h in hogs:
        h.start()
    per_run: list[dict] = []
    t0 = time.perf_counter()
    try:
        for i in range(runs):
            cmd = [sys.executable, "-m", "bench.benchmarks.perf_proof", "--child", "--baseline", str(baseline),
                   "--tolerance", str(tolerance), "--factors", ",".join(map(str, factors))]
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
            if proc.returncode != 0:
                raise RuntimeError(f"perf proof run {i + 1} failed:\n{proc.stderr[-2000:]}")
            per_run.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            log(f"load={load} run {i + 1}/{runs} ({time.perf_counter() - t0:.0f} s): " + ", ".join(
                f"{n} clean {'FAIL' if r['clean_failed'] else 'ok'} caught " + "/".join(
                    "y" if r["caught"][str(f)] else "n" for f in factors) for n, r in per_run[-1].items()))
    finally:
        for h in hogs:
            h.kill()
            h.join()
    workloads: dict = {}
    for name in per_run[0]:
        rows = [r[name] for r in per_run]
        workloads[name] = {
            "catch_rate": {f"{f:g}": sum(r["caught"][str(f)] for r in rows) / runs for f in factors},
            "false_failure_rate": sum(r["clean_failed"] for r in rows) / runs,
            "catch": {f"{f:g}": _rate(sum(r["caught"][str(f)] for r in rows), runs) for f in factors},
            "false_failure": _rate(sum(r["clean_failed"] for r in rows), runs),
            "baseline": rows[0]["baseline"],
            "clean_first_ratio": [r["clean_ratios"][0] for r in rows],
        }
    return {"runs": runs, "load": load, "seconds": round(time.perf_counter() - t0, 1), "workloads": workloads}


def prove(runs: int = 20, load: int = 1, unloaded_runs: int = 0, baseline: Path = DEFAULT_BASELINE,
          factors: Sequence[float] = FACTORS, tolerance: float = 1.5, log=print) -> dict:
    """The proof's metrics: the loaded condition at top level (``runs``, ``load``, ``workloads``), and
    every condition under ``conditions`` (``load1``, ``load0`` when ``unloaded_runs``)."""
    if runs < 1 or load < 0 or unloaded_runs < 0:
        raise ValueError(f"perf proof: runs must be >= 1 and load, unloaded_runs >= 0; got {runs}, {load}, {unloaded_runs}")
    if not Path(baseline).is_file():
        raise FileNotFoundError(f"perf proof: no baseline file {baseline}; record one with pytest tests/perf --perf-update")
    conditions = {f"load{load}": _condition(runs, load, Path(baseline), factors, tolerance, log)}
    if unloaded_runs:
        conditions["load0"] = _condition(unloaded_runs, 0, Path(baseline), factors, tolerance, log)
    head = conditions[f"load{load}"]
    return {"runs": head["runs"], "load": head["load"], "workloads": head["workloads"], "tolerance": tolerance,
            "factors": list(factors), "conditions": conditions}


def markdown(metrics: dict) -> str:
    lines = ["Latency guard under load: catch rate of injected slowdowns and false-failure rate of clean code "
             f"(tolerance {metrics['tolerance']}x, 2 confirmations; 95% Clopper-Pearson).", "",
             "| load | runs | workload | caught 1.5x | caught 2x | caught 3x | clean failed |", "|---|---|---|---|---|---|---|"]
    for cond in metrics["conditions"].values():
        for name, w in cond["workloads"].items():
            cells = [f"{w['catch'][k]['k']}/{w['catch'][k]['n']}" for k in ("1.5", "2", "3")]
            ff = w["false_failure"]
            lines.append(f"| {cond['load']} busy core(s) | {cond['runs']} | {name} | " + " | ".join(cells)
                         + f" | {ff['k']}/{ff['n']} (<= {ff['ci95'][1]:.2f}) |")
    return "\n".join(lines) + "\n"


def _child(argv: Sequence[str]) -> None:
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--child", action="store_true")
    p.add_argument("--baseline", type=Path, required=True)
    p.add_argument("--tolerance", type=float, default=1.5)
    p.add_argument("--factors", default="1.5,2,3")
    a = p.parse_args(argv)
    res = run_once(a.baseline, [float(x) for x in a.factors.split(",")], a.tolerance)
    print(json.dumps(res))


if __name__ == "__main__":
    _child(sys.argv[1:])
