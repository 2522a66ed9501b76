"""``ragfix report readme``: regenerate the results tables of README.md and ``docs/*.md`` from ``results/*.md``.

Every block ``<!-- results:NAME -->`` ... ``<!-- /results:NAME -->`` in README.md is replaced by the
Markdown a benchmark wrote to ``results/NAME.md``, so the README can only show numbers a
benchmark actually produced. Blocks whose results file is missing are left as they are.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

__all__ = ["refresh_readme", "add_parser"]

_BLOCK = re.compile(r"(<!-- results:(?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /results:(?P=name) -->)", re.S)


def refresh_readme(readme: Path, results_dir: Path) -> list[str]:
    """Rewrite ``readme`` in place; returns the names of the blocks that were refreshed."""
    text = readme.read_text(encoding="utf-8")
    done: list[str] = []

    def sub(m: re.Match) -> str:
        src = results_dir / f"{m.group('name')}.md"
        if not src.is_file():
            return m.group(0)
        done.append(m.group("name"))
        return m.group(1) + src.read_text(encoding="utf-8").rstrip("\n") + "\n" + m.group(4)

    new = _BLOCK.sub(sub, text)
    if new != text:
        readme.write_text(new, encoding="utf-8")
    return done


def _cmd(args: argparse.Namespace) -> int:
    pages = [args.readme, *sorted((args.readme.parent / "docs").glob("*.md"))]
    for page in pages:
        done = refresh_readme(page, args.results)
        if done:
            print(f"{page}: refreshed {len(done)} block(s): {', '.join(done)}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    from registry import repo_root

    p = sub.add_parser("readme", help="developer command: regenerate the results tables of README.md and docs/*.md from results/*.md")
    p.add_argument("--readme", type=Path, required=True,
                   help="the README to rewrite in place, and the docs/*.md beside it (required: this command never picks a file to rewrite itself)")
    p.add_argument("--results", type=Path, default=repo_root() / "results")
    p.set_defaults(func=_cmd)
