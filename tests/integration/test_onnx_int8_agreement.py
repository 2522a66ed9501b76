"""onnx-int8 against fp32 on the committed rerankers and real SciFact pairs: rank agreement, with bounds.

ONNX Runtime dynamic int8 (``rerank.backends``, ``onnx-int8``) is the backend of ``fastest`` and of
``best`` (model and pruner, ``rerank.presets``) and of ``ragfix bench pipeline``. It is only a fix
where it ranks as the fp32 reference does, so it is checked here on what it really sees: the BM25
top ``DEPTH`` of the first ``N_QUERIES`` SciFact test claims, with the committed reranker-l6 (the
model) and reranker-l2 (the pruner), per query against the fp32 engine on the same weights.

The bounds come from a measurement on exactly these pairs (this machine, onnxruntime 1.32.0, see
``MEASURED``), set below it by a margin that absorbs a different CPU's int8 kernels (VNNI vs AVX2
give slightly different rounding) but not a broken export or quantization: shuffled scores give a
mean top-10 overlap near ``10 / DEPTH`` and a Spearman near 0, a missing ``token_type_ids`` input
or an fp32 graph fed the wrong mask falls far below. They also record what int8 costs: the
measured mean top-10 overlap is 0.85 (l6) and 0.90 (l2), not 1.0, so int8 is a speed/quality
trade, and ``nDCG@10`` is allowed to drop by at most ``MAX_NDCG_DROP`` (measured in ``MEASURED``).

Cost: the export and the int8 quantization run from scratch into ``tmp_path`` every time, and the int8
engine scores every pair; the fp32 reference scores (about two thirds of the time) are kept in a
``PairScoreCache`` keyed on the weights' hash and the pair texts, in a ``warm_cache`` folder named by
a hash of ``FP32_SOURCES`` and the library versions, so edited engine code is never compared against
scores an older version produced.
"""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.integration

N_QUERIES, DEPTH = 20, 30
# Measured on these pairs (2-core x86_64 without VNNI-bf16, onnxruntime 1.32.0, torch 2.13.0), per model:
# mean and min per-query Spearman, mean and min top-10 overlap, nDCG@10 fp32 -> onnx-int8.
MEASURED = {
    "reranker-minilm-l6": {"spearman_mean": 0.919, "spearman_min": 0.736, "top10_mean": 0.845, "top10_min": 0.6,
                           "ndcg": (0.751, 0.765)},
    "reranker-minilm-l2": {"spearman_mean": 0.951, "spearman_min": 0.878, "top10_mean": 0.895, "top10_min": 0.7,
                           "ndcg": (0.480, 0.436)},
}
# (min mean Spearman, min per-query Spearman, min mean top-10 overlap): about 0.04 below each measured
# mean and 0.08 below each measured minimum. A random ranking would give a mean top-10 overlap near 0.33
# (10 of 30) and a Spearman near 0; the bounds fail long before that.
BOUNDS = {
    "reranker-minilm-l6": (0.88, 0.65, 0.80),
    "reranker-minilm-l2": (0.91, 0.80, 0.85),
}
# nDCG@10 may fall by at most this much under int8 (measured: l6 +0.014, l2 -0.044 over 20 queries,
# where one query moves nDCG@10 by up to 0.05).
MAX_NDCG_DROP = 0.08
# The code behind the cached fp32 reference scores (a change to any of them starts a fresh cache).
FP32_SOURCES = ("rerank/engine.py", "rerank/backends.py", "rerank/batching.py", "rerank/truncation.py",
                "rerank/cross_encoder.py", "rerank/meanpool.py")


@pytest.fixture(scope="module")
def scifact_pairs(data_root):
    from data import load_beir
    from retrieval.retrievers import BM25Retriever

    ds = load_beir(data_root / "scifact", "test").limit(N_QUERIES)
    qids = list(ds.queries)
    res = BM25Retriever().index(ds.corpus).search([ds.queries[q] for q in qids], DEPTH)
    lists = [[ds.corpus[int(j)] for j in res.indices[i] if j >= 0] for i in range(len(qids))]
    return ds, qids, lists


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_onnx_int8_ranks_as_fp32(name, scifact_pairs, tmp_path, warm_cache):
    pytest.importorskip("onnxruntime", reason="the onnx backends need: pip install onnxruntime==1.32.0")
    pytest.importorskip("onnx", reason="ONNX export needs: pip install onnx==1.23.2")
    from pathlib import Path

    from sentence_transformers import CrossEncoder

    import rerank.meanpool  # noqa: F401  (reranker-l2's mean-pool type)
    from bench.eval.metrics import evaluate
    from bench.eval.rerank import PairScoreCache, model_key
    from rerank.agreement import rank_agreement
    from rerank.engine import RerankEngine

    folder = Path(__file__).resolve().parents[2] / "models" / name
    if not (folder / "model.safetensors").is_file():
        pytest.skip(f"models/{name} not in this checkout")
    ds, qids, lists = scifact_pairs
    ce = CrossEncoder(str(folder), device="cpu")
    fp32, int8 = RerankEngine(ce, "fp32"), RerankEngine(ce, "onnx-int8", cache_dir=tmp_path / "onnx")
    ref = PairScoreCache(warm_cache("onnx-int8-fp32-reference", *FP32_SOURCES),
                         f"{model_key(folder)}-len{ce.max_length}-engine-fp32")
    spearman, overlap, run_fp32, run_int8 = [], [], {}, {}
    for q, docs in zip(qids, lists):
        pairs = [(ds.queries[q], d.full_text()) for d in docs]
        keys = [PairScoreCache.key(ds.queries[q], d.title, d.text) for d in docs]
        if not all(k in ref for k in keys):
            ref.add(list(zip(keys, (float(v) for v in fp32.score_pairs(pairs)))))
        a, b = np.array([ref[k] for k in keys], dtype=np.float32), int8.score_pairs(pairs)
        g = rank_agreement(a, b, k=10)
        spearman.append(g.spearman)
        overlap.append(g.topk_overlap)
        run_fp32[q] = {d.id: float(s) for d, s in zip(docs, a)}
        run_int8[q] = {d.id: float(s) for d, s in zip(docs, b)}
    nd_fp32 = evaluate(ds.qrels, run_fp32, ("ndcg@10",))["ndcg@10"]
    nd_int8 = evaluate(ds.qrels, run_int8, ("ndcg@10",))["ndcg@10"]
    got = (float(np.mean(spearman)), float(np.min(spearman)), float(np.mean(overlap)), nd_fp32, nd_int8)
    print(f"{name} onnx-int8 vs fp32 on {len(qids)} queries x BM25 top {DEPTH}: Spearman mean {got[0]:.3f} min {got[1]:.3f}, "
          f"top-10 overlap mean {got[2]:.3f}; nDCG@10 {nd_fp32:.4f} -> {nd_int8:.4f}")
    min_mean_sp, min_sp, min_overlap = BOUNDS[name]
    assert got[0] >= min_mean_sp, got
    assert got[1] >= min_sp, got
    assert got[2] >= min_overlap, got
    assert nd_int8 >= nd_fp32 - MAX_NDCG_DROP, got
