"""Injected slowdowns, to prove a guard catches what it claims to catch.

``slowed(fn, 3.0)`` makes every call take 3x as long as the call itself did, by spinning on the CPU
for the extra time (busy work, not sleep, so it competes for the core like real extra work would).
"""
from __future__ import annotations

import time
from typing import Callable

__all__ = ["slowed"]


def slowed(fn: Callable[[], object], factor: float) -> Callable[[], object]:
    """``fn`` made ``factor`` times slower (``factor`` >= 1)."""
    if factor < 1:
        raise ValueError(f"slowed: factor must be >= 1, got {factor}")

    def run() -> object:
        t0 = time.perf_counter()
        out = fn()
        end = t0 + factor * (time.perf_counter() - t0)
        while time.perf_counter() < end:
            pass
        return out

    return run
