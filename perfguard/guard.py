"""The regression decision: measure, compare with the machine class's baseline, confirm before failing.

A single paired measurement over the limit is not enough evidence on a busy machine, so the guard
re-measures ``confirm`` times and reports a regression only when every confirmation is over the
limit too. A real 3x slowdown repeats; a neighbour's burst does not. What was measured, against
which baseline of which machine class, and every confirmation's ratio go into the message.
"""
from __future__ import annotations

import os
from typing import Callable, NamedTuple

import numpy as np

from perfguard.baseline import BaselineStore
from perfguard.measure import Measurement, measure

__all__ = ["Guard", "Verdict", "MissingBaseline"]


class MissingBaseline(KeyError):
    """No baseline recorded for a workload on any comparable machine class."""

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0])


class Verdict(NamedTuple):
    """The outcome of :meth:`Guard.check`. ``ok`` is False only for a confirmed regression."""

    name: str
    ok: bool
    ratios: tuple[float, ...]    # the first measurement, then each confirmation
    baseline: float
    limit: float
    machine_class: str           # class whose baseline was used
    exact_class: bool            # False: borrowed from the closest class, tolerance widened
    message: str


class Guard:
    """Compare workloads with recorded baselines, robustly.

    Args:
        store: where baselines live (per machine class).
        tolerance: fail when the ratio exceeds ``baseline * tolerance`` (and every confirmation does).
        confirm: re-measurements before a regression is declared.
        foreign_tolerance: extra factor when the baseline comes from another machine class.
        rounds, round_s: passed to :func:`perfguard.measure`.
    """

    def __init__(self, store: BaselineStore, tolerance: float = 1.5, confirm: int = 2, foreign_tolerance: float = 1.5,
                 rounds: int = 11, round_s: float = 0.02) -> None:
        if tolerance <= 1:
            raise ValueError(f"Guard: tolerance must be > 1 (a factor over the baseline), got {tolerance}")
        if confirm < 0:
            raise ValueError(f"Guard: confirm must be >= 0, got {confirm}")
        self.store, self.tolerance, self.confirm = store, float(tolerance), int(confirm)
        self.foreign_tolerance, self.rounds, self.round_s = float(foreign_tolerance), rounds, round_s
        self.refresh_hint = os.environ.get("PERFGUARD_REFRESH_HINT", "record the baseline again on a quiet machine")

    def _measure(self, workload: Callable[[], object], reference: Callable[[], object]) -> Measurement:
        return measure(workload, reference, rounds=self.rounds, round_s=self.round_s)

    def record(self, name: str, workload: Callable[[], object], reference: Callable[[], object],
               repeats: int = 3) -> float:
        """Measure ``repeats`` times and store the median ratio as this machine class's baseline."""
        ratio = float(np.median([self._measure(workload, reference).ratio for _ in range(repeats)]))
        self.store.record({name: ratio})
        return ratio

    def check(self, name: str, workload: Callable[[], object], reference: Callable[[], object]) -> Verdict:
        """Measure ``workload`` against ``reference`` and decide; raises :class:`MissingBaseline`."""
        found = self.store.lookup(name)
        if found is None:
            raise MissingBaseline(f"no baseline for {name!r} in {self.store.path} for machine class "
                                  f"{self.store.machine.key!r} or any class like it; {self.refresh_hint}")
        base, cls, exact = found
        limit = base * self.tolerance * (1.0 if exact else self.foreign_tolerance)
        ratios = [self._measure(workload, reference).ratio]
        while ratios[-1] > limit and len(ratios) <= self.confirm:
            ratios.append(self._measure(workload, reference).ratio)
        ok = min(ratios) <= limit
        where = f"baseline of {cls!r}" + ("" if exact else f" (closest to this machine {self.store.machine.key!r}; tolerance widened x{self.foreign_tolerance})")
        shown = ", ".join(f"{r:.3f}" for r in ratios)
        if ok:
            msg = f"{name}: ok, ratio {ratios[-1]:.3f} <= limit {limit:.3f} ({where}, measured {shown})"
        else:
            msg = (f"{name}: latency regression: ratio to its reference {shown} (first measurement, then "
                   f"{len(ratios) - 1} confirmations) all above the limit {limit:.3f} = baseline {base:.3f} x "
                   f"tolerance {limit / base:.2f} ({where}); that is {min(ratios) / base:.2f}x the baseline. "
                   f"If the change is intended, {self.refresh_hint}.")
        return Verdict(name, ok, tuple(ratios), base, limit, cls, exact, msg)
