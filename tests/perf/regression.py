"""Latency regression checks that survive a noisy machine: time relative to a reference workload.

Absolute milliseconds differ between a laptop, a CI runner and a shared 2-core box, and within one
run as neighbours come and go. So each workload is timed *interleaved* with a fixed reference
(a 256x256 fp32 matmul chain, the same kind of arithmetic a cross-encoder does), round by round,
and the figure kept is the median of per-round ratios ``workload / reference``. That ratio is
compared with the committed baseline (``baseline.json``) within ``TOLERANCE``.

Refresh the baseline after an intended change (on a quiet machine):

    RAGFIX_PERF_UPDATE=1 .venv/bin/python -m pytest -q tests/perf
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = ["BASELINE", "TOLERANCE", "reference_workload", "normalised_time", "check", "record"]

BASELINE = Path(__file__).with_name("baseline.json")
TOLERANCE = float(os.environ.get("RAGFIX_PERF_TOLERANCE", "1.6"))  # fail when > 1.6x the baseline ratio

_A = None


def reference_workload() -> None:
    """A fixed amount of fp32 GEMM work (~0.2 GFLOP)."""
    import torch

    global _A
    if _A is None:
        g = torch.Generator().manual_seed(0)
        _A = torch.randn(256, 256, generator=g) / 16
    x = _A
    for _ in range(6):
        x = x @ _A


def normalised_time(workload: Callable[[], object], rounds: int = 7) -> tuple[float, float]:
    """(median of workload/reference per round, median workload seconds), interleaved round by round."""
    workload()
    reference_workload()  # warm-up both
    ratios, secs = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(5):
            reference_workload()
        t1 = time.perf_counter()
        workload()
        t2 = time.perf_counter()
        ratios.append((t2 - t1) / ((t1 - t0) / 5))
        secs.append(t2 - t1)
    return float(np.median(ratios)), float(np.median(secs))


def check(name: str, ratio: float, baseline: dict[str, float] | None = None, tolerance: float = TOLERANCE) -> str | None:
    """None when ``ratio`` is within ``tolerance`` x the baseline, else the failure message."""
    baseline = baseline if baseline is not None else json.loads(BASELINE.read_text())["ratios"]
    if name not in baseline:
        return f"no baseline for {name!r}; refresh: RAGFIX_PERF_UPDATE=1 .venv/bin/python -m pytest -q tests/perf"
    limit = baseline[name] * tolerance
    if ratio > limit:
        return (f"{name}: {ratio:.2f} reference units, baseline {baseline[name]:.2f} x tolerance {tolerance} = {limit:.2f}; "
                "a latency regression (or refresh the baseline after an intended change: RAGFIX_PERF_UPDATE=1 "
                ".venv/bin/python -m pytest -q tests/perf)")
    return None


def record(name: str, ratio: float) -> None:
    """Write ``ratio`` into the baseline (only with RAGFIX_PERF_UPDATE=1)."""
    doc = json.loads(BASELINE.read_text()) if BASELINE.is_file() else {"version": 1, "ratios": {}}
    doc["ratios"][name] = round(ratio, 4)
    doc["note"] = "workload time / reference matmul time, median of interleaved rounds; see tests/perf/regression.py"
    BASELINE.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
