"""Faithfulness gate: check every claim of an answer against its passages before it ships (failure mode II).

Right Doc, Wrong Answer: retrieval put the right passage in the context and the answer still
states something the passage does not. The gate splits the answer into claims (sentences, with
citation markers removed), scores each against every passage with the faithfulness specialist
(``registry.load_faithfulness``; any object with ``predict_proba(evidences, claims,
questions)`` works) and gives each claim a verdict:

- ``supported``: some passage supports it (P >= ``threshold``); that passage is kept as its evidence;
- ``contradicted``: no passage supports it, yet one passage covers at least ``contradict_overlap`` of
  its content words -- the claim talks about what the passage says and departs from it (a changed
  name, number or date: the signature of a hallucination over the right document);
- ``unsupported``: no passage supports it or covers it.

Each verdict carries ``evidence_span``: the sentence of the deciding passage the claim stands on.

An answer passes when every claim is supported. An "I don't know" answer is an abstention, not a
claim. On failure, a policy (``regenerate``, ``extractive``, ``abstain``, or ``none``) decides what
is returned; :func:`apply_policy` runs it. Measured by ``ragfix bench faithfulness`` (balanced
accuracy on length-matched HaluEval QA, and verdicts against correctness on the pipeline's own
NQ answers, with the accuracy of each policy).

Leaves out: claim decomposition beyond sentences, coreference across claims, numeric reasoning.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Sequence

from cascade.support_features import content_words

__all__ = ["ClaimVerdict", "GateResult", "FaithfulnessGate", "split_claims", "cited_passages", "is_abstention", "POLICIES",
           "evidence_span",
           "ABSTAIN_TEXT", "apply_policy", "extractive_answer"]

POLICIES = ("none", "regenerate", "extractive", "abstain")
ABSTAIN_TEXT = "I don't know: the passages do not support an answer."
_CITE = re.compile(r"\s*\[\d{1,3}\]")
_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_ABSTAIN = re.compile(r"\b(i don'?t know|i do not know|cannot be determined|not (?:mentioned|stated|given) in the passages|"
                      r"the passages do not (?:say|mention|contain|state))\b", re.I)
_WORD = re.compile(r"\w+")


def is_abstention(answer: str) -> bool:
    """True when the answer declines to answer ("I don't know", "the passages do not say", ...)."""
    return bool(_ABSTAIN.search(answer))


def cited_passages(answer: str, n_passages: int) -> list[int]:
    """0-based indices of the passages an answer cites with ``[k]`` markers (1-based, as the prompt numbers them).

    Markers outside 1..``n_passages`` are ignored; an answer citing nothing valid gives ``[]``.
    """
    seen: list[int] = []
    for m in re.finditer(r"\[(\d{1,3})\]", answer):
        k = int(m.group(1)) - 1
        if 0 <= k < n_passages and k not in seen:
            seen.append(k)
    return seen


def split_claims(answer: str, min_words: int = 1) -> list[str]:
    """Sentences of ``answer`` with citation markers removed; empty and marker-only pieces dropped."""
    if not isinstance(answer, str):
        raise TypeError(f"answer must be str, got {type(answer).__name__}")
    text = _CITE.sub("", answer).strip()
    return [s.strip() for s in _SENT.split(text) if len(_WORD.findall(s)) >= min_words]


@dataclass(frozen=True)
class ClaimVerdict:
    claim: str
    verdict: str  # supported | unsupported | contradicted
    p_supported: float  # best over passages
    best_passage: int  # index into the passages of the best support (or overlap when none supports)
    evidence_span: str = ""  # the sentence of that passage nearest the claim (see evidence_span())


def _nearest_sentence(words: set[str], passage: str) -> str:
    """The sentence of ``passage`` sharing the most of ``words`` (ties: the earlier one)."""
    sents = [x.strip() for x in _SENT.split(passage.strip()) if x.strip()] or [passage.strip()]
    return max(sents, key=lambda x: (len(words & content_words(x)), -sents.index(x)))


def evidence_span(claim: str, passage: str, question: str = "") -> str:
    """The sentence of ``passage`` sharing the most content words with ``claim`` (and its question): where to look.

    The verdict comes from the scorer over the whole passage; the span only points a reader (or a
    fallback) at the sentence the claim stands on. Ties go to the earlier sentence.
    """
    return _nearest_sentence(content_words(claim) | (content_words(question) if question else set()), passage)


@dataclass(frozen=True)
class GateResult:
    answer: str
    claims: list[ClaimVerdict] = field(default_factory=list)
    abstained: bool = False

    @property
    def passed(self) -> bool:
        """Every claim supported (an abstention passes: it asserts nothing)."""
        return self.abstained or (bool(self.claims) and all(c.verdict == "supported" for c in self.claims))

    @property
    def verdict(self) -> str:
        """``abstained``, ``supported``, or the worst claim verdict (``contradicted`` before ``unsupported``)."""
        if self.abstained:
            return "abstained"
        kinds = {c.verdict for c in self.claims}
        return "contradicted" if "contradicted" in kinds else "unsupported" if "unsupported" in kinds else "supported"

    def best_support(self) -> int | None:
        """Passage index behind the claim with the highest P(supported) (where a fallback should look first)."""
        if not self.claims:
            return None
        best = max(self.claims, key=lambda c: c.p_supported)
        return best.best_passage


class FaithfulnessGate:
    """``check(question, answer, passages) -> GateResult``.

    Args:
        scorer: faithfulness specialist, ``predict_proba(evidences, claims, questions)`` in [0, 1].
        threshold: P(supported) at or above which a claim is supported (the scorer's own calibrated
            threshold when None).
        contradict_overlap: share of a claim's content words one passage must cover for an unsupported
            claim to count as contradicted.
        cited_only: when the answer cites passages with ``[k]`` markers, check its claims against the
            cited passages only (a claim is not "supported" by a passage the answer did not use); an
            answer citing nothing is checked against every passage.
    """

    def __init__(self, scorer, threshold: float | None = None, contradict_overlap: float = 0.5,
                 cited_only: bool = True) -> None:
        self.scorer = scorer
        self.cited_only = cited_only
        self.threshold = float(threshold if threshold is not None else getattr(scorer, "threshold", 0.5))
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        self.contradict_overlap = contradict_overlap

    def check(self, question: str, answer: str, passages: Sequence[str]) -> GateResult:
        passages = [p for p in passages]
        if not passages:
            raise ValueError("FaithfulnessGate.check: no passages; an answer cannot be checked against nothing")
        if is_abstention(answer):
            return GateResult(answer, [], abstained=True)
        claims = split_claims(answer)
        if not claims:
            return GateResult(answer, [])
        keep = cited_passages(answer, len(passages)) if self.cited_only else []
        if keep:
            result = self._check(question, answer, claims, [passages[k] for k in keep])
            # report passage indices in the caller's numbering
            return GateResult(answer, [c.__class__(c.claim, c.verdict, c.p_supported, keep[c.best_passage], c.evidence_span)
                                       for c in result.claims])
        return self._check(question, answer, claims, passages)

    def _check(self, question: str, answer: str, claims: list[str], passages: list[str]) -> GateResult:
        n = len(passages)
        ev = [p for _ in claims for p in passages]
        cl = [c for c in claims for _ in range(n)]
        p = self.scorer.predict_proba(ev, cl, [question] * len(ev)).reshape(len(claims), n)
        out = []
        passage_words: list[set[str]] | None = None  # computed once, and only if a claim fails
        for i, claim in enumerate(claims):
            j = int(p[i].argmax())
            if p[i, j] >= self.threshold:
                out.append(ClaimVerdict(claim, "supported", float(p[i, j]), j, evidence_span(claim, passages[j], question)))
                continue
            if passage_words is None:
                passage_words = [content_words(x) for x in passages]
            words = content_words(claim)
            cover = [len(words & pw) / max(1, len(words)) for pw in passage_words]
            k = int(max(range(n), key=lambda m: cover[m]))
            kind = "contradicted" if words and cover[k] >= self.contradict_overlap else "unsupported"
            out.append(ClaimVerdict(claim, kind, float(p[i, j]), k, evidence_span(claim, passages[k], question)))
        return GateResult(answer, out)


def extractive_answer(question: str, passage: str) -> str:
    """The passage sentence sharing the most content words with the question (ties: the earlier one)."""
    return _nearest_sentence(content_words(question), passage)


def apply_policy(policy: str, gate: FaithfulnessGate, question: str, passages: Sequence[str], result: GateResult,
                 regenerate: Callable[[Sequence[str]], str] | None = None) -> tuple[str, GateResult]:
    """What to return for a checked answer: (final answer, the gate result for it).

    ``none`` returns the answer as is; ``abstain`` returns :data:`ABSTAIN_TEXT`; ``extractive`` returns
    the sentence of the best-supporting passage nearest the question; ``regenerate`` calls
    ``regenerate(passages)`` with the best-supporting passage moved first and checks the new answer
    (falling back to abstaining if it fails again).
    """
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    if result.passed or policy == "none":
        return result.answer, result
    best = result.best_support() or 0
    if policy == "abstain":
        return ABSTAIN_TEXT, GateResult(ABSTAIN_TEXT, [], abstained=True)
    if policy == "extractive":
        text = extractive_answer(question, passages[best])
        return text, gate.check(question, text, passages)
    if regenerate is None:
        raise ValueError("policy 'regenerate' needs a regenerate(passages) -> answer callable")
    order = [passages[best]] + [p for i, p in enumerate(passages) if i != best]
    text = regenerate(order)
    again = gate.check(question, text, order)
    if again.passed:
        return text, again
    return ABSTAIN_TEXT, GateResult(ABSTAIN_TEXT, [], abstained=True)
