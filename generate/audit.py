"""Answer audit: split bad answers into retrieval misses and generation failures (failure mode II).

Right Doc, Wrong Answer is invisible to retrieval metrics and to answer accuracy alone: a wrong
answer may come from a context that never held the answer (fix retrieval) or from an LLM that had
the passage and departed from it (fix generation: the gate, the context order). This module sorts
logged rows into those two bins.

Log format (JSONL, one request per line)::

    {"query": "...", "passages": ["text", {"id": "d1", "text": "..."}, ...], "answer": "...",
     "reference_answers": ["...", ...]}      # optional; "reference_answer": "..." also accepted

Per row, with references: ``bears`` = some passage contains a reference answer (normalised
substring, as in the Lost-in-the-Middle evaluation); ``correct`` = the answer contains one;
``faithful`` = the gate finds every claim supported by the passages. Categories:

- ``abstained``: the answer declines ("I don't know");
- ``retrieval_miss``: no passage bears a reference (whatever the answer did);
- ``generation_failure``: a passage bears a reference and the answer is unfaithful to the passages;
- ``wrong_but_supported``: a passage bears a reference, the answer is faithful to *some* passage but
  misses the reference (it followed a distractor);
- ``ok``: a passage bears a reference and the answer is correct and faithful;
- ``correct_but_flagged``: correct, yet the gate flags it (the gate's false alarms, counted apart).

Without references a row can only be ``supported`` / ``unsupported`` / ``abstained`` (the gate's
verdict): separating retrieval from generation needs to know what the answer should have been.
"""
from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

__all__ = ["AnswerRow", "LogFormatError", "read_answer_log", "normalize_answer", "has_answer", "audit_answers",
           "CATEGORIES", "AuditReport"]

CATEGORIES = ("ok", "retrieval_miss", "generation_failure", "wrong_but_supported", "correct_but_flagged", "abstained")
_ARTICLES = re.compile(r"\b(a|an|the)\b")


class LogFormatError(ValueError):
    """A log row that is not a valid (query, passages, answer[, references]) record; names the line."""


@dataclass(frozen=True)
class AnswerRow:
    line: int
    query: str
    passages: list[str]
    answer: str
    references: list[str] = field(default_factory=list)


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and articles, collapse spaces (the SQuAD / NQ-open normalisation)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    return " ".join(_ARTICLES.sub(" ", text).split())


def has_answer(text: str, references: Sequence[str]) -> bool:
    """True when a normalised reference appears in the normalised text as a whole-word substring."""
    t = f" {normalize_answer(text)} "
    return any(n and f" {n} " in t for n in (normalize_answer(r) for r in references))


def _row(line: int, obj) -> AnswerRow:
    if not isinstance(obj, dict):
        raise LogFormatError(f"line {line}: expected a JSON object, got {type(obj).__name__}")
    for key in ("query", "passages", "answer"):
        if key not in obj:
            raise LogFormatError(f"line {line}: missing field {key!r} (need query, passages, answer)")
    if not isinstance(obj["query"], str) or not isinstance(obj["answer"], str):
        raise LogFormatError(f"line {line}: query and answer must be strings")
    if not isinstance(obj["passages"], list) or not obj["passages"]:
        raise LogFormatError(f"line {line}: passages must be a non-empty list of strings or {{id, text}} objects")
    passages = []
    for k, p in enumerate(obj["passages"]):
        text = p.get("text") if isinstance(p, dict) else p
        if not isinstance(text, str) or not text.strip():
            raise LogFormatError(f"line {line}: passages[{k}] has no text")
        passages.append(text)
    refs = obj.get("reference_answers", obj.get("reference_answer", []))
    refs = [refs] if isinstance(refs, str) else refs
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        raise LogFormatError(f"line {line}: reference_answers must be a string or a list of strings")
    return AnswerRow(line, obj["query"], passages, obj["answer"], [r for r in refs if r.strip()])


def read_answer_log(path: Path | str, skip_malformed: bool = False, errors: list[str] | None = None) -> Iterator[AnswerRow]:
    """Rows of a JSONL answer log. A malformed row raises :class:`LogFormatError` (with its line number)
    unless ``skip_malformed``; skipped rows' messages are appended to ``errors``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"answer log {path} not found; write one JSON object per request (see generate.audit)")
    with open(path, "rb") as fh:
        for n, data in enumerate(fh, start=1):
            if n == 1 and data.startswith(b"\xef\xbb\xbf"):
                data = data[3:]  # a UTF-8 byte-order mark
            try:
                raw = data.decode("utf-8")
            except UnicodeDecodeError as exc:  # decoded per line so the error can name the line
                raise LogFormatError(f"{path}:{n}: not UTF-8 (byte 0x{data[exc.start]:02x} at column {exc.start + 1}); "
                                     "re-save the log as UTF-8") from None
            if not raw.strip():
                continue
            try:
                try:
                    obj = json.loads(raw)
                except json.JSONDecodeError as exc:
                    raise LogFormatError(f"line {n}: not valid JSON ({exc.msg} at column {exc.colno})") from None
                yield _row(n, obj)
            except LogFormatError as exc:
                if not skip_malformed:
                    # "line N: why" -> "path:N: why", the form every other loader uses
                    raise LogFormatError(f"{path}:{str(exc).removeprefix('line ')} -- fix the row, or pass --skip-malformed to skip it") from None
                if errors is not None:
                    errors.append(str(exc))


@dataclass
class AuditReport:
    n: int
    counts: dict[str, int]
    rates: dict[str, float]
    examples: dict[str, list[dict]]
    skipped: list[str]
    with_references: int

    def to_dict(self) -> dict:
        return {"n": self.n, "with_references": self.with_references, "counts": self.counts, "rates": self.rates,
                "examples": self.examples, "skipped": self.skipped}


def audit_answers(rows: Sequence[AnswerRow], gate, n_examples: int = 3, skipped: Sequence[str] = ()) -> AuditReport:
    """Categorise each row (see the module docstring); ``gate`` is a :class:`generate.gate.FaithfulnessGate`."""
    counts: dict[str, int] = {}
    examples: dict[str, list[dict]] = {}
    n_ref = 0
    for r in rows:
        res = gate.check(r.query, r.answer, r.passages)
        if r.references:
            n_ref += 1
            bears = any(has_answer(p, r.references) for p in r.passages)
            correct = has_answer(r.answer, r.references)
            if res.abstained:
                cat = "abstained"
            elif not bears:
                cat = "retrieval_miss"
            elif not res.passed:
                cat = "correct_but_flagged" if correct else "generation_failure"
            else:
                cat = "ok" if correct else "wrong_but_supported"
        else:
            cat = "abstained" if res.abstained else "supported" if res.passed else "unsupported"
        counts[cat] = counts.get(cat, 0) + 1
        if len(examples.setdefault(cat, [])) < n_examples:
            examples[cat].append({"line": r.line, "query": r.query, "answer": r.answer, "verdict": res.verdict,
                                  "claims": [(c.claim, c.verdict, round(c.p_supported, 3)) for c in res.claims]})
    n = sum(counts.values())
    return AuditReport(n, counts, {k: v / n for k, v in counts.items()} if n else {}, examples, list(skipped), n_ref)
