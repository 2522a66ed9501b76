"""Pair builder, hard-case file, cited-passage gate and cascade of the cross-encoder faithfulness model (issue 22)."""
from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bench.benchmarks.faithfulness_ce import CASE_KINDS, HARD_CASES, load_hard_cases
from bench.benchmarks.faithfulness_pipeline import _bootstrap_diff, load_answers
from cascade.faithfulness import FaithfulnessCascade, LabelledClaim
from data.faithfulness_ce import (_bin, build_ce_pairs, check_no_heldout, hard_cases, length_matched, select_evidence,
                                  swap_name, task_split)
from generate.gate import FaithfulnessGate, cited_passages
from rerank.train import TrainPair

ROOT = Path(__file__).resolve().parents[2]


def _item(n_words: int, label: int) -> LabelledClaim:
    return LabelledClaim("evidence text", " ".join(["w"] * n_words), label, n_words, "q?")


def test_task_split_is_disjoint_seeded_and_sized():
    train, held = task_split("dialogue", 10000)
    assert len(held) == 2000 and len(train) == 8000
    assert not set(train) & set(held)
    assert task_split("dialogue", 10000) == (train, held)
    with pytest.raises(ValueError, match="task must be one of"):
        task_split("poetry", 100)


def test_length_matched_balances_every_stratum():
    items = [_item(1, 1)] * 30 + [_item(1, 0)] * 5 + [_item(12, 0)] * 40 + [_item(12, 1)] * 7 + [_item(3, 1)] * 9
    out = length_matched(items, seed=1)
    per = Counter((_bin(c.n_words), c.label) for c in out)
    assert per[(1, 1)] == per[(1, 0)] == 5
    assert per[(_bin(12), 0)] == per[(_bin(12), 1)] == 7
    assert per[(3, 1)] == 0  # no unsupported claim of that length: the stratum is dropped
    cut = length_matched(items, seed=1, max_items=6)
    assert len(cut) == 6 and sum(c.label for c in cut) == 3


def test_swap_name_takes_a_different_name_or_number_from_the_evidence():
    rng = random.Random(0)
    ev = "Jane Eyre was written by Charlotte Bronte in 1847. Pride and Prejudice was written by Jane Austen in 1813."
    out = swap_name("Pride and Prejudice was written by Jane Austen in 1813.", ev, rng)
    assert out is not None and out != "Pride and Prejudice was written by Jane Austen in 1813."
    assert len(out.split()) >= 8
    assert swap_name("it was raining", ev, rng) is None


def test_hard_cases_keep_length_and_label_the_moved_answer_unsupported():
    rows = [{"knowledge": "The Oberoi Group is a hotel company with its head office in Delhi. It was founded by Mohan Singh Oberoi.",
             "question": "Where is the head office of the Oberoi Group?", "right_answer": "Delhi",
             "hallucinated_answer": "The head office of the Oberoi Group is in Mumbai."},
            {"knowledge": "Berlin is the capital of Germany. The Reichstag building houses the Bundestag.",
             "question": "What is the capital of Germany?", "right_answer": "Berlin",
             "hallucinated_answer": "The capital of Germany is Munich."}]
    tagged = hard_cases("qa", rows, [0, 1], seed=3)
    assert {i for i, _ in tagged} == {0, 1}
    cases = [c for _, c in tagged]
    kinds = {(c.label, c.claim in rows[0]["knowledge"] or c.claim in rows[1]["knowledge"]) for c in cases}
    assert (1, True) in kinds  # a restated evidence sentence: long and supported
    moved = [(i, c) for i, c in tagged if c.label == 0 and c.claim in ("Delhi", "Berlin")]
    assert moved and all(c.claim in c.evidence for _, c in moved)  # the answer string sits in a distractor passage
    assert all(c.evidence != rows[i]["knowledge"] and rows[1 - i]["knowledge"] != c.evidence for i, c in moved)
    assert all(c.label == 0 for c in cases if c.claim not in (rows[0]["knowledge"] + rows[1]["knowledge"]) and c.claim not in ("Delhi", "Berlin"))


