"""Writing benchmark results: JSON (config, environment, metrics) and a short Markdown table."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

from bench.environment import environment

__all__ = ["write_results", "markdown_table", "user_file_mode", "atomic_write_text", "check_output_path",
           "check_output_folder"]


def user_file_mode() -> int:
    """``0o666`` less the process umask: the mode ``open(path, "w")`` would give a new file.

    ``tempfile.mkstemp`` creates its file 0600 whatever the umask, so a result written through it
    and renamed into place would be unreadable to the user's group; callers ``fchmod`` to this.
    """
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


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


def check_output_path(out: Path | str, make_parent: bool = False) -> Path:
    """Check, before any work, that ``out`` can be written: its folder exists (or is created when
    ``make_parent``) and is writable, and ``out`` is not a folder. Raises ``ValueError`` naming the path."""
    out = Path(out)
    parent = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise ValueError(f"{out}: is a folder; give a file path for the output")
    if not parent.is_dir():
        if make_parent:
            parent.mkdir(parents=True, exist_ok=True)
        else:
            raise ValueError(f"{out}: folder {parent} does not exist; create it or choose another --out")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"{out}: folder {parent} is not writable; choose another --out")
    return out


def check_output_folder(out: Path | str, force: bool = False, flag: str = "--out") -> Path:
    """Refuse, before any work, to write a model into an existing non-empty folder unless ``force``
    (a trained model folder such as the shipped ``models/intent-clinc150`` is not overwritten by a
    command run from the repository root); the parent must be writable. Raises ``ValueError``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{flag} {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ValueError(f"{flag} {out}: folder exists and is not empty; pass --force to overwrite it, "
                         "or choose a new folder")
    parent = out.parent if str(out.parent) else Path(".")
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise ValueError(f"{flag} {out}: {parent} is not writable; choose another folder")
    return out


def atomic_write_text(out: Path | str, text: str) -> Path:
    """Write ``text`` to ``out`` through a temporary file renamed into place (the user's umask applies)."""
    out = Path(out)
    fd, tmp = tempfile.mkstemp(dir=out.parent if str(out.parent) else ".", prefix=f".{out.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, user_file_mode())
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def write_results(out: Path | str, config: Mapping, metrics: Mapping, markdown: str | None = None, **extra) -> dict:
    """Write ``{"config", "environment", "metrics", ...extra}`` atomically; Markdown beside it as ``.md``."""
    out = Path(out)
    doc = {"config": dict(config), "environment": environment(), "metrics": dict(metrics), **extra}
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(doc, indent=2, sort_keys=False) + "\n")
    if markdown is not None:
        atomic_write_text(out.with_suffix(".md"), markdown)
    return doc
