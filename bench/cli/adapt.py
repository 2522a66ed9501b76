"""``ragfix adapt embedder``: adapt a bi-encoder to a corpus without human labels (Embedding Plateau, VI).

Data, all from the folder given (BEIR layout; only ``corpus.jsonl`` is required):

- **pseudo-queries**: inverse-cloze sentences of the corpus (:func:`data.rerank_pairs._ict_sentences`:
  one sentence of a document is the query, the rest of that document is its positive), plus,
  optionally, a **query log**: the texts of the ``--query-log-split`` queries (e.g. SciFact's
  *train* claims; their qrels are never read for training, only which query ids belong to the
  split). A query-log query has no known positive: the teacher's best candidate plays that part.
- **hard negatives**: each query's BM25 and base-embedder top ``--depth`` (GPL mines from two
  dense retrievers; here lexical + the base model), sampled.
- **margins**: the teacher cross-encoder's logits for every (query, passage) (``--teacher``,
  bf16 autocast where the CPU has it natively), cached in the work folder keyed by content.

Recipes (:mod:`retrieval.adapt`): ``gpl`` (MarginMSE to the teacher's margins) or ``ict`` (the
cheaper baseline: in-batch-negatives contrastive on the ICT pairs, no teacher). The adapted model
is written with fp16 weights to ``--out`` with a ``MODEL_CARD.md`` (data, recipe, command, run stats).

No test query is used: when the folder has ``qrels/test.tsv``, every pseudo-query whose text equals
a test query (normalised) is dropped and :func:`rerank.train.check_no_test_leak` re-checks the
final set; ``--query-log-split test`` is refused.

Failure modes: a folder without ``corpus.jsonl`` or with an empty corpus -> :class:`data.DatasetError`
(exit 2); an unknown ``--base`` / ``--teacher`` -> :class:`registry.UnknownModelError` (exit 2).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from bench.cli.argtypes import positive_int

__all__ = ["PseudoQuery", "pseudo_queries", "mine_candidates", "build_groups", "add_parser"]


class PseudoQuery(NamedTuple):
    """A training query: ``positive`` is the index of its source document (-1 for a query-log query)."""

    qid: str
    text: str
    positive: int
    positive_text: str


def pseudo_queries(folder: Path | str, n_ict: int, query_log_split: str | None = None, seed: int = 13,
                   log=print) -> tuple[list, list[PseudoQuery]]:
    """(corpus, pseudo-queries) of ``folder``: ``n_ict`` inverse-cloze sentences plus the query-log texts.

    Drops any query whose normalised text equals a test query of the folder, then re-checks.
    """
    from data import DatasetError, load_beir, load_documents_jsonl
    from data.rerank_pairs import _ict_sentences
    from rerank.train import TrainPair, _norm, check_no_test_leak

    folder = Path(folder)
    if not (folder / "corpus.jsonl").is_file():
        raise DatasetError(f"{folder}: no corpus.jsonl; adapt needs the documents (one JSON line each with _id and text)")
    if query_log_split == "test":
        raise ValueError("--query-log-split test refused: test queries are for evaluation only; use train (or none)")
    corpus = load_documents_jsonl(folder / "corpus.jsonl")
    queries = [PseudoQuery(f"ict:{corpus[i].id}", sent, i, rest)
               for i, sent, rest in _ict_sentences(corpus, n_ict, random.Random(seed))]
    if query_log_split:
        log_ds = load_beir(folder, query_log_split)
        queries += [PseudoQuery(f"log-{query_log_split}:{q}", t, -1, "") for q, t in sorted(log_ds.queries.items())]
    if (folder / "qrels" / "test.tsv").is_file():
        test = load_beir(folder, "test").queries
        banned = {_norm(t) for t in test.values()}
        before = len(queries)
        queries = [q for q in queries if _norm(q.text) not in banned]
        if before != len(queries):
            log(f"dropped {before - len(queries)} pseudo-queries whose text equals a test query")
        check_no_test_leak([TrainPair(q.text, "-", 0.0, "adapt", q.qid) for q in queries], test)
        ids = {f"log-{query_log_split}:{t}" for t in test}
        clash = [q.qid for q in queries if q.qid in ids]
        if clash:
            raise ValueError(f"query log carries test query ids {clash[:3]}; the split {query_log_split!r} overlaps test")
    if not queries:
        raise DatasetError(f"{folder}: no pseudo-queries (documents need >= 3 sentences of 6-40 words, or give a query log)")
    return corpus, queries


def mine_candidates(corpus: Sequence, queries: Sequence[PseudoQuery], base=None, depth: int = 30,
                    cache_dir: Path | None = None) -> dict[str, np.ndarray]:
    """Each query's top ``depth`` document indices by BM25 and (when ``base`` is an embedder) by it."""
    from retrieval.cache import EmbeddingCache
    from retrieval.retrievers import BM25Retriever, DenseRetriever

    texts = [q.text for q in queries]
    out = {"bm25": BM25Retriever().index(corpus).search(texts, depth).indices}
    if base is not None:
        dense = DenseRetriever(base, cache=EmbeddingCache(cache_dir) if cache_dir else None).index(corpus)
        out["dense"] = dense.search(texts, depth).indices
    return out