def test_build_ce_pairs_never_touches_heldout_rows():
    pairs = build_ce_pairs(("qa",), rows_per_task=40, hard_share=0.5, seed=5)
    _, held = task_split("qa", 10000)
    rows = {int(p.qid.split(":")[1]) for p in pairs}
    assert rows and not rows & set(held)
    src = Counter(p.source for p in pairs)
    assert src["halueval-qa"] > 0 and src["hard-qa"] > 0
    core = [p for p in pairs if p.source == "halueval-qa"]
    assert sum(p.label for p in core) * 2 == len(core)  # length-matched core: as many supported as not


def test_check_no_heldout_refuses_a_heldout_row():
    _, held = task_split("summarization", 10000)
    bad = [TrainPair("doc", "summary", 1.0, "halueval-summarization", f"summarization:{held[0]}")]
    with pytest.raises(ValueError, match="held-out HaluEval summarization rows"):
        check_no_heldout(bad, "summarization", 10000)


def test_select_evidence_keeps_the_sentences_nearest_the_claim():
    doc = " ".join(f"Filler sentence number {i} about nothing." for i in range(60)) + " The bridge opened in 1932 in Sydney."
    out = select_evidence(doc, "The Sydney bridge opened in 1932.", max_words=30)
    assert "1932" in out and len(out.split()) <= 30
    assert select_evidence("short text.", "x") == "short text."


def test_hard_case_file_format_and_coverage():
    cases = load_hard_cases()
    assert len(cases) >= 50
    kinds = Counter(c["kind"] for c in cases)
    assert set(kinds) == set(CASE_KINDS) and min(kinds.values()) >= 9
    assert {c["label"] for c in cases} == {"supported", "unsupported"}
    for c in cases:
        if c["kind"] == "distractor":  # the wrong answer is in some passage, so overlap cannot reject it
            assert any(c["answer"].rstrip(".").split()[-1].lower() in p.lower() for p in c["passages"]) or len(c["passages"]) > 1


def test_hard_case_loader_names_the_bad_line(tmp_path):
    good = HARD_CASES.read_text().splitlines()[0]
    bad = json.loads(good)
    bad["kind"] = "vibes"
    f = tmp_path / "cases.jsonl"
    f.write_text(good + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(ValueError, match=r"cases.jsonl:2: kind 'vibes'"):
        load_hard_cases(f)
    f.write_text("{not json\n")
    with pytest.raises(ValueError, match="cases.jsonl:1: not valid JSON"):
        load_hard_cases(f)


def test_cited_passages_parses_markers_in_range():
    assert cited_passages("Austen wrote it [2]. Also [1] and [2] and [9].", 3) == [1, 0]
    assert cited_passages("no citation", 3) == []


def test_gate_checks_claims_against_the_cited_passage_only():
    from registry import load_faithfulness

    scorer = load_faithfulness("faithfulness")  # the lexical model: fast, real
    austen = "Pride and Prejudice is an 1813 novel of manners written by Jane Austen."
    bronte = "Jane Eyre is a novel by Charlotte Bronte, published in 1847."
    answer = "Jane Eyre is a novel by Charlotte Bronte [1]."
    assert not FaithfulnessGate(scorer).check("Who wrote Jane Eyre?", answer, [austen, bronte]).passed
    assert FaithfulnessGate(scorer, cited_only=False).check("Who wrote Jane Eyre?", answer, [austen, bronte]).passed
    res = FaithfulnessGate(scorer).check("Who wrote Jane Eyre?", "Jane Eyre is a novel by Charlotte Bronte [2].", [austen, bronte])
    assert res.passed and res.claims[0].best_passage == 1


class _Constant:
    """A second-stage scorer that returns one value (stands in for the cross-encoder; the cascade is under test)."""

    threshold = 0.5

    def __init__(self, value: float) -> None:
        self.value, self.calls = value, 0

    def predict_proba(self, evidences, claims, questions=None):
        self.calls += len(claims)
        return np.full(len(claims), self.value, dtype=np.float32)


def test_cascade_sends_only_the_uncertain_band_to_the_slow_scorer():
    fast = _Constant(0.0)
    fast.predict_proba = lambda e, c, q=None: np.array([0.01, 0.5, 0.99], dtype=np.float32)
    slow = _Constant(0.7)
    casc = FaithfulnessCascade(fast, slow, low=0.1, high=0.9)
    p = casc.predict_proba(["e"] * 3, ["a", "b", "c"])
    assert np.allclose(p, [0.01, 0.7, 0.99]) and slow.calls == 1
    assert (casc.n_fast_, casc.n_slow_) == (2, 1)
    with pytest.raises(ValueError, match="low < high"):
        FaithfulnessCascade(fast, slow, low=0.9, high=0.1)


def test_answers_cache_bad_line_and_bootstrap(tmp_path):
    f = tmp_path / "answers.jsonl"
    f.write_text('{"question": "q"}\n')
    with pytest.raises(ValueError, match="answers.jsonl:1: expected an object"):
        load_answers(f)
    correct = np.array([1, 1, 1, 1, 0, 0, 0, 0, 1, 0] * 5, dtype=bool)
    passed = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0] * 5, dtype=bool)
    lo, hi = _bootstrap_diff(correct, passed)
    assert 0 < lo < 0.6 < hi <= 1


