"""RULER's QA tasks on files you supply: ``qa_1`` (SQuAD format), ``qa_2`` (HotpotQA format). No download.

Follows NVIDIA/RULER ``scripts/data/synthetic/qa.py`` with the template and answer prefix (`` Answer:``)
of its ``constants.py``. A sample asks one question over its gold document(s) plus as many distractor
documents as fit: first the other paragraphs of the question's own SQuAD article (RULER's
``more_context``), then any other document, each group in seeded order; shuffled and numbered
``Document 1:`` ... The score is RULER's string-match-part: 1 when any accepted answer appears in the reply.

Files: SQuAD v1/v2 JSON (``{"data": [{"paragraphs": [{"context", "qas": [{"question", "answers":
[{"text"}]}]}]}]}``; unanswerable v2 questions are skipped) or HotpotQA JSON (a list of ``{"question",
"answer", "context": [[title, [sentence, ...]], ...]}``, or the same records in Hugging Face ``hotpot_qa``'s layout,
``"context": {"title": [...], "sentences": [...]}``; every listed paragraph counts as gold, as in RULER).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from eval_longbench.ruler.base import GenContext, RulerTask, Sample, fit_count, task_rng
from longctx.core.errors import LongctxError

TEMPLATE = ("Answer the question based on the given documents. Only give me the answer and do not output any other "
            "words.\n\nThe following are given documents.\n\n{context}\n\nAnswer the question based on the given "
            "documents. Only give me the answer and do not output any other words.\n\nQuestion: {query}")
ANSWER_PREFIX = " Answer:"


@dataclass(frozen=True)
class QASet:
    questions: list[dict]
    """``{"question": str, "answers": [str], "gold": [doc index], "near": [doc index]}``; ``near``: the other
    paragraphs of a SQuAD question's article, the distractors RULER takes first."""
    docs: list[str]


def load_qa(path: str | Path, fmt: str) -> QASet:
    """Read a SQuAD (``fmt="squad"``) or HotpotQA (``"hotpotqa"``) file; one-line errors name the record."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LongctxError(f"{path}: cannot read as JSON ({e})") from None
    docs: dict[str, int] = {}
    questions = []

    def doc(text: str) -> int:
        return docs.setdefault(text.strip(), len(docs))

    if fmt == "squad":
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise LongctxError(f"{path}: data: missing; not a SQuAD file (expected {{\"data\": [...]}})")
        for i, art in enumerate(data["data"]):
            paras = art.get("paragraphs", []) if isinstance(art, dict) else []
            for j, para in enumerate(paras):
                if not isinstance(para, dict) or not isinstance(para.get("context"), str):
                    raise LongctxError(f"{path}: data[{i}].paragraphs[{j}].context: missing or not text")
            article = [doc(para["context"]) for para in paras]
            for j, para in enumerate(paras):
                where = f"{path}: data[{i}].paragraphs[{j}]"
                d = article[j]
                for q in para.get("qas", []):
                    answers = [a.get("text") for a in q.get("answers", []) if isinstance(a, dict) and a.get("text")]
                    if q.get("is_impossible") or not answers:
                        continue
                    if not isinstance(q.get("question"), str):
                        raise LongctxError(f"{where}.qas: a question is missing or not text")
                    questions.append({"question": q["question"], "answers": list(dict.fromkeys(answers)), "gold": [d],
                                      "near": [x for x in dict.fromkeys(article) if x != d]})
    elif fmt == "hotpotqa":
        if not isinstance(data, list):
            raise LongctxError(f"{path}: not a HotpotQA file (expected a JSON list of records)")
        for i, r in enumerate(data):
            if not isinstance(r, dict) or not all(isinstance(r.get(k), str) for k in ("question", "answer")):
                raise LongctxError(f"{path}: record {i}: question/answer: missing or not text")
            try:
                gold = [doc(f"{title}\n{''.join(sents)}") for title, sents in _hotpot_paragraphs(r["context"])]
            except (KeyError, TypeError, ValueError):
                raise LongctxError(f"{path}: record {i}: context: expected [[title, [sentence, ...]], ...] "
                                   "or {\"title\": [...], \"sentences\": [[...], ...]}") from None
            questions.append({"question": r["question"], "answers": [r["answer"]], "gold": gold})
    else:
        raise ValueError(f"unknown QA format {fmt!r}")
    if not questions:
        raise LongctxError(f"{path}: no answerable questions")
    return QASet(questions, list(docs))


def _hotpot_paragraphs(context) -> list:
    """HotpotQA's own ``[[title, sentences], ...]``, or Hugging Face ``hotpot_qa``'s columns
    ``{"title": [...], "sentences": [...]}`` (the same paragraphs, zipped back), which copies of the dev set carry."""
    if isinstance(context, dict):
        titles, sents = context["title"], context["sentences"]
        if not isinstance(titles, list) or not isinstance(sents, list) or len(titles) != len(sents):
            raise ValueError("title and sentences differ in length")
        return list(zip(titles, sents))
    return context


def make_qa(fmt: str, name: str, ctx: GenContext, length: int, budget: int, seed: int) -> Sample:
    qa = ctx.qa.get(fmt)
    if qa is None:
        raise LongctxError(f"ruler task {name}: needs --{fmt}-file")
    rng = task_rng(name, seed)
    q = qa.questions[rng.randrange(len(qa.questions))]
    near = [i for i in q.get("near", []) if i not in q["gold"]]
    skip = set(q["gold"]) | set(near)
    rest = [i for i in range(len(qa.docs)) if i not in skip]
    rng.shuffle(near)
    rng.shuffle(rest)
    others = near + rest
    order_seed = rng.random()

    def build(n: int) -> tuple[str, list[str]]:
        picked = list(q["gold"]) + others[:n]
        task_rng(f"{name}:order:{order_seed}", n).shuffle(picked)
        context = "\n\n".join(f"Document {i + 1}:\n{qa.docs[d]}" for i, d in enumerate(picked))
        return ctx.render(TEMPLATE.format(context=context, query=q["question"]), ANSWER_PREFIX), picked

    prompt, picked, _, tokens = fit_count(ctx, budget, build, low=0, guess=min(len(others), 8), high=len(others))
    return Sample(prompt, q["answers"], tokens, {"question": q["question"], "documents": len(picked)})


TASKS = [
    RulerTask("qa_1", "qa", functools.partial(make_qa, "squad", "qa_1"), metric="part", max_new_tokens=32,
              params={"dataset": "squad"}, needs="squad"),
    RulerTask("qa_2", "qa", functools.partial(make_qa, "hotpotqa", "qa_2"), metric="part", max_new_tokens=32,
              params={"dataset": "hotpotqa"}, needs="hotpotqa"),
]
