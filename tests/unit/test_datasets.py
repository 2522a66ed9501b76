"""Loaders: graded qrels and CRLF kept right; every kind of bad input gets a clear error."""
import json

import pytest

from data import DatasetError, load_beir, load_documents_jsonl, load_halueval_qa


def _write_beir(root, corpus, queries, qrels_text, split="test"):
    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (root / "qrels").mkdir(exist_ok=True)
    (root / "qrels" / f"{split}.tsv").write_bytes(qrels_text.encode())
    return root


CORPUS = [{"_id": "d1", "title": "T1", "text": "alpha beta"}, {"_id": "d2", "text": "gamma delta"}, {"_id": "d3", "text": "eps"}]
QUERIES = [{"_id": "q1", "text": "alpha"}, {"_id": "q2", "text": "gamma"}, {"_id": "q3", "text": "unjudged"}]


def test_graded_qrels_with_crlf(tmp_path):
    root = _write_beir(tmp_path / "ds", CORPUS, QUERIES, "query-id\tcorpus-id\tscore\r\nq1\td1\t2\r\nq1\td3\t1\r\nq2\td2\t1\r\n")
    ds = load_beir(root)
    assert ds.qrels == {"q1": {"d1": 2, "d3": 1}, "q2": {"d2": 1}}
    assert set(ds.queries) == {"q1", "q2"}  # unjudged queries dropped
    assert ds.corpus[0].full_text() == "T1 alpha beta"
    assert list(ds.limit(1).queries) == ["q1"]


def test_real_scifact_test_qrels(scifact):
    assert len(scifact.corpus) == 5183
    assert len(scifact.queries) == 300
    assert sum(len(r) for r in scifact.qrels.values()) == 339


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="no such folder"):
        load_beir(tmp_path / "nope")


def test_missing_qrels_split_lists_present_splits(tmp_path):
    root = _write_beir(tmp_path / "ds", CORPUS, QUERIES, "q1\td1\t1\n", split="train")
    with pytest.raises(DatasetError, match=r"missing qrels/test.tsv \(qrels splits present: train.tsv\)"):
        load_beir(root, "test")


def test_malformed_jsonl_names_file_and_line(tmp_path):
    p = tmp_path / "docs.jsonl"
    p.write_text('{"_id": "a", "text": "ok"}\n{"_id": "b", "text": \n')
    with pytest.raises(DatasetError, match=r"docs.jsonl:2: not valid JSON"):
        load_documents_jsonl(p)


def test_missing_field_names_line(tmp_path):
    p = tmp_path / "docs.jsonl"
    p.write_text('{"_id": "a", "text": "ok"}\n{"_id": "b"}\n')
    with pytest.raises(DatasetError, match=r"docs.jsonl:2: missing field 'text'"):
        load_documents_jsonl(p)


def test_empty_corpus(tmp_path):
    p = tmp_path / "docs.jsonl"
    p.write_text("\n\n")
    with pytest.raises(DatasetError, match="empty corpus"):
        load_documents_jsonl(p)


def test_duplicate_ids(tmp_path):
    p = tmp_path / "docs.jsonl"
    p.write_text('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n')
    with pytest.raises(DatasetError, match="duplicate document id 'a'"):
        load_documents_jsonl(p)


def test_qrels_naming_unknown_documents(tmp_path):
    root = _write_beir(tmp_path / "ds", CORPUS, QUERIES, "q1\td1\t1\nq1\td9\t1\n")
    with pytest.raises(DatasetError, match=r"1 document ids absent from corpus.jsonl \(first: \['d9'\]\)"):
        load_beir(root)


def test_qrels_naming_unknown_queries(tmp_path):
    root = _write_beir(tmp_path / "ds", CORPUS, QUERIES, "q7\td1\t1\n")
    with pytest.raises(DatasetError, match="query ids absent from queries.jsonl"):
        load_beir(root)


def test_qrels_bad_score(tmp_path):
    root = _write_beir(tmp_path / "ds", CORPUS, QUERIES, "q1\td1\thigh\n")
    with pytest.raises(DatasetError, match=r"test.tsv:1: relevance score 'high' is not a number"):
        load_beir(root)


def test_embedded_default_halueval():
    ds = load_halueval_qa(limit=50)
    assert len(ds.queries) == 50
    q = next(iter(ds.queries))
    (doc_id,) = ds.qrels[q]
    assert any(d.id == doc_id for d in ds.corpus)
    assert ds.answers[q][0]


def test_sample_corpus_keeps_every_judged_document(scifact):
    sub = scifact.limit(30).sample_corpus(400, seed=1)
    ids = {d.id for d in sub.corpus}
    assert len(ids) == 400
    assert all(d in ids for rel in sub.qrels.values() for d in rel)
    assert {d.id for d in scifact.limit(30).sample_corpus(400, seed=1).corpus} == ids  # seeded
    with pytest.raises(ValueError, match="smaller than the"):
        scifact.sample_corpus(10)
