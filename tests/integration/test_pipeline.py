"""End to end on real models: SmolLM2 answers from a passage; the pipeline retrieves, times and cites."""
import pytest

from bench.datasets import load_halueval_qa
from bench.pipeline import Pipeline
from bench.registry import load_llm
from generate.prompt import build_messages
from retrieval import BM25Retriever, Document

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def llm():
    return load_llm("smollm2")


def test_smollm2_answers_from_the_passage(llm):
    passage = Document("nobel", "The first Nobel Prize in Physics was awarded in 1901 to Wilhelm Conrad Röntgen, of Germany.")
    gen = llm.generate(build_messages("Who got the first Nobel Prize in Physics?", [passage]), max_new_tokens=32)
    assert "Röntgen" in gen.text or "Roentgen" in gen.text, gen.text
    assert gen.prompt_tokens == len(llm.encode_prompt(build_messages("Who got the first Nobel Prize in Physics?", [passage])))
    assert 0 < gen.completion_tokens <= 32
    assert gen.prefill_s > 0 and gen.decode_s >= 0


def test_prompt_over_context_is_refused(llm):
    small = type(llm).__new__(type(llm))
    small.__dict__.update(llm.__dict__, max_context=16)
    with pytest.raises(ValueError, match="over max_context=16"):
        small.generate(build_messages("q?", [Document("d", "word " * 50)]))


def test_pipeline_retrieves_times_and_answers(llm):
    ds = load_halueval_qa(limit=300)
    pipe = Pipeline(BM25Retriever(), llm, retrieve_k=10, context_k=3, max_new_tokens=24).index(ds.corpus)
    qids = list(ds.queries)[:4]
    hits = 0
    for q in qids:
        r = pipe.run(ds.queries[q])
        assert [t.stage for t in r.timings] == ["retrieve", "generate"]
        assert r.timing("retrieve").counts["candidates"] == 10
        assert r.timing("generate").counts["prompt_tokens"] == r.generation.prompt_tokens > 0
        assert r.answer
        assert all(t.wall_s >= 0 and t.cpu_s >= 0 for t in r.timings)
        hits += next(iter(ds.qrels[q])) in {p.id for p in r.passages}
    assert hits >= 3  # BM25 puts the gold passage in the context for most HaluEval questions
    with pytest.raises(ValueError, match="query is empty"):
        pipe.run("  ")
