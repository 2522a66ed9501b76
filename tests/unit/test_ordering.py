"""Context ordering chooses correctly from a curve, packs within budget, refuses stale orders (VII)."""
import pytest

from generate.ordering import OrderStore, StaleOrderError, choose_order, order_positions, pack, reorder


def test_orders_place_the_best_passage_where_they_say():
    items = ["p0", "p1", "p2", "p3", "p4"]  # best first
    assert reorder(items, "rank") == items
    assert reorder(items, "reverse") == ["p4", "p3", "p2", "p1", "p0"]
    assert reorder(items, "edges") == ["p0", "p2", "p4", "p3", "p1"]  # the 2 best at both ends, worst mid
    assert reorder(items, "curve", curve=[0.1, 0.2, 0.3, 0.4, 0.9]) == ["p4", "p3", "p2", "p1", "p0"]
    assert sorted(order_positions("edges", 7)) == list(range(7))
    with pytest.raises(ValueError, match="order must be one of"):
        reorder(items, "random")
    with pytest.raises(ValueError, match="needs the model's measured"):
        reorder(items, "curve")


@pytest.mark.parametrize("curve,expected", [
    ([0.8, 0.6, 0.5, 0.45, 0.45, 0.5, 0.55, 0.6, 0.65, 0.75], "edges"),   # U-shaped (lost in the middle)
    ([0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 0.8, 0.9], "reverse"),  # recency
    ([0.9, 0.8, 0.7, 0.6, 0.55, 0.5, 0.45, 0.4, 0.35, 0.3], "rank"),     # primacy
    ([0.5] * 10, "rank"),                                                # flat: no reorder without evidence
])
def test_choose_order_follows_the_curve(curve, expected):
    assert choose_order(curve)[0] == expected


def test_pack_drops_near_duplicates_and_respects_budget():
    texts = ["alpha beta gamma delta epsilon zeta", "alpha beta gamma delta epsilon zeta eta",
             "one two three four five six seven eight nine ten", "short text here"]
    kept, info = pack(texts, budget_tokens=10, count_tokens=lambda t: len(t.split()))
    assert kept == [0, 3] and info == {"duplicates": 1, "over_budget": 1, "tokens": 9}
    with pytest.raises(ValueError):
        pack(texts, 0, len)


def test_order_store_refuses_another_models_order(tmp_path):
    store = OrderStore(tmp_path / "orders.json")
    assert store.get("smollm2", "abc") == ("rank", None)
    store.put("smollm2", "abc", "edges", [0.5, 0.4, 0.6], "test")
    assert store.get("smollm2", "abc") == ("edges", [0.5, 0.4, 0.6])
    with pytest.raises(StaleOrderError, match="re-run `ragfix diagnose context-rot"):
        store.get("smollm2", "other")
    (tmp_path / "orders.json").write_text("{broken")
    with pytest.raises(ValueError, match="not valid JSON"):
        store.get("smollm2", "abc")


def test_measured_order_reads_the_store_by_fingerprint_and_refuses_other_weights(tmp_path):
    import types

    import torch

    from bench.benchmarks.bench_context import _fingerprint, measured_order

    llm = types.SimpleNamespace(name="tiny", model=torch.nn.Linear(4, 2))
    path = tmp_path / "orders.json"
    assert measured_order("tiny", llm, path) == ("rank", None)
    OrderStore(path).put("tiny", _fingerprint(llm), "edges", [1.0, 0.5, 0.9], "test")
    assert measured_order("tiny", llm, path) == ("edges", [1.0, 0.5, 0.9])
    with torch.no_grad():
        llm.model.weight.add_(1.0)  # other weights: the stored order no longer applies
    with pytest.raises(StaleOrderError, match="diagnose context-rot"):
        measured_order("tiny", llm, path)


def test_rank_weights_from_the_retriever_change_the_choice():
    from generate.ordering import rank_distribution

    # U-shaped curve, last slot best: with the relevant passage nearly always ranked first, reverse puts it
    # at the best slot; the default decay prior spreads weight and prefers edges
    import numpy as np

    curve = np.interp(range(10), [0, 2, 4, 7, 9], [-18.37, -18.90, -19.11, -19.00, -18.03]).tolist()  # results/context.json
    assert choose_order(curve, 10)[0] == "edges"
    w = rank_distribution([0] * 94 + [1, 2, 3, 4, 5, 6], 10)
    assert sum(w) == pytest.approx(1.0) and w[0] > 0.8
    assert choose_order(curve, 10, rank_weights=w)[0] == "reverse"
    with pytest.raises(ValueError, match="rank_weights"):
        choose_order(curve, 10, rank_weights=[1.0] * 3)
    with pytest.raises(ValueError, match="outside"):
        rank_distribution([12], 10)


def test_curve_from_an_earlier_run_must_match_its_settings(tmp_path):
    import json

    from bench.benchmarks.bench_context import load_curve

    prior = {"model": "smollm2", "fingerprint": "abc", "passages": 10, "positions": [0, 2, 4, 7, 9], "questions_curve": 500,
             "max_words_per_passage": 50, "seed": 0, "dtype": "bf16", "curve": {}, "contrasts": {},
             "chosen_order": "reverse", "order_scores_from_curve": {}, "rank_weights": [1.0]}
    path = tmp_path / "context.json"
    path.write_text(json.dumps(prior))
    args = dict(model="smollm2", fingerprint="abc", passages=10, positions=[0, 2, 4, 7, 9], limit=500, max_words=50, seed=0)
    assert load_curve(path, **args)["chosen_order"] == "reverse"
    # another seed or question count would put curve questions into the held-out set: refused, naming the setting
    with pytest.raises(ValueError, match="seed: file 0, this run 1"):
        load_curve(path, **{**args, "seed": 1})
    with pytest.raises(ValueError, match="questions_curve"):
        load_curve(path, **{**args, "limit": 400})
    with pytest.raises(ValueError, match="fingerprint"):
        load_curve(path, **{**args, "fingerprint": "other weights"})
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_curve(tmp_path / "missing.json", **args)
    (tmp_path / "bad.json").write_text(json.dumps({"model": "smollm2"}))
    with pytest.raises(ValueError, match="not a context result"):
        load_curve(tmp_path / "bad.json", **args)


@pytest.mark.parametrize("orders", [("reverse", "chosen"), ("rank", "middle")])
def test_heldout_orders_must_be_known_and_hold_rank(tmp_path, orders):
    from bench.benchmarks.bench_context import run_context

    # refused before any model is loaded: nothing is written
    with pytest.raises(ValueError, match="heldout-orders"):
        run_context("smollm2", 5, 10, 5, 50, 0, 5, None, tmp_path / "c.json", heldout_orders=orders)
    assert not (tmp_path / "c.json").exists()
