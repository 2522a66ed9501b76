"""Score a long document by its best passage window instead of its first 128 tokens.

Failure mode V / VIII context: a cross-encoder trained at ``max_length`` 128 sees a SciFact
abstract's title and first ~90 words; the claim is often supported by the *results* sentence near
the end, which truncation throws away while BM25 (which reads the whole abstract) keeps it.
:class:`WindowedRanker` splits the document into word windows (the title repeated in front of each),
scores every window with the wrapped ranker and keeps the maximum per document (BERT-MaxP,
Dai & Callan, SIGIR 2019). Every window is a forward pass, so the price is the window count:
``windows_scored_`` / ``docs_scored_`` is the cost multiplier, which
``ragfix train eval-reranker --windows W,S`` reports (``windows_per_doc``) beside the quality.

Measured by ``ragfix train eval-reranker --model reranker-l6 --windows 80,40`` (SciFact test; the
README's specialists section has the numbers).

Example::

    >>> from rerank.cross_encoder import PairRanker
    >>> class Overlap(PairRanker):
    ...     def score_pairs(self, pairs):
    ...         import numpy as np
    ...         return np.array([len(set(q.split()) & set(t.split())) for q, t in pairs], dtype=float)
    >>> r = WindowedRanker(Overlap(), window_words=8, stride_words=4)
    >>> r.score_pairs([("blue whale", "a b c d e f g h i j k blue whale")]).tolist()
    [2.0]
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from rerank.cross_encoder import PairRanker
from retrieval.types import Document

__all__ = ["WindowedRanker", "word_windows"]


def word_windows(text: str, window_words: int, stride_words: int, max_windows: int | None = None,
                 title: str = "") -> list[str]:
    """``text`` cut into windows of ``window_words`` words every ``stride_words`` words, ``title`` in front of each.

    The last window ends at the last word (no ragged tail shorter than the stride is lost); a text of
    at most ``window_words`` words is one window; an empty text is one window holding the title alone.
    """
    words = text.split()
    head = f"{title} " if title else ""
    if len(words) <= window_words:
        return [(head + " ".join(words)).strip()]
    starts = list(range(0, len(words) - window_words, stride_words)) + [len(words) - window_words]
    starts = list(dict.fromkeys(starts))
    if max_windows is not None:
        starts = starts[:max_windows]
    return [head + " ".join(words[s: s + window_words]) for s in starts]


class WindowedRanker(PairRanker):
    """Max over a document's word windows of the wrapped ranker's score.

    Args:
        ranker: any :class:`rerank.cross_encoder.PairRanker` (the fp32 reference, a ``RerankEngine``...).
        window_words: words per window; pick it so title + window + query fit the model's
            ``max_length`` (80 words is about 110 word pieces of biomedical text).
        stride_words: step between window starts (``window_words`` for no overlap).
        max_windows: cap on windows per document (the first ones), bounding the cost of a huge document.
    """

    def __init__(self, ranker: PairRanker, window_words: int = 80, stride_words: int = 40,
                 max_windows: int | None = None, name: str | None = None) -> None:
        if window_words < 8:
            raise ValueError(f"WindowedRanker: window_words must be >= 8, got {window_words}")
        if not 0 < stride_words <= window_words:
            raise ValueError(f"WindowedRanker: need 0 < stride_words <= window_words, got {stride_words} and {window_words}")
        if max_windows is not None and max_windows < 1:
            raise ValueError(f"WindowedRanker: max_windows must be >= 1 or None, got {max_windows}")
        self.ranker = ranker
        self.window_words, self.stride_words, self.max_windows = window_words, stride_words, max_windows
        self.name = name or f"{getattr(ranker, 'name', 'ranker')}+windows{window_words}/{stride_words}"
        self.docs_scored_ = 0
        self.windows_scored_ = 0

    def _score_segments(self, query_and_windows: Sequence[tuple[str, list[str]]]) -> np.ndarray:
        flat = [(q, w) for q, ws in query_and_windows for w in ws]
        scores = np.asarray(self.ranker.score_pairs(flat), dtype=np.float32) if flat else np.zeros(0, np.float32)
        starts = np.cumsum([0] + [len(ws) for _, ws in query_and_windows[:-1]])
        out = np.maximum.reduceat(scores, starts) if flat else np.zeros(0, np.float32)  # every document has >= 1 window
        self.docs_scored_ += len(query_and_windows)
        self.windows_scored_ += len(flat)
        return out

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Max window score per (query, text) pair; the text's first words get no special treatment."""
        return self._score_segments([(q, word_windows(t, self.window_words, self.stride_words, self.max_windows))
                                     for q, t in pairs])

    def score_documents(self, query: str, docs: Sequence[Document]) -> np.ndarray:
        """Max window score per document, each window led by the document's title."""
        return self._score_segments([(query, word_windows(d.text, self.window_words, self.stride_words,
                                                          self.max_windows, d.title)) for d in docs])
