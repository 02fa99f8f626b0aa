"""LongBench v2 (THUDM, arXiv 2412.15204): four-choice questions over long contexts, scored by accuracy.

Follows the official ``pred.py`` / ``result.py`` of github.com/THUDM/LongBench:

- **Prompt**: the zero-shot template (document in ``<text>`` tags, the question, choices (A)-(D), and
  "Format your response as follows: ..."), every field ``.strip()``-ed. With ``cot`` the model first
  reasons ("Let's think step by step:", :data:`COT_TOKENS` new tokens), then a second prompt
  without the document carries that reasoning and asks for the answer.
- **Truncation**: the whole prompt, in the model's tokens, keeps its first ``max_length // 2`` and
  last ``max_length - max_length // 2`` tokens (the official ``ids[:L//2] + ids[-L//2:]``).
- **Answer extraction**: ``*`` removed, then ``The correct answer is (X)``, else
  ``The correct answer is X``, X in A-D; anything else is no answer (wrong).
- **Report**: accuracy overall, by difficulty (easy / hard) and by length (short / medium / long).

Deviations, on purpose: decoding is greedy (the official script samples at temperature 0.1), so a
rerun gives the same numbers; an empty reply counts as a wrong answer (the official script, which
uses ``''`` to signal a failed API call, drops the item), while a request the server rejected or
never answered is listed as a failure, left out of the accuracy and retried by the next run.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from eval_longbench.chat_client import GenerationFailed, map_concurrent
from eval_longbench.longbench_chat import read_records, truncate_middle
from eval_longbench.models import GenerateFn
from eval_longbench.results import ResultStore
from longctx.core.errors import LongctxError, where

QUESTION_BLOCK = """What is the correct answer to this question: $Q$
Choices:
(A) $C_A$
(B) $C_B$
(C) $C_C$
(D) $C_D$"""

ANSWER_FORMAT = 'Format your response as follows: "The correct answer is (insert answer here)".'

TEMPLATE_0SHOT = ("Please read the following text and answer the question below.\n\n<text>\n$DOC$\n</text>\n\n"
                  + QUESTION_BLOCK + "\n\n" + ANSWER_FORMAT)
"""The official ``prompts/0shot.txt``."""

TEMPLATE_COT = ("Please read the following text and answer the questions below.\n\n<text>\n$DOC$\n</text>\n\n"
                + QUESTION_BLOCK + "\n\nLet\u2019s think step by step:")
"""The official ``prompts/0shot_cot.txt`` (its apostrophe is U+2019)."""

TEMPLATE_COT_ANSWER = ("Please read the following text and answer the questions below.\n\nThe text is too long and omitted here.\n\n"
                       + QUESTION_BLOCK + "\n\nLet\u2019s think step by step: $COT$\n\n"
                       "Based on the above, what is the single, most likely answer choice? " + ANSWER_FORMAT)
"""The official ``prompts/0shot_cot_ans.txt``: the reasoning goes in, the document stays out."""

ANSWER_TOKENS = 128
COT_TOKENS = 1024
"""New tokens for the answer and for the reasoning pass, as the official script."""

FIELDS = ("_id", "domain", "sub_domain", "difficulty", "length", "question",
          "choice_A", "choice_B", "choice_C", "choice_D", "answer", "context")
ALLOWED = {"difficulty": ("easy", "hard"), "length": ("short", "medium", "long"), "answer": ("A", "B", "C", "D")}

_PAREN = re.compile(r"The correct answer is \(([A-D])\)")
_BARE = re.compile(r"The correct answer is ([A-D])")


@dataclass
class V2Config:
    """What makes two runs' answers comparable (goes into the results file's meta)."""

    cot: bool = False
    max_length: int | None = None
    """Prompt tokens kept by middle truncation; ``None``: prompts are sent whole (no tokenizer)."""
    max_new_tokens: int = ANSWER_TOKENS
    cot_max_new_tokens: int = COT_TOKENS

    def __post_init__(self):
        if self.max_length is not None and self.max_length < 2:
            raise LongctxError(f"--max-length: must be at least 2, got {self.max_length}")
        if self.max_new_tokens < 1 or self.cot_max_new_tokens < 1:
            raise LongctxError("--max-new-tokens / --cot-max-new-tokens: must be at least 1")

    def meta(self) -> dict:
        m = {"task": "longbench-v2", **asdict(self)}
        if not self.cot:
            m.pop("cot_max_new_tokens")  # unused: changing it must not invalidate stored answers
        return m


def load_records(path: str | Path) -> list[dict]:
    """Records in the official format from a JSON list or JSONL file (the Hugging Face ``data.json``).

    Every field of :data:`FIELDS` must be a string; ``difficulty``, ``length`` and ``answer`` take
    the official values; ``_id`` is unique. Errors name the file, the record (JSONL line, or 1-based
    position in a JSON list) and the field.
    """
    path = Path(path)

    def official_values(n: int, rec: dict) -> None:
        for name, allowed in ALLOWED.items():
            if rec[name] not in allowed:
                raise LongctxError(f"{where(path, n, name)}: {rec[name]!r} is not one of {', '.join(allowed)}")
        if not rec["context"].strip():
            raise LongctxError(f"{where(path, n, 'context')}: empty; the question would be answered without its document")

    return read_records(path, dict.fromkeys(FIELDS, str), "_id", check=official_values)


def build_prompt(rec: dict, template: str = TEMPLATE_0SHOT, cot: str = "") -> str:
    """``template`` filled with the record's stripped fields (and the reasoning ``cot``), as the official script."""
    for mark, value in (("$DOC$", rec["context"]), ("$Q$", rec["question"]), ("$C_A$", rec["choice_A"]),
                        ("$C_B$", rec["choice_B"]), ("$C_C$", rec["choice_C"]), ("$C_D$", rec["choice_D"])):
        template = template.replace(mark, value.strip())
    return template.replace("$COT$", cot)


