"""rerank.windows: a document scored by its best window, each window led by the title."""
import numpy as np
import pytest

from rerank.cross_encoder import PairRanker
from rerank.windows import WindowedRanker, word_windows
from retrieval.types import Document


class Overlap(PairRanker):
    """Query words found in the text: a fixed function, enough to check the max-over-windows plumbing."""

    def __init__(self):
        self.seen = []

    def score_pairs(self, pairs):
        self.seen.extend(pairs)
        return np.array([len(set(q.split()) & set(t.split())) for q, t in pairs], dtype=float)


def test_windows_cover_every_word_and_end_at_the_last():
    text = " ".join(f"w{i}" for i in range(10))
    ws = word_windows(text, 4, 3)
    assert ws == ["w0 w1 w2 w3", "w3 w4 w5 w6", "w6 w7 w8 w9"]
    assert word_windows(" ".join(f"w{i}" for i in range(11)), 4, 3)[-1] == "w7 w8 w9 w10"  # ragged tail kept
    assert word_windows("a b", 4, 2, title="T") == ["T a b"]
    assert word_windows("", 4, 2, title="T") == ["T"]
    assert len(word_windows(text, 4, 1, max_windows=2)) == 2


def test_late_evidence_is_found_and_counted():
    inner = Overlap()
    r = WindowedRanker(inner, window_words=8, stride_words=4)
    doc = Document("d", " ".join(["filler"] * 30) + " vitamin c prevents scurvy", title="Nutrition")
    first_window_only = inner.score_pairs([("vitamin c scurvy", " ".join(doc.full_text().split()[:9]))])[0]
    s = r.score_documents("vitamin c scurvy", [doc])
    assert first_window_only == 0 and s[0] == 3
    assert all(t.startswith("Nutrition ") for _, t in inner.seen[1:])  # the title leads every window
    assert r.docs_scored_ == 1 and r.windows_scored_ == len(inner.seen) - 1 > 1
    ranked = r.rank("vitamin c scurvy", [Document("x", "nothing here"), doc])
    assert ranked.documents[0].id == "d"


@pytest.mark.parametrize("kw, msg", [({"window_words": 4}, "window_words must be >= 8"),
                                     ({"stride_words": 0}, "need 0 < stride_words <= window_words"),
                                     ({"stride_words": 90}, "need 0 < stride_words <= window_words"),
                                     ({"max_windows": 0}, "max_windows must be >= 1")])
def test_bad_window_settings_are_refused(kw, msg):
    with pytest.raises(ValueError, match=msg):
        WindowedRanker(Overlap(), **kw)
