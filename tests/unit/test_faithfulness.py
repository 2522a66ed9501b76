"""Faithfulness data and evaluation: no held-out leak, length matching defeats the length baseline, bad input."""
from collections import Counter

import numpy as np
import pytest

import cascade.faithfulness as F
import data.faithfulness as FD


@pytest.fixture(scope="module")
def qa_rows():
    return FD.load_halueval("qa")


def test_split_is_disjoint_and_deterministic(qa_rows):
    tr, he = F.halueval_qa_split(len(qa_rows), 3000)
    assert len(he) == 3000 and not set(tr) & set(he) and len(tr) + len(he) == len(qa_rows)
    assert F.halueval_qa_split(len(qa_rows), 3000) == (tr, he)
    pairs = F.halueval_qa_pairs(qa_rows, tr[:300], augment=0.5)
    assert not {p.qid for p in pairs} & {f"qa:{i}" for i in he}
    assert Counter(p.label for p in pairs if p.source == "halueval-qa") == {1.0: 300, 0.0: 300}
    # counter-examples exist in both directions: long supported, short unsupported
    aug = [p for p in pairs if p.source == "halueval-qa-aug"]
    assert {p.label for p in aug} == {0.0, 1.0}


def test_length_matching_puts_the_length_baseline_at_chance(qa_rows):
    tr, he = F.halueval_qa_split(len(qa_rows), 3000)
    fit = F.unmatched_eval(qa_rows, tr)
    base = F.LengthBaseline().fit([c.n_words for c in fit], [c.label for c in fit])
    raw = F.unmatched_eval(qa_rows, he)
    y = np.array([c.label for c in raw])
    acc_raw = F.balanced_accuracy(y, base.predict_proba([c.n_words for c in raw]) >= 0.5)
    assert acc_raw > 0.8  # the shortcut the issue warns about is real on unmatched data
    matched = F.length_matched_eval(qa_rows, he)
    y = np.array([c.label for c in matched])
    assert len(matched) > 400 and y.mean() == 0.5
    per_len = Counter((c.n_words, c.label) for c in matched)
    assert all(per_len[(n, 0)] == per_len[(n, 1)] for n, _ in per_len)
    acc = F.balanced_accuracy(y, base.predict_proba([c.n_words for c in matched]) >= 0.5)
    assert abs(acc - 0.5) < 0.03


def test_scifact_pairs_use_train_claims_only(data_root):
    pairs = FD.scifact_claim_pairs()
    test_ids = {line.split("\t")[0] for line in (data_root / "scifact/qrels/test.tsv").read_text().splitlines()[1:]}
    assert pairs and {p.label for p in pairs} == {0.0, 1.0}
    assert not {p.qid.split(":")[1] for p in pairs} & test_ids


def test_balanced_accuracy_by_hand():
    assert F.balanced_accuracy([1, 1, 1, 0], [1, 1, 1, 1]) == 0.5
    assert F.balanced_accuracy([1, 0, 0, 0], [1, 0, 0, 1]) == pytest.approx((1 + 2 / 3) / 2)
    with pytest.raises(ValueError, match="single class"):
        F.balanced_accuracy([1, 1], [1, 0])


def test_scorer_bad_input_and_truncation_counted():
    from sentence_transformers import CrossEncoder

    from rerank.train import minilm_path

    ce = CrossEncoder(minilm_path(), num_labels=1, max_length=32, device="cpu")
    s = F.FaithfulnessScorer(ce, max_length=32)
    with pytest.raises(ValueError, match="evidence\\[0\\] is empty"):
        s.predict_proba([" "], ["c"])
    with pytest.raises(TypeError, match="claim\\[0\\] must be str, got int"):
        s.predict_proba(["e"], [3])
    with pytest.raises(ValueError, match="1 evidences and 2 claims"):
        s.predict_proba(["e"], ["a", "b"])
    p = s.predict_proba(["short evidence", "long evidence " * 50], ["claim", "claim"])
    assert p.shape == (2,)
    assert s.n_truncated_ == 1 and s.n_scored_ == 2
    with pytest.raises(FileNotFoundError, match="ragfix train faithfulness"):
        F.FaithfulnessScorer("/nonexistent/model")


def test_scorer_int8_backend_agrees_with_fp32_and_threshold_comes_from_the_card(tmp_path):
    """The int8 path (length-sorted batches through rerank.backends) ranks pairs as the fp32 CrossEncoder does."""
    import json
    import shutil

    from scipy.stats import spearmanr

    from cascade.faithfulness import FORMAT_VERSION, FaithfulnessScorer

    ev = ["Pride and Prejudice is an 1813 novel written by Jane Austen.", "K2 is 8,611 metres high.",
          "Canberra is the capital city of Australia; Sydney is its largest city.", "Penicillin was found by Fleming.",
          "The Eiffel Tower was completed in 1889 for the World's Fair in Paris, France."] * 2
    cl = ["Jane Austen", "8,611 metres", "Sydney", "Alexander Fleming", "1889", "Charlotte Bronte", "8,849 metres",
          "Canberra", "Marie Curie", "1925"]
    qs = ["Who wrote it?", "How tall is K2?", "Capital?", "Who found penicillin?", "When completed?"] * 2
    fp32 = FaithfulnessScorer("models/reranker-minilm-l6", max_length=64)
    int8 = FaithfulnessScorer("models/reranker-minilm-l6", max_length=64, backend="int8", batch_size=3)
    a, b = fp32.predict_proba(ev, cl, qs), int8.predict_proba(ev, cl, qs)
    assert b.shape == a.shape and spearmanr(a, b).statistic > 0.9
    folder = tmp_path / "m"
    shutil.copytree("models/reranker-minilm-l6", folder)
    (folder / "training.json").write_text(json.dumps({"format_version": FORMAT_VERSION, "calibration": {"threshold": 0.37}}))
    assert FaithfulnessScorer(str(folder)).threshold == 0.37
    assert FaithfulnessScorer(str(folder), threshold=0.6).threshold == 0.6
