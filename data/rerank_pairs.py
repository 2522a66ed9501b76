"""Training pairs for the project's relevance cross-encoder (:mod:`rerank.train` trains on them).

Moved here from ``rerank/train.py`` so the fix package never reads a data set: this module reads
the shared data (SciFact in BEIR layout, HaluEval QA, NQ-open oracle) through :mod:`data` and hands
:class:`rerank.train.TrainPair` lists to :func:`rerank.train.train_cross_encoder`. The sources and
the mining are described in ``rerank/train.py``'s docstring; every builder is seeded, so the same
arguments give the same pairs, and none ever uses a SciFact test query (:func:`drop_test_queries`
drops them and :func:`rerank.train.check_no_test_leak` refuses any left).

Failure modes: a missing or malformed data file raises :class:`data.DatasetError` (from the
loaders) with the file and line; ``split="test"`` is refused with :class:`ValueError`.

Example::

    pairs = build_training_pairs(seed=13, max_pairs=2000)
    rerank.train.train_cross_encoder(pairs, "runs/reranker-l2", layers=2, epochs=1)
"""
from __future__ import annotations

import functools
import logging
import random
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from rerank.train import TrainPair, _norm, check_no_test_leak, check_pairs

__all__ = ["MINERS", "scifact_qrel_pairs", "ict_pairs", "hotpotqa_pairs", "nq_oracle_pairs", "hotpotqa_draw",
           "candidate_groups", "drop_test_queries", "build_training_pairs"]

log = logging.getLogger(__name__)


def _bm25(texts: Sequence[str]):
    from retrieval.bm25 import BM25Index

    return BM25Index().index(list(texts))


MINERS = ("bm25", "hybrid")


@functools.lru_cache(maxsize=1)
def _minilm():
    """The hybrid miner's embedder, loaded once per process (one training mix mines four sources)."""
    from registry import load_embedder

    return load_embedder("minilm")


def _ranked(docs: Sequence, queries: Sequence[str], depth: int, miner: str = "bm25") -> np.ndarray:
    """Each query's top ``depth`` positions in ``docs`` (:class:`retrieval.Document`), best first.

    ``bm25`` mines the negatives a lexical first stage would surface; ``hybrid`` mines them from
    the candidates the rerank stage really sees (BM25 and MiniLM fused by RRF, as
    ``retrieval.HybridRetriever``), where semantically close but unjudged abstracts are the
    cross-encoder's hardest mistakes.
    """
    if miner == "bm25":
        return _bm25([d.full_text() for d in docs]).search(list(queries), depth).indices
    if miner == "hybrid":
        from retrieval.retrievers import BM25Retriever, DenseRetriever, HybridRetriever

        hybrid = HybridRetriever([BM25Retriever(), DenseRetriever(_minilm())]).index(list(docs))
        return hybrid.search(list(queries), depth).indices
    raise ValueError(f"negative miner must be one of {', '.join(MINERS)}; got {miner!r}")


def _pick_negatives(ranked: np.ndarray, exclude: set[int], n_neg: int, rng: random.Random, skip: int = 0, depth: int = 30) -> list[int]:
    # Hard but not too hard: sample from BM25 ranks skip..depth, so near-duplicates of the positive
    # at the very top (often unjudged relevant documents) are rarer among the negatives.
    cands = [int(d) for d in ranked[skip:depth] if d >= 0 and int(d) not in exclude]
    return rng.sample(cands, min(n_neg, len(cands)))


def scifact_qrel_pairs(folder: Path | str, n_neg: int = 1, seed: int = 13, split: str = "train",
                       miner: str = "bm25") -> list[TrainPair]:
    """(claim, cited abstract) positives from ``qrels/<split>.tsv`` with hard negatives from ``miner``."""
    from data import load_beir

    if split == "test":
        raise ValueError("split='test' refused: SciFact test qrels are for evaluation only")
    ds = load_beir(folder, split)
    texts = [d.full_text() for d in ds.corpus]
    pos_of = {d.id: i for i, d in enumerate(ds.corpus)}
    qids = sorted(ds.queries)
    ranked = _ranked(ds.corpus, [ds.queries[q] for q in qids], 31, miner)
    rng = random.Random(seed)
    out: list[TrainPair] = []
    for row, qid in enumerate(qids):
        q = ds.queries[qid]
        positives = {pos_of[d] for d, r in ds.qrels[qid].items() if r > 0}
        for p in sorted(positives):
            out.append(TrainPair(q, texts[p], 1.0, "scifact-train", f"scifact-train:{qid}"))
        for n in _pick_negatives(ranked[row], positives, n_neg * max(1, len(positives)), rng, skip=1):
            out.append(TrainPair(q, texts[n], 0.0, "scifact-train", f"scifact-train:{qid}"))
    return out


_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z(])")


