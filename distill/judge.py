"""LLM-judge baseline: relevance, faithfulness and intent asked of an LLM, with versioned prompts.

The baseline that the project's specialists replace (Single-LLM Overspend, V): one LLM, three
tasks, each a prompt template from a prompts file (the project's ``configs/judge_prompts.yaml``, read by
``registry.load_judge_prompts()`` or :func:`load_judge_prompts`; its ``version`` string travels with
every verdict). Any backend with ``generate(messages, max_new_tokens) -> Generation`` works: local
SmolLM2 (:class:`generate.TransformersBackend`) or any OpenAI-compatible server
(:class:`generate.OpenAICompatBackend`).

Parsing is strict and counted: the first word of the reply must be one of the template's answers
(``yes``/``no``), or for intents one of the given intent names (spaces and underscores equal); any
other reply is a verdict with ``label=None`` and ``parsed=False``, and :attr:`LLMJudge.n_unparseable`
counts it. Callers score unparseable replies as wrong, never drop them.

Leaves out: log-probability scoring of the answer tokens, few-shot examples, self-consistency.
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import NamedTuple, Sequence

__all__ = ["LLMJudge", "Verdict", "load_judge_prompts", "JUDGE_TASKS"]

JUDGE_TASKS = ("relevance", "faithfulness", "intent")


class Verdict(NamedTuple):
    label: int | str | None  # 1/0 for relevance and faithfulness, an intent name for intent; None if unparseable
    parsed: bool
    raw: str
    prompt_tokens: int
    completion_tokens: int
    wall_s: float
    cpu_s: float
    model: str
    prompt_version: str


def load_judge_prompts(path: Path | str) -> dict:
    """The prompts YAML at ``path``, checked: ValueError naming the file when ``version`` or a task's template is missing."""
    import yaml

    path = Path(path)
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or not raw.get("version") or not isinstance(raw.get("tasks"), dict):
        raise ValueError(f"{path}: needs a 'version' string and a 'tasks' mapping")
    for t in JUDGE_TASKS:
        if t not in raw["tasks"] or "user" not in raw["tasks"][t]:
            raise ValueError(f"{path}: tasks.{t}.user (the prompt template) is missing")
    return raw


def _norm(s: str) -> str:
    return re.sub(r"[\W_]+", " ", s.lower()).strip()


class LLMJudge:
    """``judge(task, **fields) -> Verdict``; counts ``n_calls`` and ``n_unparseable`` per task.

    Args:
        backend: an LLM backend (``generate(messages, max_new_tokens)``).
        prompts: the dict of :func:`load_judge_prompts` (the project's: ``registry.load_judge_prompts()``).
        ledger: optional :class:`distill.ledger.Ledger`; every call is recorded there with its task.
        ledger_kwargs: passed to ``Ledger.record`` (e.g. ``pricing="tokens", priced_as="gpt-4o-mini"``).
    """

    def __init__(self, backend, prompts: dict, ledger=None, **ledger_kwargs) -> None:
        self.backend = backend
        self.prompts = prompts
        self.version = str(self.prompts["version"])
        self.ledger, self.ledger_kwargs = ledger, ledger_kwargs
        self.n_calls = {t: 0 for t in JUDGE_TASKS}
        self.n_unparseable = {t: 0 for t in JUDGE_TASKS}

    def messages(self, task: str, **fields) -> list[dict]:
        if task not in JUDGE_TASKS:
            raise ValueError(f"task must be one of {JUDGE_TASKS}, got {task!r}")
        t = self.prompts["tasks"][task]
        try:
            user = t["user"].format(**fields)
        except KeyError as exc:
            raise ValueError(f"judge task {task!r} needs the field {exc.args[0]!r}") from None
        return ([{"role": "system", "content": t["system"]}] if t.get("system") else []) + [{"role": "user", "content": user}]

    def parse(self, task: str, text: str, intents: Sequence[str] = ()) -> int | str | None:
        """The label in ``text``, or None when it is not an accepted answer."""
        if task == "intent":
            by_norm = {_norm(i): i for i in intents}
            first = _norm(text.splitlines()[0]) if text.strip() else ""
            if first in by_norm:
                return by_norm[first]
            words = first.split()
            for n in range(min(len(words), 6), 0, -1):  # longest leading span that names an intent
                if " ".join(words[:n]) in by_norm:
                    return by_norm[" ".join(words[:n])]
            return None
        answers = {str(k).lower(): v for k, v in self.prompts["tasks"][task]["answers"].items()}
        m = re.match(r"\W*([A-Za-z]+)", text)
        return answers.get(m.group(1).lower()) if m else None

    def judge(self, task: str, intents: Sequence[str] = (), **fields) -> Verdict:
        if task == "intent":
            if not intents:
                raise ValueError("judge('intent', ...) needs the list of intent names (intents=...)")
            fields["intents"] = ", ".join(intents)
        msgs = self.messages(task, **fields)
        c0 = time.process_time()
        g = self.backend.generate(msgs, max_new_tokens=int(self.prompts["tasks"][task].get("max_new_tokens", 8)))
        cpu_s = time.process_time() - c0  # in-process backends only; ~0 for an HTTP backend
        label = self.parse(task, g.text, intents)
        self.n_calls[task] += 1
        if label is None:
            self.n_unparseable[task] += 1
        if self.ledger is not None:
            self.ledger.record(task, g.model, kind="llm", tokens_in=g.prompt_tokens, tokens_out=g.completion_tokens,
                               wall_s=g.prefill_s + g.decode_s, cpu_s=cpu_s, meta={"prompt_version": self.version, "parsed": label is not None},
                               **self.ledger_kwargs)
        return Verdict(label, label is not None, g.text, g.prompt_tokens, g.completion_tokens, g.prefill_s + g.decode_s,
                       cpu_s, g.model, self.version)
