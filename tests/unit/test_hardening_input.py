"""Issue 16: bad input is refused with the file and the line, never silently repaired or truncated."""
import json

import pytest

from bench.cli.calibrate import read_scores
from data import DatasetError, load_beir, load_documents_jsonl


def _beir(root, corpus, queries, qrels: bytes | str):
    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (root / "qrels").mkdir(exist_ok=True)
    (root / "qrels" / "test.tsv").write_bytes(qrels if isinstance(qrels, bytes) else qrels.encode())
    return root


CORPUS = [{"_id": "d1", "text": "alpha"}, {"_id": "d2", "text": "beta"}]
QUERIES = [{"_id": "q1", "text": "alpha"}, {"_id": "q2", "text": "beta"}]


def test_duplicate_query_id_names_both_lines(tmp_path):
    root = _beir(tmp_path / "ds", CORPUS, QUERIES + [{"_id": "q1", "text": "another text"}], "q1\td1\t1\n")
    with pytest.raises(DatasetError, match=r"queries.jsonl:3: duplicate query id 'q1' \(first on line 1\)"):
        load_beir(root)


def test_duplicate_document_id_names_both_lines(tmp_path):
    root = _beir(tmp_path / "ds", CORPUS + [{"_id": "d1", "text": "x"}], QUERIES, "q1\td1\t1\n")
    with pytest.raises(DatasetError, match=r"corpus.jsonl:3: duplicate document id 'd1' \(first on line 1\)"):
        load_beir(root)


@pytest.mark.parametrize("grade,why", [("0.7", "not an integer grade"), ("inf", "not finite"), ("nan", "not finite"),
                                       ("Infinity", "not finite")])
def test_qrels_grade_must_be_a_finite_integer(tmp_path, grade, why):
    root = _beir(tmp_path / "ds", CORPUS, QUERIES, f"query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t{grade}\n")
    with pytest.raises(DatasetError, match=rf"test.tsv:3: relevance score '{grade}' is {why}"):
        load_beir(root)


def test_integer_valued_float_grade_is_kept(tmp_path):
    root = _beir(tmp_path / "ds", CORPUS, QUERIES, "q1\td1\t2.0\n")
    assert load_beir(root).qrels == {"q1": {"d1": 2}}


def test_repeated_qrels_pair_is_refused(tmp_path):
    root = _beir(tmp_path / "ds", CORPUS, QUERIES, "q1\td1\t1\nq1\td1\t0\n")
    with pytest.raises(DatasetError, match=r"test.tsv:2: repeated pair"):
        load_beir(root)


def test_non_utf8_corpus_names_file_and_line(tmp_path):
    root = _beir(tmp_path / "ds", CORPUS, QUERIES, "q1\td1\t1\n")
    (root / "corpus.jsonl").write_bytes(b'{"_id": "d1", "text": "alpha"}\n{"_id": "d2", "text": "caf\xe9"}\n')
    with pytest.raises(DatasetError, match=r"corpus.jsonl:2: not UTF-8 \(byte 0xe9 at column 27\)"):
        load_beir(root)


def test_non_utf8_qrels_names_file_and_line(tmp_path):
    root = _beir(tmp_path / "ds", CORPUS, QUERIES, b"q1\td1\t1\nq2\td\xe92\t1\n")
    with pytest.raises(DatasetError, match=r"test.tsv:2: not UTF-8"):
        load_beir(root)


def test_utf8_bom_is_accepted(tmp_path):
    p = tmp_path / "docs.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + b'{"_id": "a", "text": "ok"}\n')
    assert [d.id for d in load_documents_jsonl(p)] == ["a"]
    root = _beir(tmp_path / "ds", CORPUS, QUERIES, b"\xef\xbb\xbfquery-id\tcorpus-id\tscore\nq1\td1\t1\n")
    assert load_beir(root).qrels == {"q1": {"d1": 1}}


@pytest.mark.parametrize("label", ["0.7", "2", "Infinity", "NaN", "-Infinity"])
def test_scores_file_label_must_be_binary_jsonl(tmp_path, label):
    p = tmp_path / "s.jsonl"
    p.write_text('{"score": 0.5, "label": 1}\n' + f'{{"score": 0.2, "label": {label}}}\n')
    with pytest.raises(DatasetError, match=r"s.jsonl:2: label .* (not 0 or 1|not a number)"):
        read_scores(p)


def test_scores_file_label_must_be_binary_csv(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("score,label\n0.5,1\n0.2,0.7\n")
    with pytest.raises(DatasetError, match=r"s.csv:3: label '0.7' is not 0 or 1"):
        read_scores(p)


def test_scores_csv_huge_field_names_line(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("score,label,note\n0.5,1,x\n0.2,0," + "y" * 200_000 + "\n")
    with pytest.raises(DatasetError, match=r"s.csv:3: malformed CSV \(field larger than field limit"):
        read_scores(p)


def test_scores_csv_bom_and_non_utf8(tmp_path):
    p = tmp_path / "s.csv"
    p.write_bytes(b"\xef\xbb\xbfscore,label\n0.5,1\n0.2,0\n")
    s, y, _ = read_scores(p)
    assert y.tolist() == [1, 0]
    p.write_bytes(b"score,label,c\n0.5,1,a\n0.2,0,caf\xe9\n")
    with pytest.raises(DatasetError, match=r"s.csv:3: not UTF-8"):
        read_scores(p)


# ----------------------------------------------------------------------------- model dictionaries

@pytest.mark.parametrize("body,msg", [
    ("models:\n  good:\n    kind: embedder\n    source: local\n    loader: sentence-transformers\n    path: /x\n"
     "  bad: just-a-string\n", r"models.yaml:7: model 'bad' must be a mapping"),
    ("models:\n  a:\n    kind: embedder\n    source: local\n    path: /x\n", r"models.yaml:2: model 'a' has no 'loader'"),
    ("models:\n  a:\n    kind: cross-encoder\n    source: project\n    loader: x\n", r"models.yaml:2: .* needs a string 'path'"),
    ("models: [1, 2]\n", r"models.yaml:1: expected a mapping"),
    ("models:\n  a: {kind: embedder\n", r"models.yaml:\d+: not valid YAML"),
])
def test_malformed_model_registry_names_file_and_line(tmp_path, monkeypatch, body, msg):
    from registry import Registry

    cfg = tmp_path / "models.yaml"
    cfg.write_text(body)
    with pytest.raises(ValueError, match=msg):
        Registry(cfg)


@pytest.mark.parametrize("edit,msg", [
    (lambda b: [1, 2], r"model.json:1: expected a JSON object"),
    (lambda b: {**b, "coef": b["coef"][:-1]}, r"field 'coef' must be a list of 11 finite numbers"),
    (lambda b: {k: v for k, v in b.items() if k != "intercept"}, r"field 'intercept' must be a finite number"),
    (lambda b: {**b, "scale": ["x"] * 11}, r"field 'scale' must be"),
    (lambda b: {**b, "max_words": "many"}, r"field 'max_words' must be a positive integer"),
])
def test_malformed_faithfulness_model_dictionary(tmp_path, edit, msg):
    import shutil
    from pathlib import Path

    from cascade.support_features import LexicalFaithfulnessScorer

    src = Path(__file__).resolve().parents[2] / "models" / "faithfulness-lexical"
    shutil.copytree(src, tmp_path / "m")
    body = json.loads((tmp_path / "m" / "model.json").read_text())
    (tmp_path / "m" / "model.json").write_text(json.dumps(edit(body)))
    with pytest.raises(ValueError, match=msg):
        LexicalFaithfulnessScorer.load(tmp_path / "m")
