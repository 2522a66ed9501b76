"""Faithfulness gate: claims, verdicts, policies (failure mode II), with the project's lexical specialist."""
import pytest

from registry import load_faithfulness
from generate.gate import ABSTAIN_TEXT, FaithfulnessGate, apply_policy, extractive_answer, is_abstention, split_claims

P = ["Marie Curie was born in Warsaw in 1867. She moved to Paris in 1891.",
     "The Eiffel Tower was completed in 1889 for the World's Fair."]
Q = "Where was Marie Curie born?"


@pytest.fixture(scope="module")
def gate():
    return FaithfulnessGate(load_faithfulness("faithfulness"))


def test_split_claims_and_abstention():
    assert split_claims("Warsaw [1]. She moved to Paris in 1891 [1].") == ["Warsaw.", "She moved to Paris in 1891."]
    assert split_claims("[1]") == []
    assert is_abstention("I don't know based on these passages.") and not is_abstention("Warsaw")
    with pytest.raises(TypeError):
        split_claims(None)


def test_verdicts(gate):
    ok = gate.check(Q, "Warsaw [1].", P)
    assert ok.passed and ok.verdict == "supported" and ok.claims[0].best_passage == 0
    bad = gate.check(Q, "Marie Curie was born in Krakow in 1869.", P)
    assert not bad.passed and bad.verdict == "contradicted"
    off = gate.check(Q, "Bananas grow on Jupiter moons.", P)
    assert off.verdict == "unsupported"
    assert gate.check(Q, "I don't know.", P).verdict == "abstained"
    with pytest.raises(ValueError, match="no passages"):
        gate.check(Q, "Warsaw", [])


def test_policies(gate):
    bad = gate.check(Q, "Marie Curie was born in Krakow in 1869.", P)
    assert apply_policy("none", gate, Q, P, bad)[0] == bad.answer
    assert apply_policy("abstain", gate, Q, P, bad)[0] == ABSTAIN_TEXT
    text, res = apply_policy("extractive", gate, Q, P, bad)
    assert text == extractive_answer(Q, P[0]) == "Marie Curie was born in Warsaw in 1867." and res.passed
    seen = []
    text, res = apply_policy("regenerate", gate, Q, P, bad, regenerate=lambda ps: seen.append(ps) or "Warsaw [1].")
    assert res.passed and text == "Warsaw [1]." and seen[0][0] == P[0]
    text, res = apply_policy("regenerate", gate, Q, P, bad, regenerate=lambda ps: "Krakow, in 1869.")
    assert text == ABSTAIN_TEXT
    with pytest.raises(ValueError, match="policy must be one of"):
        apply_policy("retry", gate, Q, P, bad)
