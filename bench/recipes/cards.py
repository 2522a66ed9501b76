"""The one model-card writer: every trainer's ``MODEL_CARD.md`` is a title, an introduction and
``## `` sections, rendered by :func:`model_card_text` and written atomically by :func:`write_model_card`
(a killed trainer leaves the previous card, never half of a new one).

Used by ``ragfix train reranker`` (:func:`bench.recipes.rerank.write_reranker_card`) and ``ragfix
train faithfulness`` (:mod:`bench.recipes.specialists`: lexical and cross-encoder cards). The intent
model's card is written by ``cascade.intent.IntentModel.save`` itself, so a lifted-out ``cascade``
still saves a self-describing folder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

__all__ = ["model_card_text", "write_model_card", "pair_counts_table"]


def model_card_text(title: str, intro: str, sections: Sequence[tuple[str, str]], comment: str | None = None) -> str:
    """``<!-- comment -->`` (optional), ``# title``, the introduction, then ``## heading`` + body per section.

    Bodies and the introduction are stripped of surrounding blank lines; one blank line separates blocks;
    the text ends with one newline. Raises ``ValueError`` on an empty title or heading (a card without
    them is unreadable in the models/ listing).
    """
    if not title.strip():
        raise ValueError("model card: empty title; pass the model folder's name")
    head = f"<!-- {comment} -->\n" if comment else ""
    text = f"{head}# {title}\n\n{intro.strip()}\n"
    for heading, body in sections:
        if not heading.strip():
            raise ValueError(f"model card {title!r}: a section has an empty heading")
        text += f"\n## {heading}\n\n{body.strip()}\n"
    return text


def write_model_card(folder: Path | str, title: str, intro: str, sections: Sequence[tuple[str, str]],
                     comment: str | None = None) -> Path:
    """Write ``folder/MODEL_CARD.md`` (atomically, :func:`bench.report.atomic_write_text`); returns its path."""
    from bench.report import atomic_write_text

    return atomic_write_text(Path(folder) / "MODEL_CARD.md", model_card_text(title, intro, sections, comment))


def pair_counts_table(counts: dict[str, dict[str, int]], pos: str, neg: str) -> str:
    """A card's data table: one row per pair source, ``counts[source] = {"pos": n, "neg": n}``, under a
    ``| source | POS | NEG |`` header (the column names say what 1 and 0 mean for that model)."""
    rows = "\n".join(f"| {s} | {c['pos']} | {c['neg']} |" for s, c in counts.items())
    return f"| source | {pos} | {neg} |\n|---|---|---|\n{rows}"