def _ict_sentences(corpus: Sequence, n_queries: int, rng: random.Random, min_words: int = 6,
                   max_words: int = 40) -> list[tuple[int, str, str]]:
    """(document index, one sentence, the rest of the abstract with its title) for ``n_queries`` documents."""
    order = list(range(len(corpus)))
    rng.shuffle(order)
    chosen: list[tuple[int, str, str]] = []
    for i in order:
        if len(chosen) >= n_queries:
            break
        sents = _SENT.split(corpus[i].text.strip())
        ok = [j for j, s in enumerate(sents) if min_words <= len(s.split()) <= max_words]
        if len(sents) < 3 or not ok:
            continue
        j = rng.choice(ok)
        rest = " ".join(s for k, s in enumerate(sents) if k != j)
        passage = f"{corpus[i].title} {rest}".strip() if corpus[i].title else rest
        chosen.append((i, sents[j], passage))
    return chosen


def ict_pairs(folder: Path | str, n_queries: int, n_neg: int = 1, seed: int = 13,
              min_words: int = 6, max_words: int = 40, miner: str = "bm25") -> list[TrainPair]:
    """Inverse-cloze pseudo-queries from a BEIR corpus: a sentence -> the rest of its abstract."""
    from data import load_documents_jsonl

    corpus = load_documents_jsonl(Path(folder) / "corpus.jsonl")
    texts = [d.full_text() for d in corpus]
    rng = random.Random(seed)
    chosen = _ict_sentences(corpus, n_queries, rng, min_words, max_words)
    ranked = _ranked(corpus, [s for _, s, _ in chosen], 31, miner)
    out: list[TrainPair] = []
    for row, (i, sent, passage) in enumerate(chosen):
        qid = f"ict:{corpus[i].id}"
        out.append(TrainPair(sent, passage, 1.0, "scifact-ict", qid))
        for n in _pick_negatives(ranked[row], {i}, n_neg, rng):
            out.append(TrainPair(sent, texts[n], 0.0, "scifact-ict", qid))
    return out


def _question_passage_pairs(questions: list[str], passages: list[str], gold: list[int], source: str,
                            n_neg: int, rng: random.Random, miner: str = "bm25") -> list[TrainPair]:
    from retrieval.types import Document

    ranked = _ranked([Document(f"{source}:{i}", t) for i, t in enumerate(passages)], questions, 31, miner)
    out: list[TrainPair] = []
    for row, (q, g) in enumerate(zip(questions, gold)):
        qid = f"{source}:{row}"
        out.append(TrainPair(q, passages[g], 1.0, source, qid))
        for n in _pick_negatives(ranked[row], {g}, n_neg, rng):
            out.append(TrainPair(q, passages[n], 0.0, source, qid))
    return out


def hotpotqa_draw(query_ids: Iterable[str], n_queries: int, rng: random.Random) -> list[str]:
    """The HaluEval QA question ids a training run draws (``q<line>`` ids, shuffled by ``rng``, first ``n_queries``).

    One function for the draw, so a held-out check (``bench.probes.probe_fusion``) can rebuild exactly what
    each training stage saw from its ``--seed`` and ``--hotpot-queries``.
    """
    order = sorted(query_ids, key=lambda q: int(q[1:]))
    rng.shuffle(order)
    return order[:n_queries]


def hotpotqa_pairs(n_queries: int, n_neg: int = 1, seed: int = 13, miner: str = "bm25") -> list[TrainPair]:
    """HaluEval QA (HotpotQA-derived): question -> its knowledge passage; ``miner`` negatives among all passages."""
    from data import load_halueval_qa

    ds = load_halueval_qa()
    pos = {d.id: i for i, d in enumerate(ds.corpus)}
    rng = random.Random(seed)
    qids = hotpotqa_draw(ds.queries, n_queries, rng)
    return _question_passage_pairs([ds.queries[q] for q in qids], [d.text for d in ds.corpus],
                                   [pos[next(iter(ds.qrels[q]))] for q in qids], "hotpotqa", n_neg, rng, miner)


def nq_oracle_pairs(n_queries: int, n_neg: int = 1, seed: int = 13, miner: str = "bm25") -> list[TrainPair]:
    """NQ-open oracle: question -> gold passage; negatives are other questions' gold passages nearest by ``miner``."""
    from data import data_root, read_jsonl

    path = data_root() / "lost_in_the_middle" / "nq-open-oracle.jsonl.gz"
    questions, passages, index = [], [], {}
    gold = []
    for _, obj in read_jsonl(path):
        ctx = next((c for c in obj["ctxs"] if c.get("isgold")), obj["ctxs"][0])
        text = f"{ctx.get('title', '')} {ctx['text']}".strip()
        if text not in index:
            index[text] = len(passages)
            passages.append(text)
        questions.append(obj["question"])
        gold.append(index[text])
    rng = random.Random(seed)
    order = list(range(len(questions)))
    rng.shuffle(order)
    order = order[:n_queries]
    return _question_passage_pairs([questions[i] for i in order], passages, [gold[i] for i in order], "nq-oracle", n_neg, rng, miner)


