"""IntentModel: OOS threshold, save/load round trip with a checked format, user data files."""
import hashlib
import json

import joblib
import numpy as np
import pytest

from cascade.intent import IntentModel, evaluate_intent, fit_intent_model, load_text_labels


class _BagEmbedder:
    """Deterministic bag-of-words hashing embedder: fast and real enough to separate keyword intents."""

    name = "bag"
    fingerprint = "bag-v1"

    def encode_queries(self, texts):
        x = np.zeros((len(texts), 64), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().split():
                x[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % 64] += 1
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)


def _data(seed=0):
    rng = np.random.default_rng(seed)
    vocab = {"weather": ["rain", "sunny", "forecast"], "flight": ["plane", "airport", "ticket"], "bank": ["balance", "account", "deposit"]}
    filler = ["please", "now", "the", "my", "what", "is"]
    texts, labels = [], []
    for lab, words in vocab.items():
        for _ in range(60):
            texts.append(" ".join(rng.choice(words, 2).tolist() + rng.choice(filler, 2).tolist()))
            labels.append(lab)
    return texts, labels


def test_fit_predict_oos_and_round_trip(tmp_path):
    texts, labels = _data()
    texts_oos = ["zebra xylophone quantum", "purple monkey dishwasher"]
    m = fit_intent_model(texts + texts_oos, labels + ["oos", "oos"], embedder=_BagEmbedder(), target_recall=0.95)
    assert "oos" not in set(m.classifier.classes_)  # oos rows are not trained on
    assert 0 < m.oos_threshold < 1
    res = evaluate_intent(m, ["rain forecast please", "airport ticket now", "zebra xylophone quantum"], ["weather", "flight", "oos"])
    assert res["accuracy"] == 1.0 and res["n_oos"] == 1
    m.save(tmp_path / "m", meta={"metrics": res, "command": "test"})
    back = IntentModel.load(tmp_path / "m", embedder=_BagEmbedder())
    q = ["rain sunny", "balance deposit my", "plane"]
    np.testing.assert_array_equal(back.predict(q), m.predict(q))
    assert back.oos_threshold == m.oos_threshold
    assert "| accuracy | 1.0000 |" in (tmp_path / "m" / "MODEL_CARD.md").read_text()


def test_embedder_is_passed_in_and_checked(tmp_path):
    """No registry inside cascade: a name is refused, a model without embedder says how to attach one, a wrong one is refused."""
    texts, labels = _data()
    with pytest.raises(TypeError, match="registry.load_embedder"):
        fit_intent_model(texts, labels, embedder="minilm")
    fit_intent_model(texts, labels, embedder=_BagEmbedder()).save(tmp_path / "m")
    bare = IntentModel.load(tmp_path / "m")
    with pytest.raises(RuntimeError, match="registry.load_intent_model"):
        bare.predict(["rain"])

    class _Other(_BagEmbedder):
        fingerprint = "other-v1"

    with pytest.raises(ValueError, match="fingerprint other-v1"):
        IntentModel.load(tmp_path / "m", embedder=_Other())
    bare.embedder = _BagEmbedder()
    assert bare.predict(["rain forecast"])[0] == "weather"


def test_format_version_checked(tmp_path):
    (tmp_path / "m").mkdir()
    joblib.dump({"format": 99}, tmp_path / "m" / "model.joblib")
    with pytest.raises(ValueError, match="format 99, this code reads format 1"):
        IntentModel.load(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="ragfix train intent"):
        IntentModel.load(tmp_path / "nothing")


def test_load_text_labels_csv_jsonl_and_errors(tmp_path):
    c = tmp_path / "a.csv"
    c.write_text('text,label\n"hello, there",greet\nbye,farewell\n')
    assert load_text_labels(c) == (["hello, there", "bye"], ["greet", "farewell"])
    j = tmp_path / "a.jsonl"
    j.write_text(json.dumps({"text": "hi", "label": "greet"}) + "\n\n")
    assert load_text_labels(j) == (["hi"], ["greet"])
    (tmp_path / "b.csv").write_text("utterance,intent\nhi,greet\n")
    with pytest.raises(ValueError, match="'text' and 'label' columns"):
        load_text_labels(tmp_path / "b.csv")
    (tmp_path / "c.jsonl").write_text('{"text": "", "label": "x"}\n')
    with pytest.raises(ValueError, match="row 1 has an empty or non-text 'text'"):
        load_text_labels(tmp_path / "c.jsonl")
    (tmp_path / "d.jsonl").write_text('{"text": 5, "label": "x"}\n')
    with pytest.raises(ValueError, match="non-text"):
        load_text_labels(tmp_path / "d.jsonl")
    (tmp_path / "e.jsonl").write_text("{broken\n")
    with pytest.raises(ValueError, match="e.jsonl:1: not valid JSON"):
        load_text_labels(tmp_path / "e.jsonl")
    with pytest.raises(ValueError, match="unknown extension"):
        load_text_labels(_touch(tmp_path / "x.txt"))


def _touch(p):
    p.write_text("x")
    return p
