"""EmbeddingIntentClassifier on separable synthetic embeddings; the CLINC loader and text embedding store."""
import json

import numpy as np
import pytest

from data.clinc import TextEmbeddingStore, load_clinc150
from data import DatasetError
from cascade.intent import EmbeddingIntentClassifier


def _blobs(n=300, k=3, d=16, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * 3
    y = rng.integers(0, k, n)
    x = centers[y] + rng.normal(size=(n, d))
    return x, np.array([f"intent{i}" for i in y])


def test_classifier_learns_and_exposes_both_scales():
    x, y = _blobs()
    clf = EmbeddingIntentClassifier(embedder_fingerprint="e").fit(x[:200], y[:200])
    assert np.mean(clf.predict(x[200:]) == y[200:]) > 0.95
    p, z = clf.predict_proba(x[200:]), clf.decision_function(x[200:])
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(p.argmax(1), z.argmax(1))
    assert z.max() > 1.0  # logits are not probabilities: the scale a round cutoff silently depends on
    other = EmbeddingIntentClassifier(embedder_fingerprint="f").fit(x[:200], y[:200])
    assert other.fingerprint_ != clf.fingerprint_


def test_classifier_errors():
    with pytest.raises(RuntimeError, match="not fitted"):
        EmbeddingIntentClassifier().predict(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="single class"):
        EmbeddingIntentClassifier().fit(np.zeros((3, 4)), ["a", "a", "a"])


def test_store_encodes_each_text_once_and_survives_reopen(tmp_path):
    calls = []

    def enc(texts):
        calls.append(list(texts))
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    s = TextEmbeddingStore(tmp_path / "e.sqlite")
    a = s.encode("fp", ["aa", "b", "aa"], enc)
    assert a.shape == (3, 2) and a[0, 0] == 2 and calls == [["aa", "b"]]
    s.close()
    s2 = TextEmbeddingStore(tmp_path / "e.sqlite")
    b = s2.encode("fp", ["b", "ccc"], enc)
    assert calls[-1] == ["ccc"] and b[0, 0] == 1 and b[1, 0] == 3
    s2.encode("other-fp", ["b"], enc)
    assert calls[-1] == ["b"]  # another fingerprint never hits the first one's vectors


def test_clinc_loader_validates(tmp_path):
    (tmp_path / "data_full.json").write_text(json.dumps({"train": [["hi", "greet"]]}))
    with pytest.raises(DatasetError, match="missing split 'val'"):
        load_clinc150(tmp_path)
    splits = {k: [["hello there", "greet"], ["bye now", "bye"], ["hi", "greet"]] for k in
              ("train", "val", "test", "oos_train", "oos_val", "oos_test")}
    (tmp_path / "data_full.json").write_text(json.dumps(splits))
    d = load_clinc150(tmp_path, per_intent=1)
    assert d.split("train") == (["hello there", "bye now"], ["greet", "bye"])


def test_store_reads_a_file_written_in_the_old_layout_without_reencoding(tmp_path):
    # The store now opens SQLite through monitor.sqlite_store; a cache file written before the swap
    # (plain sqlite3, same table) must read back the same vectors and cost no encoder call.
    import sqlite3

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE emb (fp TEXT, kind TEXT, h TEXT, dim INTEGER, v BLOB, PRIMARY KEY (fp, kind, h))")
    vecs = {"alpha": np.array([0.5, -1.25, 3.0], dtype=np.float32), "beta": np.array([2.0, 0.0, -0.5], dtype=np.float32)}
    db.executemany("INSERT INTO emb VALUES (?, ?, ?, ?, ?)",
                   [("fp", "query", TextEmbeddingStore._hash(t), 3, v.tobytes()) for t, v in vecs.items()])
    db.commit()
    db.close()

    def enc(texts):
        raise AssertionError(f"re-encoded {texts}")

    s = TextEmbeddingStore(path)
    got = s.encode("fp", ["beta", "alpha"], enc)
    s.close()
    assert np.array_equal(got, np.stack([vecs["beta"], vecs["alpha"]]))
