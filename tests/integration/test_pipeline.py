"""End to end on real models: SmolLM2 answers from a passage; the pipeline retrieves, times and cites."""
import pytest

from data import load_halueval_qa
from pipeline import Pipeline
from registry import load_llm
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


def test_prefix_reuse_gives_the_same_answer_and_the_same_loglik(llm):
    import torch

    passages = [Document(str(i), f"The {w} bridge over the river opened in {1850 + 7 * i}.") for i, w in enumerate(["old", "iron", "stone"])]
    msgs = build_messages("When did the iron bridge open?", passages, question_first=True)
    prefix = llm.prefill(llm.prompt_prefix(msgs))
    assert llm.encode_prompt(msgs)[: len(prefix.ids)] == prefix.ids  # the prefix is a true prefix of the prompt
    plain = llm.generate(msgs, max_new_tokens=12)
    reused = llm.generate(msgs, max_new_tokens=12, prefix=prefix)
    again = llm.generate(msgs, max_new_tokens=12, prefix=prefix)  # the stored prefix is not consumed
    assert plain.text == reused.text == again.text
    # a prefix that diverges part-way is cut to the common part, not trusted
    other = llm.prefill(llm.prompt_prefix(build_messages("When did the stone bridge open?", passages, question_first=True)))
    assert llm.generate(msgs, max_new_tokens=12, prefix=other).text == plain.text
    # teacher-forced log-likelihood: shared-prefill computation == one forward over prompt + answer
    gen, ll = llm.generate_and_score(msgs, " 1857", max_new_tokens=4)
    ids = llm.encode_prompt(msgs)
    cont = llm.tokenizer(" 1857", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logits = llm.model(input_ids=torch.tensor([ids + cont])).logits[0].float()
    lp = torch.log_softmax(logits[len(ids) - 1: -1], -1)
    assert ll == pytest.approx(float(lp[torch.arange(len(cont)), torch.tensor(cont)].sum()), abs=1e-3)
    assert gen.text == llm.generate(msgs, max_new_tokens=4).text


def test_batched_score_equals_one_by_one_with_padding(llm, tmp_path):
    """generate_and_score_many (the context-rot batch) == generate_and_score per prompt, also for padded rows;
    PromptCache answers a rerun without touching the model."""
    from generate.context_rot import PromptCache, _run_many

    passages = [f"The {w} bridge over the river opened in {1850 + 7 * i}." for i, w in enumerate(["old", "iron", "stone"])]
    placements = [passages, passages[::-1], passages[:1]]  # the last is shorter: it is left-padded in the batch
    msgs = [build_messages("When did the iron bridge open?", [Document(str(i), t) for i, t in enumerate(p)]) for p in placements]
    many = llm.generate_and_score_many(msgs, " 1857", max_new_tokens=6)
    for m, (gen, ll) in zip(msgs, many):
        one, ll1 = llm.generate_and_score(m, " 1857", max_new_tokens=6)
        assert gen.text == one.text and gen.prompt_tokens == one.prompt_tokens
        assert ll == pytest.approx(ll1, abs=1e-3)
    cache = PromptCache(tmp_path / "runs.sqlite", "tag")
    first = _run_many(llm, "When did the iron bridge open?", placements, "1857", 50, 6, cache)

    class Dead:  # a rerun must come from the cache alone
        def generate_and_score_many(self, *a, **k):
            raise AssertionError("the model was called although every prompt was cached")

    assert _run_many(Dead(), "When did the iron bridge open?", placements, "1857", 50, 6,
                     PromptCache(tmp_path / "runs.sqlite", "tag")) == first
    with pytest.raises(ValueError, match="prompts is empty"):
        llm.generate_and_score_many([], " x")


def test_pipeline_overlap_order_and_gate(llm):
    from generate.gate import FaithfulnessGate
    from registry import load_faithfulness

    ds = load_halueval_qa(limit=200)
    q = ds.queries[list(ds.queries)[0]]
    plain = Pipeline(BM25Retriever(), llm, retrieve_k=5, context_k=2, max_new_tokens=16).index(ds.corpus)
    fixed = Pipeline(BM25Retriever(), llm, retrieve_k=5, context_k=2, max_new_tokens=16, overlap_prefill=True,
                     order="reverse", gate=FaithfulnessGate(load_faithfulness()), gate_policy="extractive").index(ds.corpus)
    a, b = plain.run(q), fixed.run(q)
    assert [t.stage for t in b.timings] == ["retrieve", "prefix_wait", "generate", "gate"]
    assert b.timing("prefix_wait").counts["prefix_tokens"] > 10
    assert [p.id for p in b.passages] == [p.id for p in reversed(a.passages)]
    assert b.gate is not None and b.gate.verdict in ("supported", "unsupported", "contradicted", "abstained")
    assert 0 < b.ttft_s <= b.total_s + 1e-6
    fixed.close()
    with pytest.raises(ValueError, match="order must be one of"):
        Pipeline(BM25Retriever(), llm, order="middle")


def test_history_is_part_of_the_overlapped_prefix(llm):
    """The conversation so far is known before reranking ends: it is prefilled with the question, and the
    answer with the reused prefix equals the answer computed from scratch."""
    from data import load_halueval_dialogue_histories

    history = load_halueval_dialogue_histories(limit=1)[0]
    passages = [Document("a", "Robert Downey Jr. starred in Zodiac, a 2007 crime film directed by David Fincher.")]
    msgs = build_messages("Who directed Zodiac?", passages, question_first=True, history=history)
    assert [m["role"] for m in msgs] == ["system"] + [m["role"] for m in history] + ["user"]
    bare = llm.prompt_prefix(build_messages("Who directed Zodiac?", passages, question_first=True))
    prefix = llm.prefill(llm.prompt_prefix(msgs))
    assert len(prefix.ids) > len(bare) + 20  # the turns are in the prefix
    assert llm.encode_prompt(msgs)[: len(prefix.ids)] == prefix.ids
    assert llm.generate(msgs, max_new_tokens=10, prefix=prefix).text == llm.generate(msgs, max_new_tokens=10).text
    with pytest.raises(ValueError, match=r"history\[0\]"):
        build_messages("q?", passages, history=[{"role": "system", "content": "x"}])