def extract_answer(response: str) -> str | None:
    """The chosen letter, by the official rule: ``*`` removed, then ``The correct answer is (X)``,
    else ``The correct answer is X`` (X in A-D, first match); ``None`` when neither appears."""
    response = response.replace("*", "")
    m = _PAREN.search(response) or _BARE.search(response)
    return m.group(1) if m else None


def fit_prompt(tokenizer, prompt: str, max_length: int | None) -> tuple[str, int | None, bool]:
    """``(prompt, its token count, whether it was cut)``: middle-truncated to ``max_length`` tokens."""
    if tokenizer is None or max_length is None:
        return prompt, None, False
    n = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    if n <= max_length:
        return prompt, n, False
    return truncate_middle(tokenizer, prompt, max_length), max_length, True


def answer_record(rec: dict, generate: GenerateFn, tokenizer, cfg: V2Config) -> dict:
    """Ask one question (two passes with ``cot``) and score it; what goes into the results file."""
    out = {k: rec[k] for k in ("_id", "domain", "sub_domain", "difficulty", "length", "answer")}
    if cfg.cot:
        prompt, n, cut = fit_prompt(tokenizer, build_prompt(rec, TEMPLATE_COT), cfg.max_length)
        reasoning = generate(prompt, cfg.cot_max_new_tokens).strip()
        out["response_cot"] = reasoning
        second, _, _ = fit_prompt(tokenizer, build_prompt(rec, TEMPLATE_COT_ANSWER, reasoning), cfg.max_length)
        response = generate(second, cfg.max_new_tokens).strip()
    else:
        prompt, n, cut = fit_prompt(tokenizer, build_prompt(rec), cfg.max_length)
        response = generate(prompt, cfg.max_new_tokens).strip()
    pred = extract_answer(response)
    return {**out, "prompt_tokens": n, "truncated": cut, "response": response, "pred": pred, "judge": pred == rec["answer"]}


def run_longbench_v2(records: Sequence[dict], generate: GenerateFn, tokenizer, cfg: V2Config, store: ResultStore, *,
                     concurrency: int = 1, progress: bool = True) -> None:
    """Answer every record not yet in ``store`` (key ``pred/<_id>``), saving each as it comes;
    a failed request goes to ``fail/<_id>`` (left out of the accuracy, retried by the next run)."""
    todo = {r["_id"]: r for r in records if f"pred/{r['_id']}" not in store}
    bar = tqdm(total=len(todo), desc="longbench-v2", disable=not progress or not todo)

    def ask(rec: dict):
        try:
            return answer_record(rec, generate, tokenizer, cfg)
        except GenerationFailed as e:
            return {"_id": rec["_id"], "error": str(e)}

    def save(key: str, result: dict) -> None:
        store.put_outcome("pred", key, result, failed="error" in result)
        bar.update(1)

    try:
        map_concurrent(ask, todo, save, concurrency=concurrency)
    finally:
        bar.close()


def _acc(rows: list[dict]) -> dict:
    right = sum(1 for r in rows if r["judge"])
    return {"n": len(rows), "correct": right, "accuracy": right / len(rows) if rows else None}


def report(records: Sequence[dict], store: ResultStore) -> dict:
    """Accuracy (0-1) overall, by difficulty and by length bucket, over the answered records; the
    records without an answer are listed under ``failures``."""
    done, failures = [], []
    for r in records:
        p = store.get(f"pred/{r['_id']}")
        if p is not None:
            done.append(p)
        else:
            f = store.get(f"fail/{r['_id']}") or {}
            failures.append({"_id": r["_id"], "error": f.get("error", "not answered")})
    return {
        "overall": _acc(done),
        "difficulty": {d: _acc([p for p in done if p["difficulty"] == d]) for d in ALLOWED["difficulty"]},
        "length": {b: _acc([p for p in done if p["length"] == b]) for b in ALLOWED["length"]},
        "no_answer_extracted": sum(1 for p in done if p["pred"] is None),
        "truncated": sum(1 for p in done if p.get("truncated")),
        "records": len(records), "answered": len(done), "failures": failures,
    }


def table_line(rep: dict) -> str:
    """``Overall Easy Hard Short Medium Long`` in percent, one decimal, as the official ``result.py``."""
    cells = [rep["overall"], *rep["difficulty"].values(), *rep["length"].values()]
    return "\t".join("n/a" if c["accuracy"] is None else f"{100 * c['accuracy']:.1f}" for c in cells)
