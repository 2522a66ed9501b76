"""LLM judge: versioned templates, strict parsing, unparseable replies counted."""
import pytest

from distill.judge import LLMJudge, load_judge_prompts
from generate.backends import Generation
from registry import load_judge_prompts as project_prompts


class _Scripted:
    """A backend that replays fixed replies (the judge's parsing is under test, not an LLM)."""

    name = "scripted"

    def __init__(self, replies):
        self.replies = list(replies)

    def generate(self, messages, max_new_tokens=64):
        return Generation(self.replies.pop(0), 10, 1, 0.01, 0.0, self.name)


def test_prompts_versioned_and_complete():
    p = project_prompts()
    assert p["version"] == "judge-v1"
    j = LLMJudge(_Scripted([]), prompts=p)
    msgs = j.messages("faithfulness", evidence="E", claim="C")
    assert msgs[-1]["content"].startswith("Evidence: E") and "Claim: C" in msgs[-1]["content"]
    with pytest.raises(ValueError, match="needs the field 'claim'"):
        j.messages("faithfulness", evidence="E")
    with pytest.raises(ValueError, match="task must be one of"):
        j.messages("summarise")


def test_parsing_and_counting():
    j = LLMJudge(_Scripted(["Yes.", "no, because", "Maybe", "book_flight", "Book flight please", "weather?", "OOS"]), project_prompts())
    assert j.judge("relevance", query="q", passage="p").label == 1
    assert j.judge("relevance", query="q", passage="p").label == 0
    v = j.judge("faithfulness", evidence="e", claim="c")
    assert v.label is None and not v.parsed and v.raw == "Maybe"
    intents = ["book_flight", "weather", "oos"]
    assert j.judge("intent", intents=intents, text="t").label == "book_flight"
    assert j.judge("intent", intents=intents, text="t").label == "book_flight"
    assert j.judge("intent", intents=intents, text="t").label == "weather"
    assert j.judge("intent", intents=intents, text="t").label == "oos"
    assert j.n_unparseable == {"relevance": 0, "faithfulness": 1, "intent": 0}
    assert j.n_calls["intent"] == 4
    with pytest.raises(ValueError, match="list of intent names"):
        j.judge("intent", text="t")


def test_prompts_come_from_the_caller_and_are_checked(tmp_path):
    """distill reads no config by itself: prompts are required, and a file missing a task's template is refused by name."""
    with pytest.raises(TypeError, match="prompts"):
        LLMJudge(_Scripted([]))  # noqa: the missing argument is the point
    bad = tmp_path / "p.yaml"
    bad.write_text("version: v0\ntasks:\n  relevance: {user: 'q {query}'}\n")
    with pytest.raises(ValueError, match=r"p\.yaml: tasks\.faithfulness\.user"):
        load_judge_prompts(bad)
