"""Argument types that validate numbers at the command line's boundary.

``argparse`` calls a ``type`` function on the raw string; raising :class:`argparse.ArgumentTypeError`
there makes the command exit 2 with ``argument --k: ...`` before anything is loaded or written. A
``--k 0`` that used to run for minutes and write ``nDCG@10 = 0.000`` as a result now stops here.
"""
from __future__ import annotations

import argparse
import math
from typing import Callable

__all__ = ["positive_int", "non_negative_int", "positive_float", "non_negative_float", "finite_float",
           "fraction", "open_fraction", "unit_interval"]


def _number(kind: Callable[[str], float | int], text: str, what: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r} (not finite)")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (counts, depths, sizes)."""
    v = _number(int, text, "an integer >= 1")
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {v}")
    return v


def non_negative_int(text: str) -> int:
    """An integer >= 0 (seeds, optional counts where 0 turns a source off)."""
    v = _number(int, text, "an integer >= 0")
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {v}")
    return v


def finite_float(text: str) -> float:
    """Any finite number (``nan`` and ``inf`` refused)."""
    return _number(float, text, "a finite number")


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates, regularisation)."""
    v = finite_float(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {v}")
    return v


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (costs)."""
    v = finite_float(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {v}")
    return v


def fraction(text: str) -> float:
    """A share in (0, 1] (targets, audit rates)."""
    v = finite_float(text)
    if not 0.0 < v <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {v}")
    return v


def open_fraction(text: str) -> float:
    """A number in (0, 1) (confidence levels)."""
    v = finite_float(text)
    if not 0.0 < v < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number strictly between 0 and 1, got {v}")
    return v


def unit_interval(text: str) -> float:
    """A number in [0, 1] (probabilities, shares that may be zero)."""
    v = finite_float(text)
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {v}")
    return v