def build_groups(corpus: Sequence, queries: Sequence[PseudoQuery], ranked: dict[str, np.ndarray], n_neg: int = 4,
                 seed: int = 13) -> list[tuple[PseudoQuery, list[int]]]:
    """(query, candidate document indices) per query: negatives drawn alternately from each miner's list.

    For an ICT query the source document is excluded (its positive is the rest of that document);
    a query-log query gets ``n_neg + 1`` candidates, the teacher later picks its positive.
    """
    rng = random.Random(seed)
    out = []
    for row, q in enumerate(queries):
        want = n_neg + (1 if q.positive < 0 else 0)
        pools = [[int(d) for d in r[row] if d >= 0 and int(d) != q.positive] for r in ranked.values()]
        for p in pools:
            rng.shuffle(p)
        chosen: list[int] = []
        while len(chosen) < want and any(pools):
            for p in pools:
                while p and p[0] in chosen:
                    p.pop(0)
                if p and len(chosen) < want:
                    chosen.append(p.pop(0))
        if len(chosen) == want:
            out.append((q, chosen))
    return out


def _pair_key(a: str, b: str) -> str:
    return hashlib.sha256(a.encode() + b"\x00" + b.encode()).hexdigest()[:20]


def _teacher_cached(work: Path, teacher_name: str, pairs: list[tuple[str, str]], batch_size: int, max_length: int,
                    log) -> np.ndarray:
    """Teacher logits per pair, cached pair by pair in ``work/teacher-<fingerprint>-<max_length>.jsonl``.

    Appended after every chunk, so a killed scoring run resumes where it stopped and a run with more
    pseudo-queries scores only the new pairs.
    """
    from registry import load_cross_encoder, model_fingerprint
    from retrieval.adapt import native_bf16, teacher_logits

    path = work / f"teacher-{model_fingerprint(teacher_name, 'cross-encoder')}-{max_length}.jsonl"
    known: dict[str, float] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                k, v = json.loads(line)
                known[k] = float(v)
            except (ValueError, TypeError):
                continue  # a line cut by a kill: that pair is scored again
    keys = [_pair_key(a, b) for a, b in pairs]
    todo = sorted({k: i for i, k in enumerate(keys) if k not in known}.values())
    log(f"teacher: {len(pairs) - len(todo)} pairs cached, {len(todo)} to score (bf16 native: {native_bf16()})")
    if todo:
        ce = load_cross_encoder(teacher_name, max_length=max_length).model
        t0 = time.monotonic()
        chunk = 512
        with open(path, "a") as fh:
            for c in range(0, len(todo), chunk):
                part = todo[c:c + chunk]
                s = teacher_logits(ce, [pairs[i] for i in part], batch_size=batch_size, bf16="auto")
                for i, v in zip(part, s):
                    known[keys[i]] = float(v)
                    fh.write(json.dumps([keys[i], float(v)]) + "\n")
                fh.flush()
                done = min(c + chunk, len(todo))
                log(f"teacher {done}/{len(todo)} pairs ({(time.monotonic() - t0) / 60:.1f} min)")
    return np.array([known[k] for k in keys], dtype=np.float32)


