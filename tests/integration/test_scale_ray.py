"""A real local Ray cluster (started here, 2 CPUs, small object store, no dashboard): the Ray engine
gives the local engine's embeddings and scores, and a worker killed on its first batch is restarted
with every document in the output exactly once.

The corpus is the first 200 SciFact documents cut to their first 240 characters: what is tested is
the engine (batching, actors, restart, reassembly), and each actor's start (importing torch and
sentence-transformers, ~9 s) costs more than encoding full abstracts would add in checks. Full
abstracts run through the same code in ``ragfix index --engine ray`` (docs/scale-out.md)."""
from __future__ import annotations

import json

import numpy as np
import pytest

ray = pytest.importorskip("ray")

N_DOCS = 200
MAX_CHARS = 240


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, object_store_memory=300 * 1024 * 1024, include_dashboard=False, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def scifact_head(tmp_path_factory):
    from data import data_root, load_beir, load_documents_jsonl

    folder = tmp_path_factory.mktemp("corpus")
    with open(folder / "corpus.jsonl", "w") as fh:
        for d in load_beir(data_root() / "scifact").corpus[:N_DOCS]:
            fh.write(json.dumps({"_id": d.id, "title": d.title, "text": d.text[:MAX_CHARS]}) + "\n")
    return folder, load_documents_jsonl(folder / "corpus.jsonl")  # as `ragfix index` reads them


def test_ray_index_equals_local_with_a_killed_worker(cluster, scifact_head, tmp_path):
    from bench.cli.scale import run_index
    from scale import RayOptions

    folder, docs = scifact_head
    marker = tmp_path / "worker-killed"
    opts = RayOptions(workers=2, batch_rows=16, fail_once_marker=str(marker))
    out = run_index(folder, "minilm", "ray", opts, compare_local=True, cache_dir=tmp_path / "cache")
    assert marker.exists(), "the test hook never killed a worker: the retry path was not exercised"
    assert out["docs"] == N_DOCS and out["workers"] == 2 and not out["cache_hit"]
    assert out["max_abs_diff"] < 1e-5  # every row of the Ray matrix against run_index's own local encoding
    emb = np.load(out["cache_file"])  # what the cache holds is that Ray matrix, in corpus order
    from registry import load_embedder

    # run_index already encoded all N_DOCS locally for max_abs_diff; a spread of rows encoded here
    # (one in ten, first and last included) checks the cache file itself without a third full encoding.
    rows = np.unique(np.r_[np.arange(0, N_DOCS, 10), N_DOCS - 1])
    local = load_embedder("minilm").encode_documents([docs[i].full_text() for i in rows])
    assert emb.shape == (N_DOCS, local.shape[1])
    np.testing.assert_allclose(emb[rows], local, atol=1e-5)
    # row i is document i: among all N_DOCS cached rows, each sampled document's nearest one is its own
    assert (np.argmax(local @ emb.T, axis=1) == rows).all()


def test_ray_pair_scores_equal_local(cluster, scifact_head):
    from scale import RayOptions, score_pairs

    _folder, docs = scifact_head
    pairs = [(docs[i].title, docs[(i * 7) % N_DOCS].full_text()) for i in range(48)]
    ray_scores = score_pairs(pairs, "reranker-l6", engine="ray", options=RayOptions(workers=1, batch_rows=16))
    local = score_pairs(pairs, "reranker-l6", engine="local")
    assert ray_scores.shape == (48,)
    np.testing.assert_allclose(ray_scores, local, atol=1e-4)
