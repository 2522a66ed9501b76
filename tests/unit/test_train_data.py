"""Reranker training data: no SciFact test query leaks in; bad pairs are refused with a clear error."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from data import data_root, load_beir
from data.rerank_pairs import build_training_pairs, ict_pairs, scifact_qrel_pairs
from rerank.train import TrainPair, check_no_test_leak, check_pairs, load_pairs, save_pairs

SCIFACT = data_root() / "scifact"
needs_scifact = pytest.mark.skipif(not (SCIFACT / "qrels" / "test.tsv").is_file(), reason="SciFact not in RAGFIX_DATA")


def _norm(t: str) -> str:
    import re

    return " ".join(re.findall(r"\w+", t.lower()))


@pytest.fixture(scope="module")
def scifact_pairs() -> list[TrainPair]:
    # The in-domain part of the default recipe, built exactly as `ragfix train reranker` builds it.
    return build_training_pairs(seed=13, ict_queries=300, hotpot_queries=0, nq_queries=0)


@needs_scifact
def test_no_scifact_test_query_in_training_pairs(scifact_pairs):
    test = load_beir(SCIFACT, "test")
    banned_text = {_norm(t) for t in test.queries.values()}
    banned_ids = {f"scifact-train:{q}" for q in test.queries}
    assert scifact_pairs, "no pairs built"
    assert not [p for p in scifact_pairs if _norm(p.query) in banned_text]
    assert not [p for p in scifact_pairs if p.qid in banned_ids]
    # and the builder really used the train qrels and the corpus
    assert {p.source for p in scifact_pairs} == {"scifact-train", "scifact-ict"}


MODELS = Path(__file__).resolve().parents[2] / "models"


def _strict(text: str) -> str:
    """A normalisation independent of (and stricter than) the trainer's: NFKC, casefold, letters and digits only."""
    import unicodedata

    return "".join(ch for ch in unicodedata.normalize("NFKC", text).casefold() if ch.isalnum())


def _committed_recipes() -> list[tuple[str, object]]:
    """Every ``ragfix train reranker`` command in the committed reranker cards, parsed by the real CLI parser."""
    import shlex

    from bench.cli import build_parser

    recipes = []
    for card in sorted(MODELS.glob("reranker-*/MODEL_CARD.md")):
        for line in card.read_text(encoding="utf-8").splitlines():
            if "ragfix train reranker" in line and not line.lstrip().startswith("#"):
                argv = shlex.split(line.split("ragfix", 1)[1])
                recipes.append((f"{card.parent.name}: {' '.join(argv)}", build_parser().parse_args(argv)))
    return recipes


def _rebuilt_positive_pairs(args, train, corpus) -> list[TrainPair]:
    """The queries and positives a recipe trained on, rebuilt with the trainer's own draws: every train claim
    with its cited abstracts, and the inverse-cloze sentences ``_ict_sentences`` draws from the recipe's seed and
    count (the miner and the negatives do not change which queries are drawn), then the trainer's test-query drop."""
    import random

    from data.rerank_pairs import _ict_sentences, drop_test_queries

    texts = {d.id: d.full_text() for d in corpus}
    pairs = [TrainPair(q, texts[d], 1.0, "scifact-train", f"scifact-train:{qid}")
             for qid, q in train.queries.items() for d, r in train.qrels.get(qid, {}).items() if r > 0 and d in texts]
    pairs += [TrainPair(sent, passage, 1.0, "scifact-ict", f"ict:{corpus[i].id}")
              for i, sent, passage in _ict_sentences(corpus, args.ict_queries, random.Random(args.seed))]
    return drop_test_queries(pairs, SCIFACT)


def _leaks(pairs: list[TrainPair], test) -> list[str]:
    """Test claims used as training queries, test query ids, and (test claim, cited abstract) qrel pairs."""
    texts = {d.id: d.full_text() for d in test.corpus}
    claims = {_strict(q): qid for qid, q in test.queries.items()}
    qrel_pairs = {(_strict(test.queries[qid]), texts[d]) for qid, rel in test.qrels.items() for d, r in rel.items()
                  if r > 0 and d in texts}
    ids = {f"scifact-train:{qid}" for qid in test.queries}
    found = [f"{p.qid}: query is test claim {claims[_strict(p.query)]}" for p in pairs if _strict(p.query) in claims]
    found += [f"{p.qid}: test query id" for p in pairs if p.qid in ids]
    found += [f"{p.qid}: test qrel pair" for p in pairs if (_strict(p.query), p.passage) in qrel_pairs]
    return found


@needs_scifact
def test_committed_rerankers_trained_on_no_test_claim_or_qrel_pair():
    # Runs wherever the data is (no training run needed): each committed model's recipe, read from its card,
    # rebuilt from the shared data with the trainer's own code, checked by a stricter, independent matcher.
    recipes = _committed_recipes()
    assert len(recipes) >= 2, f"expected the reranker cards' training commands under {MODELS}, found {len(recipes)}"
    train, test = load_beir(SCIFACT, "train"), load_beir(SCIFACT, "test")
    for name, args in recipes:
        assert args.data is None, f"{name}: the rebuild covers the default SciFact data only"
        pairs = _rebuilt_positive_pairs(args, train, train.corpus)
        assert len({p.qid for p in pairs if p.source == "scifact-ict"}) == args.ict_queries, name
        assert not _leaks(pairs, test), f"{name}: {_leaks(pairs, test)[:5]}"