def _card(out: Path, args: argparse.Namespace, stats: dict, data_stats: dict, command: str) -> None:
    lines = [f"# {out.name}", "", f"A {args.base} bi-encoder adapted to `{args.data}` without human labels "
             f"(recipe `{args.recipe}`), written by `ragfix adapt embedder`.", "", "## Command", "", "```",
             command, "```", "", "## Data", ""]
    lines += [f"- {k}: {v}" for k, v in data_stats.items()]
    lines += ["", "No test query or test qrel was used for training: pseudo-queries equal to a test query are dropped and "
              "re-checked (`rerank.train.check_no_test_leak`).", "", "## Recipe", ""]
    if args.recipe == "gpl":
        lines += [f"GPL-style MarginMSE: teacher `{args.teacher}` logits for each (query, positive, {args.n_neg} negatives) "
                  "group; student score = learned scale x cosine; MSE between student and teacher margins "
                  "(`retrieval.adapt.train_margin_mse`)."]
    else:
        lines += ["ICT in-batch-negatives contrastive (MultipleNegativesRankingLoss objective, scale 20; "
                  "`retrieval.adapt.train_in_batch`); no teacher."]
    lines += [f"batch {args.batch_size}, lr {args.lr}, warm-up {args.warmup} steps then constant, AdamW, clip 1.0, "
              f"seed {args.seed}; weights saved fp16 (loaded as fp32).", "", "## Run", "", "```json",
              json.dumps(stats, indent=2), "```", "", "## Metrics", "",
              "See docs/embedding-plateau.md and results/adapt_scifact.md (SciFact test, measured after training, "
              "never used to choose anything during it).", ""]
    (out / "MODEL_CARD.md").write_text("\n".join(lines))


