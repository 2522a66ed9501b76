"""Progress bars and status lines for long commands: :mod:`logging` for status, tqdm for loops.

The ``ragfix`` entry point (:func:`bench.cli.main`) calls ``logging.basicConfig`` once: INFO by
default, WARNING with ``--quiet``, DEBUG with ``--verbose``, all on stderr, so stdout carries only a
command's report. A library caller that configures no logging sees neither status lines nor bars
(the root logger's WARNING level disables both).
"""
from __future__ import annotations

import logging
import sys
from typing import Iterable, Iterator, TypeVar

__all__ = ["progress"]

T = TypeVar("T")


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it",
             logger: str = "bench") -> Iterator[T]:
    """``items`` wrapped in a tqdm bar on stderr, shown only when ``logger`` is enabled for INFO."""
    from tqdm.auto import tqdm

    quiet = not logging.getLogger(logger).isEnabledFor(logging.INFO)
    return iter(tqdm(items, desc=desc, total=total, unit=unit, disable=quiet, file=sys.stderr, mininterval=2.0,
                     dynamic_ncols=True))