def test_train_cli_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
    from bench.cli.train_faithfulness_ce import main

    out = tmp_path / "run"
    for argv in (["--out", str(out), "--tasks", "qa,poetry"], ["--out", str(out), "--time-budget", "-3"],
                 ["--out", str(out), "--init", str(tmp_path / "nope")]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    assert not out.exists()
    assert "Traceback" not in capsys.readouterr().err


def test_bench_faithfulness_parser_takes_nq_limit_zero_and_refuses_a_bad_band(capsys):
    import argparse

    from bench.benchmarks.bench_faithfulness import add_parser

    root = argparse.ArgumentParser(prog="ragfix bench")
    add_parser(root.add_subparsers())
    args = root.parse_args(["faithfulness", "--nq-limit", "0", "--cascade", "0.05,0.95"])
    assert args.nq_limit == 0 and args.cascade == (0.05, 0.95)
    with pytest.raises(SystemExit) as exc:
        root.parse_args(["faithfulness", "--cascade", "0.9,0.1"])
    assert exc.value.code == 2 and "LOW < HIGH" in capsys.readouterr().err


def test_build_ce_pairs_per_task_rows_and_hard_cap():
    pairs = build_ce_pairs(("qa", "dialogue"), rows_per_task={"qa": 60, "dialogue": 30}, hard_share=1.0, seed=3,
                           hard_cap=0.5)
    src = Counter(p.source for p in pairs)
    assert src["hard-qa"] <= 0.5 * src["halueval-qa"] and src["hard-dialogue"] <= 0.5 * src["halueval-dialogue"]
    assert len({p.qid for p in pairs if p.qid.startswith("dialogue:")}) <= 30


class _Rot:
    def __init__(self, question, answers, gold, distractors):
        self.question, self.answers, self.gold, self.distractors = question, answers, gold, distractors


def test_nq_claim_pairs_skip_the_pipeline_questions_and_balance_labels():
    from data.faithfulness_ce import NQ_HELDOUT, nq_claim_pairs

    gold = ("Pride and Prejudice\nPride and Prejudice is an 1813 novel of manners written by Jane Austen. "
            "It follows Elizabeth Bennet and Fitzwilliam Darcy in Hertfordshire.")
    dist = "Jane Eyre\nJane Eyre is a novel by the English writer Charlotte Bronte, published in 1847 in London."
    items = [_Rot("who wrote pride and prejudice", ["Jane Austen"], gold, [dist])] * (NQ_HELDOUT + 3)
    pairs = nq_claim_pairs(items, seed=1)
    assert pairs and all(int(p.qid.split(":")[1]) >= NQ_HELDOUT for p in pairs)  # the pipeline's questions never
    assert sum(p.label for p in pairs) * 2 == len(pairs)
    assert len({p.qid for p in pairs}) == 3
    for p in pairs:
        if p.label == 1:
            assert "Jane Austen" in p.query and "Jane Austen" in p.passage
        elif p.source == "nq-distractor":
            assert p.query == dist and "Jane Austen" not in p.passage
        elif p.source == "nq-moved":  # the right answer written into the distractor: present, yet unsupported
            assert "Jane Austen" in p.query and p.query != dist and "published in 1847" in p.query
    assert nq_claim_pairs(items[:NQ_HELDOUT]) == []


def test_gate_verdicts_carry_the_evidence_span():
    from generate.gate import evidence_span
    from registry import load_faithfulness

    passage = "Paris is large. The Eiffel Tower was completed in 1889 in Paris. It is made of iron."
    assert evidence_span("The Eiffel Tower was finished in 1889.", passage) == "The Eiffel Tower was completed in 1889 in Paris."
    res = FaithfulnessGate(load_faithfulness("faithfulness")).check("When was the Eiffel Tower completed?",
                                                                   "It was completed in 1889.", [passage])
    assert res.claims[0].evidence_span == "The Eiffel Tower was completed in 1889 in Paris."


def test_train_cli_new_options_refuse_bad_values(tmp_path, capsys):
    from bench.cli.train_faithfulness_ce import main

    out = tmp_path / "run"
    for argv in (["--out", str(out), "--tasks", "none"], ["--out", str(out), "--nq-rows", "-1"],
                 ["--out", str(out), "--replay-n", "5"], ["--out", str(out), "--target-precision", "1.5"],
                 ["--out", str(out), "--bf16", "maybe"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    assert not out.exists()
    assert "Traceback" not in capsys.readouterr().err


def test_nq_answer_groups_one_answer_and_other_names_of_the_same_passage():
    from data.faithfulness_ce import NQ_HELDOUT, nq_answer_groups

    gold = ("Pride and Prejudice\nPride and Prejudice is an 1813 novel of manners written by Jane Austen. "
            "It follows Elizabeth Bennet and Fitzwilliam Darcy in Hertfordshire.")
    items = [_Rot("who wrote pride and prejudice", ["Jane Austen"], gold, [])] * (NQ_HELDOUT + 2)
    pairs = nq_answer_groups(items, n_candidates=4, seed=2)
    groups = {}
    for p in pairs:
        groups.setdefault(p.qid, []).append(p)
    assert len(groups) == 2 and all(int(q.split(":")[1]) >= NQ_HELDOUT for q in groups)
    for g in groups.values():
        assert [p.label for p in g].count(1.0) == 1 and 2 <= len(g) <= 4
        assert all(p.query == gold for p in g)
        wrong = [p.passage.split("? ", 1)[1] for p in g if p.label == 0]
        assert all(w in gold and w != "Jane Austen" for w in wrong)


def test_fact_grounding_counts_names_and_numbers_found_in_the_evidence():
    from data.faithfulness_ce import fact_grounding

    ev = "The Rules of Attraction is starring Swoosie KurtzSwoosie Kurtz starred in it. K2 is 8,611 metres high."
    assert fact_grounding(ev, "Swoosie Kurtz is in it") == (1, 1)
    assert fact_grounding(ev, "the peak Swoosie Kurtz named is 8611 metres high") == (2, 2)  # separator dropped
    assert fact_grounding(ev, "the peak is 8,849 metres high") == (0, 1)  # a number the evidence does not state
    assert fact_grounding(ev, "Yep. As well as Ben Schwartz") == (0, 1)  # "Yep" opens a sentence: not a fact
    assert fact_grounding(ev, "that sounds good to me") == (0, 0)


def test_label_grounding_tells_grounded_labels_from_ungrounded_ones(monkeypatch):
    import data.faithfulness_ce as D
    from bench.benchmarks import faithfulness_ce as B

    ev = "Jane Austen wrote Pride and Prejudice in 1813."
    grounded = [LabelledClaim(ev, "Jane Austen, 1813", 1, 3, "q?"), LabelledClaim(ev, "Charlotte Bronte", 0, 2, "q?")]
    ungrounded = [LabelledClaim(ev, "Emily Bronte", 1, 2, "q?"), LabelledClaim(ev, "Jane Austen in 1813", 0, 4, "q?")]
    monkeypatch.setattr(D, "heldout_eval", lambda task, n, seed, max_evidence_words=150: grounded * 5 if task == "qa" else ungrounded * 5)
    out = B.label_grounding(("qa", "dialogue"), n_items=10)
    assert out["qa"]["grounded_right"] == 1.0 and out["qa"]["grounded_hallucinated"] == 0.0
    assert out["qa"]["rule_balanced_accuracy"] == 1.0
    assert out["dialogue"]["grounded_right"] == 0.0 and out["dialogue"]["rule_balanced_accuracy"] == 0.0
