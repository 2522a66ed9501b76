"""NQ-open oracle rows (Liu et al., TACL 2024, ``lost_in_the_middle/nq-open-oracle.jsonl.gz``) for context-rot runs.

Moved here from ``generate/context_rot.py`` so the fix package never reads a data set:
:func:`generate.context_rot.build_items` takes the rows this returns. A row with no gold context
or no answers raises :class:`data.DatasetError` naming the file and line.

Example::

    rows = load_nq_oracle()
    items = generate.context_rot.build_items(rows, registry.load_embedder("minilm"), n_passages=3, limit=20)
"""
from __future__ import annotations

from data import DatasetError, data_root, read_jsonl

__all__ = ["load_nq_oracle"]


def load_nq_oracle(path=None) -> list[tuple[str, list[str], str]]:
    """(question, answers, gold passage text) from ``lost_in_the_middle/nq-open-oracle.jsonl.gz``."""
    path = path or data_root() / "lost_in_the_middle" / "nq-open-oracle.jsonl.gz"
    out = []
    for line, obj in read_jsonl(path):
        ctx = next((c for c in obj.get("ctxs", []) if c.get("isgold")), None)
        if ctx is None or not obj.get("answers"):
            raise DatasetError(f"{path}:{line}: row has no gold context or no answers")
        out.append((obj["question"], list(obj["answers"]), f"{ctx.get('title', '')}\n{ctx['text']}".strip()))
    return out