def candidate_groups(folder: Path | str, per_query: int = 32, depth: int = 100, ict_queries: int = 0,
                     seed: int = 13, split: str = "train") -> list[TrainPair]:
    """Distillation groups shaped like the cascade's real input: ``per_query`` of each query's BM25 top ``depth``.

    The cascade's pruner sees a query's first-stage top K, not one positive beside three hard
    negatives, so it should learn the teacher's ranking over exactly that kind of list. Queries are
    the ``split`` claims of ``folder`` (never ``test``) plus ``ict_queries`` inverse-cloze sentences
    from its corpus; each group is a uniform sample of the BM25 top ``depth`` (the judged positive of
    a claim, if retrieved, is labelled 1; labels are bookkeeping, the loss uses the teacher).
    """
    from data import load_beir

    if split == "test":
        raise ValueError("split='test' refused: SciFact test queries are for evaluation only")
    if per_query < 2 or depth < per_query:
        raise ValueError(f"need 2 <= per_query <= depth, got per_query={per_query}, depth={depth}")
    ds = load_beir(folder, split)
    texts = [d.full_text() for d in ds.corpus]
    pos_of = {d.id: i for i, d in enumerate(ds.corpus)}
    queries = [(f"scifact-{split}:{q}", ds.queries[q], {pos_of[d] for d, r in ds.qrels.get(q, {}).items() if r > 0 and d in pos_of},
                "scifact-" + split) for q in sorted(ds.queries)]
    # The ICT sentences come from the corpus already loaded, and one BM25 index serves every query.
    for i, sent, _ in _ict_sentences(ds.corpus, ict_queries, random.Random(seed)) if ict_queries else []:
        queries.append((f"ict:{ds.corpus[i].id}", sent, set(), "scifact-ict"))
    res = _bm25(texts).search([q for _, q, _, _ in queries], depth)
    rng = random.Random(seed)
    out: list[TrainPair] = []
    for row, (qid, q, positives, source) in enumerate(queries):
        ranked = [int(d) for d in res.indices[row] if d >= 0]
        for d in sorted(rng.sample(ranked, min(per_query, len(ranked)))):
            out.append(TrainPair(q, texts[d], 1.0 if d in positives else 0.0, source, qid))
    return out


def drop_test_queries(pairs: list[TrainPair], folder: Path | str) -> list[TrainPair]:
    """Drop pairs whose query equals a test query of ``folder`` (if it has test qrels), then check for leaks."""
    from data import load_beir

    folder = Path(folder)
    if not (folder / "qrels" / "test.tsv").is_file():
        return pairs
    test = load_beir(folder, "test")
    before = len(pairs)
    banned = {_norm(t) for t in test.queries.values()}
    # subtle: an ICT sentence can coincide with a test claim; drop it rather than fail the build.
    pairs = [p for p in pairs if _norm(p.query) not in banned]
    if before != len(pairs):
        log.info("dropped %d pairs whose query equals a test query", before - len(pairs))
    check_no_test_leak(pairs, test.queries)
    return pairs


def build_training_pairs(data: Path | str | None = None, seed: int = 13, n_neg: int = 1,
                         ict_queries: int = 2000, hotpot_queries: int = 800, nq_queries: int = 800,
                         max_pairs: int | None = None, miner: str = "bm25", train_qrels: bool = True) -> list[TrainPair]:
    """The full training mix, checked (no empty pairs, no SciFact test query), shuffled, capped at ``max_pairs``.

    ``data`` is a BEIR-layout folder with ``qrels/train.tsv`` (default: SciFact); its train qrels
    and inverse-cloze queries from its corpus are the in-domain part. Set a count to 0 to drop a source.
    ``miner`` picks where every source's hard negatives come from (``bm25`` or ``hybrid``).
    ``train_qrels=False`` leaves out the folder's train qrels: a model that never saw a human relevance
    label of this corpus (e.g. a label-free query-performance predictor for the eval-drift bench, whose
    stream pools SciFact train and test claims).
    """
    from data import data_root

    folder = Path(data) if data is not None else data_root() / "scifact"
    if miner not in MINERS:  # before any index is built
        raise ValueError(f"negative miner must be one of {', '.join(MINERS)}; got {miner!r}")
    pairs = scifact_qrel_pairs(folder, n_neg=n_neg, seed=seed, miner=miner) if train_qrels else []
    if ict_queries:
        pairs += ict_pairs(folder, ict_queries, n_neg=n_neg, seed=seed, miner=miner)
    if hotpot_queries:
        pairs += hotpotqa_pairs(hotpot_queries, n_neg=n_neg, seed=seed, miner=miner)
    if nq_queries:
        pairs += nq_oracle_pairs(nq_queries, n_neg=n_neg, seed=seed, miner=miner)
    pairs = drop_test_queries(pairs, folder)
    check_pairs(pairs)
    rng = random.Random(seed)
    rng.shuffle(pairs)
    return pairs[:max_pairs] if max_pairs else pairs