@needs_scifact
def test_leak_matcher_finds_a_planted_test_claim_and_qrel_pair():
    test = load_beir(SCIFACT, "test")
    qid, claim = next((q, c) for q, c in test.queries.items() if test.qrels.get(q))
    doc = next(d for d in test.corpus if d.id in test.qrels[qid])
    planted = [TrainPair(claim.replace(" ", "  ").upper() + ".", doc.full_text(), 1.0, "scifact-ict", "ict:x")]
    assert len(_leaks(planted, test)) == 2  # the claim as a query, and the (claim, cited abstract) qrel pair
    assert _leaks([TrainPair("an unrelated query", doc.full_text(), 1.0, "x", f"scifact-train:{qid}")], test) == \
        [f"scifact-train:{qid}: test query id"]


@needs_scifact
def test_leak_check_fires_on_a_test_query():
    test = load_beir(SCIFACT, "test")
    qid, text = next(iter(test.queries.items()))
    leaked = [TrainPair(text.upper() + "  ", "some passage", 1.0, "scifact-ict", "ict:1")]
    with pytest.raises(ValueError, match=f"SciFact test query {qid}"):
        check_no_test_leak(leaked, test.queries)
    with pytest.raises(ValueError, match="test query id"):
        check_no_test_leak([TrainPair("an unrelated query", "p", 1.0, "scifact-train", f"scifact-train:{qid}")], test.queries)


@needs_scifact
def test_qrel_builder_refuses_the_test_split():
    with pytest.raises(ValueError, match="evaluation only"):
        scifact_qrel_pairs(SCIFACT, split="test")


@needs_scifact
def test_ict_positive_omits_the_query_sentence_and_negatives_differ():
    pairs = ict_pairs(SCIFACT, n_queries=20, n_neg=1, seed=1)
    pos = [p for p in pairs if p.label == 1.0]
    neg = [p for p in pairs if p.label == 0.0]
    assert len(pos) == 20 and len(neg) == 20
    for p in pos:
        assert p.query not in p.passage
    by_q = {p.qid: p.passage for p in pos}
    assert all(n.passage != by_q[n.qid] for n in neg)


@pytest.mark.parametrize("bad, err, msg", [
    (TrainPair("", "passage", 1.0, "x", "q1"), ValueError, "query is empty"),
    (TrainPair("query", "   ", 0.0, "x", "q1"), ValueError, "passage is empty"),
    (TrainPair(None, "passage", 1.0, "x", "q1"), TypeError, "query must be str, got NoneType"),
    (TrainPair("query", 3.5, 1.0, "x", "q1"), TypeError, "passage must be str, got float"),
    (TrainPair("query", "passage", 2.0, "x", "q1"), ValueError, r"label must be a number in \[0, 1\]"),
])
def test_pair_check_rejects_bad_pairs(bad, err, msg):
    good = TrainPair("query", "passage", 1.0, "x", "q0")
    with pytest.raises(err, match=msg):
        check_pairs([good, bad])
    check_pairs([good])  # the good pair alone passes


def test_pair_check_rejects_no_pairs():
    with pytest.raises(ValueError, match="no training pairs"):
        check_pairs([])


def test_pairs_round_trip(tmp_path):
    pairs = [TrainPair("q", "p", 1.0, "s", "s:1"), TrainPair("q", "n", 0.0, "s", "s:1")]
    save_pairs(pairs, tmp_path / "p.jsonl")
    assert load_pairs(tmp_path / "p.jsonl") == pairs
    assert json.loads((tmp_path / "p.jsonl").read_text().splitlines()[0])["label"] == 1.0


def test_model_card_carries_counts_command_and_metrics(tmp_path):
    from bench.recipes.rerank import write_reranker_card

    meta = {"layers": 2, "pairs": 6, "counts": {"scifact-ict": {"pos": 2, "neg": 2}, "hotpotqa": {"pos": 1, "neg": 1}},
            "lr": 5e-5, "batch_size": 32, "max_length": 128, "epochs": 2, "seed": 13, "date": "2026-11-30",
            "hardware": "x86_64, CPU", "steps_done": 1, "steps_planned": 1, "pairs_seen": 6, "train_wall": "10 s"}
    report = {"queries": 300, "depth": 100, "max_length": 128, "metrics": {"bm25": {"ndcg@10": 0.6765}, "specialist": {"ndcg@10": 0.7}}}
    card = write_reranker_card(tmp_path, meta, "ragfix train reranker --layers 2", {"eval": report}, {"eval": "ragfix train eval-reranker"}).read_text()
    assert "format version 1" in card and "ragfix train reranker --layers 2" in card
    assert "| scifact-ict | 2 | 2 |" in card and "6 pairs: 3 positive, 3 negative" in card
    assert "| bm25 | 0.6765 |" in card and "the first two layers" in card