def _cmd(args: argparse.Namespace) -> int:
    import torch

    from registry import load_embedder, _registry
    from retrieval.adapt import MarginGroup, save_fp16_embedder, train_in_batch, train_margin_mse

    log = lambda m: print(m, flush=True)  # noqa: E731
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    t_start = time.monotonic()
    if not (Path(args.data) / "corpus.jsonl").is_file():  # before any model loads
        from data import DatasetError

        raise DatasetError(f"{args.data}: no corpus.jsonl; adapt needs the documents (one JSON line each with _id and text)")
    work = Path(args.work) if args.work else Path("runs") / f"adapt-{out.name}"
    base = load_embedder(args.base)  # fails early (exit 2) on an unknown name
    if args.recipe == "gpl":
        _registry(None).resolve(args.teacher, "cross-encoder")
    full_len = base.model.max_seq_length
    work.mkdir(parents=True, exist_ok=True)
    corpus, queries = pseudo_queries(args.data, args.ict_queries, args.query_log_split, args.seed, log)
    n_log = sum(q.positive < 0 for q in queries)
    log(f"{len(corpus)} documents, {len(queries)} pseudo-queries ({len(queries) - n_log} ICT, {n_log} query log)")
    texts = [d.full_text() for d in corpus]
    data_stats = {"documents": len(corpus), "ict_queries": len(queries) - n_log,
                  "query_log": f"{n_log} texts of split {args.query_log_split!r} (qrels unused)" if n_log else "none"}
    if args.recipe == "ict":
        pairs = [(q.text, q.positive_text) for q in queries if q.positive >= 0]
        data_stats["pairs"] = len(pairs)
        base.model.max_seq_length = args.train_max_length
        stats = train_in_batch(base.model, pairs, work, batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup,
                               max_steps=args.max_steps, max_minutes=args.max_minutes, seed=args.seed, resume=args.resume,
                               log=log)
    else:
        ranked = mine_candidates(corpus, queries, base, depth=args.depth)
        groups_idx = build_groups(corpus, queries, ranked, n_neg=args.n_neg, seed=args.seed)
        pairs: list[tuple[str, str]] = []
        for q, docs in groups_idx:
            if q.positive >= 0:
                pairs.append((q.text, q.positive_text))
            pairs += [(q.text, texts[d]) for d in docs]
        log(f"{len(groups_idx)} groups, {len(pairs)} teacher pairs")
        scores = _teacher_cached(work, args.teacher, pairs, args.teacher_batch, args.teacher_max_length, log)
        groups: list[MarginGroup] = []
        i = 0
        for q, docs in groups_idx:
            if q.positive >= 0:
                ps, ss = [q.positive_text] + [texts[d] for d in docs], scores[i:i + 1 + len(docs)]
            else:  # query log: the teacher's best candidate is the positive
                ss = scores[i:i + len(docs)]
                order = np.argsort(-ss, kind="stable")
                ps, ss = [texts[docs[j]] for j in order], ss[order]
            i += len(ps)
            groups.append(MarginGroup(q.text, tuple(ps), tuple(float(s) for s in ss), q.qid))
        data_stats.update({"groups": len(groups), "passages_per_group": args.n_neg + 1, "teacher": args.teacher,
                           "teacher_pairs": len(pairs), "negatives": f"BM25 and {args.base} top {args.depth}, alternating"})
        base.model.max_seq_length = args.train_max_length
        stats = train_margin_mse(base.model, groups, work, batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup,
                                 max_steps=args.max_steps, max_minutes=args.max_minutes, seed=args.seed,
                                 resume=args.resume, log=log)
    base.model.max_seq_length = full_len
    stats["wall_minutes_total"] = round((time.monotonic() - t_start) / 60, 2)
    save_fp16_embedder(base.model, out)
    command = "ragfix " + " ".join(sys.argv[1:]) if sys.argv and "adapt" in sys.argv else f"ragfix adapt embedder {vars(args)}"
    _card(out, args, stats, data_stats, command)
    (work / "stats.json").write_text(json.dumps({"stats": stats, "data": data_stats}, indent=2) + "\n")
    log(json.dumps(stats))
    log(f"wrote {out}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    from bench.cli.argtypes import positive_float

    p = sub.add_parser("adapt", help="adapt a model to a corpus without labels (VI)")
    s = p.add_subparsers(dest="adapt_command", required=True)
    e = s.add_parser("embedder", help="GPL-style MarginMSE (or ICT in-batch) adaptation of a bi-encoder")
    e.add_argument("--data", required=True, type=Path, help="folder with corpus.jsonl (BEIR layout)")
    e.add_argument("--base", default="minilm", help="embedder to adapt (registry name or folder)")
    e.add_argument("--teacher", default="reranker-l6", help="cross-encoder whose margins the student learns (gpl)")
    e.add_argument("--out", required=True, type=Path, help="output folder, e.g. models/minilm-scifact-gpl")
    e.add_argument("--recipe", choices=("gpl", "ict"), default="gpl")
    e.add_argument("--ict-queries", type=positive_int, default=3000, help="inverse-cloze pseudo-queries")
    e.add_argument("--query-log-split", default=None, help="also use this split's query texts (never their qrels); not test")
    e.add_argument("--n-neg", type=positive_int, default=4, help="negatives per pseudo-query (gpl)")
    e.add_argument("--depth", type=positive_int, default=30, help="mining depth per miner")
    e.add_argument("--batch-size", type=positive_int, default=16)
    e.add_argument("--teacher-batch", type=positive_int, default=32)
    e.add_argument("--teacher-max-length", type=positive_int, default=128, help="teacher tokens per pair (reranker-l6 was trained at 128)")
    e.add_argument("--train-max-length", type=positive_int, default=128, help="student tokens per text while training")
    e.add_argument("--lr", type=positive_float, default=2e-5)
    e.add_argument("--warmup", type=positive_int, default=100)
    e.add_argument("--max-steps", type=positive_int, default=None)
    e.add_argument("--max-minutes", type=positive_float, default=None, help="training time budget (over resumes)")
    e.add_argument("--resume", action="store_true", help="continue from <work>/checkpoint")
    e.add_argument("--work", type=Path, default=None, help="checkpoints, logs, teacher cache (default runs/adapt-NAME)")
    e.add_argument("--threads", type=positive_int, default=None)
    e.add_argument("--seed", type=int, default=13)
    e.set_defaults(func=_check_then_run)


def _check_then_run(args: argparse.Namespace) -> int:
    if args.max_steps is None and args.max_minutes is None:
        raise ValueError("give --max-steps or --max-minutes: adaptation needs a budget")
    return _cmd(args)
