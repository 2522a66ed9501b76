"""Paired timing of a workload against a matched reference: the ratio of their fastest rounds.

Why the minimum: on a shared machine every disturbance (a neighbour's burst, a context switch, a
cache flush) *adds* time; none removes it. Over enough short rounds the fastest one of each
callable is close to its unloaded cost, and taking both minima from the same interleaved rounds
cancels slow drifts (CPU frequency, a noisy neighbour's duty cycle) that a median keeps.

Why a matched reference: a reference of another kind (a multi-threaded matmul for a
single-threaded tokenizer-bound workload) moves differently under load, so the ratio moves with
the load. Give each workload a reference that does the same kind of work on the same threads.
"""
from __future__ import annotations

import time
from typing import Callable, NamedTuple

import numpy as np

__all__ = ["Measurement", "measure"]


class Measurement(NamedTuple):
    """One paired measurement. ``ratio`` = fastest workload round / fastest reference round."""

    ratio: float
    workload_s: float        # fastest round of the workload, seconds per call
    reference_s: float       # fastest round of the reference, seconds per call
    median_ratio: float      # median of per-round ratios (reported, not used for the decision)
    rounds: int
    inner: int               # calls per timed round (chosen so one round lasts about ``round_s``)


def _calls_per_round(fn: Callable[[], object], round_s: float) -> int:
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    return max(1, int(round_s / max(dt, 1e-7)))


def _timed(fn: Callable[[], object], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def measure(workload: Callable[[], object], reference: Callable[[], object], rounds: int = 15,
            round_s: float = 0.02) -> Measurement:
    """Time ``workload`` and ``reference`` interleaved for ``rounds`` rounds; see :class:`Measurement`.

    Args:
        workload: the code under guard, called with no arguments.
        reference: the same kind of work at a fixed size (same threads, same library), not under guard.
        rounds: interleaved rounds (each round times both; the order alternates to cancel drift).
        round_s: target duration of one timed round per callable; short calls are repeated.
    """
    if rounds < 3:
        raise ValueError(f"measure: rounds must be >= 3, got {rounds}")
    if round_s <= 0:
        raise ValueError(f"measure: round_s must be > 0, got {round_s}")
    workload()
    reference()  # warm-up: first calls pay for lazy initialisation, allocation, page faults
    n_w = _calls_per_round(workload, round_s)
    n_r = _calls_per_round(reference, round_s)
    w = np.empty(rounds)
    r = np.empty(rounds)
    for i in range(rounds):
        if i % 2:
            w[i] = _timed(workload, n_w)
            r[i] = _timed(reference, n_r)
        else:
            r[i] = _timed(reference, n_r)
            w[i] = _timed(workload, n_w)
    if r.min() <= 0:
        raise ValueError("measure: the reference took no measurable time; give it more work")
    return Measurement(float(w.min() / r.min()), float(w.min()), float(r.min()), float(np.median(w / r)),
                       rounds, n_w)