def test_label_free_card_lists_only_its_sources_and_says_no_qrel_was_used(tmp_path):
    from bench.recipes.rerank import write_reranker_card

    meta = {"layers": 6, "pairs": 4, "counts": {"scifact-ict": {"pos": 1, "neg": 1}, "hotpotqa": {"pos": 1, "neg": 1}},
            "lr": 5e-5, "batch_size": 16, "max_length": 128, "epochs": 1, "seed": 13, "date": "2026-12-02",
            "hardware": "x86_64, CPU", "steps_done": 1, "steps_planned": 1, "pairs_seen": 4, "train_wall": "1 s",
            "train_qrels": False}
    card = write_reranker_card(tmp_path, meta, "ragfix train reranker --no-train-qrels").read_text()
    assert "- scifact-ict:" in card and "- hotpotqa:" in card
    assert "- scifact-train:" not in card and "- nq-oracle:" not in card and "--no-train-qrels" in card


@needs_scifact
def test_no_train_qrels_leaves_out_every_scifact_qrel_pair():
    pairs = build_training_pairs(seed=13, ict_queries=50, hotpot_queries=0, nq_queries=0, train_qrels=False)
    assert pairs and {p.source for p in pairs} == {"scifact-ict"}
    train = load_beir(SCIFACT, "train")
    claims = {_norm(t) for t in train.queries.values()}
    assert not [p for p in pairs if _norm(p.query) in claims]


@needs_scifact
def test_candidate_groups_are_first_stage_samples_without_test_queries():
    from data.rerank_pairs import candidate_groups, drop_test_queries

    pairs = drop_test_queries(candidate_groups(SCIFACT, per_query=6, depth=30, ict_queries=20, seed=3), SCIFACT)
    groups: dict[str, list[TrainPair]] = {}
    for p in pairs:
        groups.setdefault(p.qid, []).append(p)
    train, test = load_beir(SCIFACT, "train"), load_beir(SCIFACT, "test")
    banned = {_norm(t) for t in test.queries.values()}
    # every train claim is a group, except the few that repeat a test claim verbatim (dropped)
    kept = [q for q, t in train.queries.items() if _norm(t) not in banned]
    assert len(kept) < len(train.queries)
    assert len([q for q in groups if q.startswith("scifact-train:")]) == len(kept)
    assert len([q for q in groups if q.startswith("ict:")]) == 20
    assert all(len(g) == 6 and len({p.passage for p in g}) == 6 for g in groups.values())
    check_no_test_leak(pairs, test.queries)
    # labels mark the judged positives that BM25 retrieved, and only those
    assert 0 < sum(p.label for p in pairs if p.source == "scifact-train") < len(train.queries) * 6
    with pytest.raises(ValueError, match="test"):
        candidate_groups(SCIFACT, split="test")
    with pytest.raises(ValueError, match="per_query"):
        candidate_groups(SCIFACT, per_query=50, depth=10)


def test_hybrid_miner_surfaces_the_semantic_neighbour_bm25_misses():
    # The rerank stage sees the hybrid top 100, where the dense half brings abstracts that share meaning
    # but no words with the query; `--miner hybrid` must mine its negatives there, not from BM25 alone.
    from data.rerank_pairs import _ranked
    from retrieval.types import Document

    texts = ["Myocardial infarction incidence rose among smokers over ten years.",
             "The attack on the castle was repelled at dawn.",
             "Heart-shaped leaves grow on the vine in spring.",
             "Rainfall totals in the valley doubled this decade.",
             "The orchestra tuned before the concert began.",
             "Glacier retreat exposed ancient pollen layers."]
    docs = [Document(f"d{i}", t) for i, t in enumerate(texts)]
    query = ["heart attack"]
    bm25 = [int(i) for i in _ranked(docs, query, 3, "bm25")[0] if i >= 0]
    hybrid = [int(i) for i in _ranked(docs, query, 3, "hybrid")[0] if i >= 0]
    assert 0 not in bm25  # no shared word: BM25 never returns it
    assert 0 in hybrid[:3]


def test_unknown_miner_is_refused_before_any_index_is_built():
    with pytest.raises(ValueError, match="negative miner must be one of bm25, hybrid; got 'dense'"):
        build_training_pairs(seed=13, ict_queries=0, hotpot_queries=0, nq_queries=0, miner="dense")


def test_fusion_probe_holds_out_exactly_the_hotpot_questions_training_drew():
    # bench.probes.probe_fusion checks the stage's fusion on HotpotQA questions the reranker never saw; its
    # held-out list must be rebuilt from the same draw data.rerank_pairs.hotpotqa_pairs makes.
    from data import load_halueval_qa
    from bench.probes.probe_fusion import held_out_hotpot_queries
    from data.rerank_pairs import hotpotqa_pairs

    ds = load_halueval_qa()
    trained = {p.query for p in hotpotqa_pairs(40, n_neg=1, seed=21)}
    held = held_out_hotpot_queries(list(ds.queries), samples=((21, 40),))
    assert len(held) == len(ds.queries) - 40
    held_text = {ds.queries[q] for q in held}
    assert len(trained) == 40 and not trained & held_text
