"""Prompt assembly that numbers passages and maps the model's ``[n]`` citations back to doc ids."""
from __future__ import annotations

import re
from typing import Sequence

from retrieval.types import Document

__all__ = ["SYSTEM_PROMPT", "build_messages", "parse_citations", "truncate_words"]

SYSTEM_PROMPT = (
    "You answer the question using only the numbered passages. Answer in one short sentence "
    "and cite the passage you used like [1]. If the passages do not contain the answer, say \"I don't know\"."
)

_CITE = re.compile(r"\[(\d{1,3})\]")


def truncate_words(text: str, max_words: int) -> str:
    words = text.split()
    return text if len(words) <= max_words else " ".join(words[:max_words]) + " ..."


def build_messages(question: str, passages: Sequence[Document], max_words_per_passage: int = 120,
                   system: str = SYSTEM_PROMPT, question_first: bool = False,
                   history: Sequence[dict] | None = None) -> list[dict]:
    """Chat messages: the system instruction, the earlier turns (``history``), then passages ``[1]..[n]`` and the question.

    ``question_first=True`` puts the question before the passages (and again after them), so the
    [system + history + question] prefix is known before reranking ends and can be prefilled meanwhile (VIII).
    ``history`` is a list of ``{"role": "user" | "assistant", "content": str}`` turns.
    """
    if not question.strip():
        raise ValueError("question is empty")
    for i, m in enumerate(history or []):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant") or not isinstance(m.get("content"), str):
            raise ValueError(f"history[{i}] must be {{'role': 'user' | 'assistant', 'content': str}}, got {m!r}")
    blocks = []
    for i, d in enumerate(passages, start=1):
        head = f"[{i}] {d.title}: " if d.title else f"[{i}] "
        blocks.append(head + truncate_words(d.text, max_words_per_passage))
    user = ("Passages:\n" + "\n".join(blocks) + "\n\n" if blocks else "") + f"Question: {question.strip()}"
    if question_first:
        user = f"Question: {question.strip()}\n\n" + user
    return [{"role": "system", "content": system}, *[dict(m) for m in history or []], {"role": "user", "content": user}]


def parse_citations(answer: str, passages: Sequence[Document]) -> list[str]:
    """Document ids cited as ``[n]`` in the answer, in order of first mention, valid numbers only."""
    out: list[str] = []
    for m in _CITE.finditer(answer):
        n = int(m.group(1))
        if 1 <= n <= len(passages) and passages[n - 1].id not in out:
            out.append(passages[n - 1].id)
    return out
