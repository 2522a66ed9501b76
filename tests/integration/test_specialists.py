"""Specialists on real models and real data: the committed intent model, the SmolLM2 judge, the bench wiring."""
import numpy as np
import pytest

pytestmark = pytest.mark.integration


def test_committed_intent_model_beats_target_on_clinc_sample():
    from data.clinc import load_clinc150
    from registry import load_intent_model

    m = load_intent_model("models/intent-clinc150")
    data = load_clinc150()
    tx, ty = data.split("test")
    ox, oy = data.split("oos_test")
    rng = np.random.default_rng(0)
    i = rng.choice(len(tx), 300, replace=False)
    o = rng.choice(len(ox), 100, replace=False)
    pred_in = m.predict([tx[k] for k in i])
    pred_oos = m.predict([ox[k] for k in o])
    assert np.mean(pred_in == np.array([ty[k] for k in i])) >= 0.87  # full test set: 0.913 (model card)
    assert np.mean(pred_oos == "oos") >= 0.75  # full test set: 0.854


def test_smollm2_judge_counts_every_reply(tmp_path):
    from registry import load_judge_prompts, load_llm, load_prices
    from distill.judge import LLMJudge
    from distill.ledger import Ledger

    with Ledger(tmp_path / "l.sqlite", load_prices()) as led:
        judge = LLMJudge(load_llm("smollm2"), load_judge_prompts(), ledger=led, pricing="tokens", priced_as="gpt-4o-mini")
        v1 = judge.judge("faithfulness", evidence="The Eiffel Tower is in Paris.", claim="The Eiffel Tower is in Paris.")
        v2 = judge.judge("relevance", query="capital of France", passage="Paris is the capital of France.")
        assert judge.n_calls["faithfulness"] == judge.n_calls["relevance"] == 1
        assert sum(judge.n_unparseable.values()) == sum(not v.parsed for v in (v1, v2))
        rows = led.rows()
        assert [r["task"] for r in rows] == ["faithfulness", "relevance"]
        assert all(r["tokens_in"] > 20 and r["cost_usd"] > 0 and r["cpu_s"] > 0 for r in rows)


def test_registered_faithfulness_specialist_meets_the_bar_on_held_out_length_matched_qa():
    """Issue 3's bar: balanced accuracy >= 0.80 and >= 0.10 above the length-only baseline."""
    import cascade.faithfulness as F
    import data.faithfulness as FD
    from registry import load_faithfulness

    s = load_faithfulness("faithfulness")
    rows = FD.load_halueval("qa")
    train_idx, held = F.halueval_qa_split(len(rows), s.meta["recipe"]["heldout"])
    items = F.length_matched_eval(rows, held)
    y = np.array([c.label for c in items])
    p = s.predict_proba([c.evidence for c in items], [c.claim for c in items], [c.question for c in items])
    fit = F.unmatched_eval(rows, train_idx)
    base = F.LengthBaseline().fit([c.n_words for c in fit], [c.label for c in fit]).predict_proba([c.n_words for c in items])
    acc, acc_base = F.balanced_accuracy(y, p >= 0.5), F.balanced_accuracy(y, base >= 0.5)
    assert acc >= 0.80 and acc >= acc_base + 0.10, (acc, acc_base)
    assert s.n_scored_ == len(items)


def test_relevance_cost_is_measured_on_the_serving_engine_and_keeps_fp32_ranking(tmp_path):
    """The cost row prices the engine the pipeline serves with, one ledger row per pair, and that
    engine must rank like fp32 (a cheaper backend may not buy its price with another ranking)."""
    from bench.benchmarks.bench_specialists import bench_relevance
    from rerank.backends import resolve_backend
    from distill.ledger import Ledger
    from registry import load_prices

    with Ledger(tmp_path / "l.sqlite", load_prices()) as led:
        m = bench_relevance(led, None, "reranker-l6", limit=2, judge_limit=0, seed=0, backend="auto", cost_depth=40)
        rows = led.rows()
    eng = m["cost_engine"]
    assert eng["backend"] == resolve_backend("auto") and eng["queries"] == 5 and eng["pairs"] == 200
    assert len(rows) == 200 and {r["kind"] for r in rows} == {"specialist"} and all(r["cpu_s"] > 0 for r in rows)
    assert eng["top10_overlap_vs_fp32"] >= 0.9
