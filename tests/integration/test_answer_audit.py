"""``diagnose answers`` on a planted log of real NQ-open rows recovers each category's count exactly (II)."""
import json
import random

import pytest

from data import data_root, read_jsonl
from generate.audit import LogFormatError, audit_answers, has_answer, read_answer_log


def _nq(n):
    rows = []
    for _, obj in read_jsonl(data_root() / "lost_in_the_middle" / "nq-open-oracle.jsonl.gz"):
        gold = next((c for c in obj["ctxs"] if c.get("isgold")), None)
        if gold and any(has_answer(gold["text"], [a]) for a in obj["answers"]):
            rows.append((obj["question"], obj["answers"], gold["text"]))
        if len(rows) >= n:
            break
    return rows


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """15 ok, 10 retrieval misses, 12 unfaithful answers over a passage that bears the answer, 3 abstentions."""
    nq = _nq(80)
    rng = random.Random(0)
    lines, expect = [], {"ok": 0, "retrieval_miss": 0, "generation_failure": 0, "abstained": 0}
    for i, (q, answers, gold) in enumerate(nq[:40]):
        others = [g for j, (_, a, g) in enumerate(nq) if j != i and not has_answer(g, answers)]
        distractors = rng.sample(others, 2)
        answer = next(a for a in answers if has_answer(gold, [a]))
        # a fabricated answer: another question's answer that no passage here contains
        fake = next(a for _, al, _ in nq[40:] for a in al
                    if not any(has_answer(p, [a]) for p in [gold] + distractors) and not has_answer(a, answers))
        if i < 15:
            row, cat = {"passages": [distractors[0], gold, distractors[1]], "answer": f"{answer} [2]"}, "ok"
        elif i < 25:
            row, cat = {"passages": distractors, "answer": fake}, "retrieval_miss"
        elif i < 37:
            row, cat = {"passages": [gold] + distractors, "answer": f"The answer is {fake}."}, "generation_failure"
        else:
            row, cat = {"passages": [gold] + distractors, "answer": "I don't know."}, "abstained"
        expect[cat] += 1
        lines.append(json.dumps({"query": q, "reference_answers": answers, **row}))
    path = tmp_path_factory.mktemp("audit") / "log.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path, expect


def test_planted_log_counts_recovered_exactly(planted):
    from registry import load_faithfulness
    from generate.gate import FaithfulnessGate

    path, expect = planted
    report = audit_answers(list(read_answer_log(path)), FaithfulnessGate(load_faithfulness("faithfulness")))
    assert report.n == 40 and report.with_references == 40
    assert {k: v for k, v in report.counts.items() if v} == {k: v for k, v in expect.items() if v}


def test_malformed_rows_name_their_line_and_skip_only_on_request(planted, tmp_path):
    path, _ = planted
    good = path.read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([good[0], "{not json", json.dumps({"query": "q", "answer": "a"}), good[1]]) + "\n")
    with pytest.raises(LogFormatError, match="bad.jsonl:2: not valid JSON.*--skip-malformed"):
        list(read_answer_log(bad))
    errors: list[str] = []
    rows = list(read_answer_log(bad, skip_malformed=True, errors=errors))
    assert [r.line for r in rows] == [1, 4]
    assert len(errors) == 2 and "line 3: missing field 'passages'" in errors[1]
    with pytest.raises(FileNotFoundError, match="answer log"):
        list(read_answer_log(tmp_path / "missing.jsonl"))


def test_cli_prints_counts_and_writes_json(planted, tmp_path, capsys):
    from bench.cli import main

    path, expect = planted
    out = tmp_path / "audit.json"
    assert main(["diagnose", "answers", "--log", str(path), "--out", str(out)]) == 0
    got = json.loads(out.read_text())
    assert got["counts"]["retrieval_miss"] == expect["retrieval_miss"]
    assert "generation_failure" in capsys.readouterr().out
