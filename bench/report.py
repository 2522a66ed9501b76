"""Writing benchmark results: JSON (config, environment, metrics) and a short Markdown table."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

from bench.environment import environment

__all__ = ["write_results", "markdown_table"]


def markdown_table(rows: Sequence[Mapping], columns: Sequence[str], floatfmt: str = ".3f") -> str:
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    lines = []
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c, "")
            cells.append(format(v, floatfmt) if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def write_results(out: Path | str, config: Mapping, metrics: Mapping, markdown: str | None = None, **extra) -> dict:
    """Write ``{"config", "environment", "metrics", ...extra}`` atomically; Markdown beside it as ``.md``."""
    out = Path(out)
    doc = {"config": dict(config), "environment": environment(), "metrics": dict(metrics), **extra}
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2, sort_keys=False)
            fh.write("\n")
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if markdown is not None:
        out.with_suffix(".md").write_text(markdown, encoding="utf-8")
    return doc
