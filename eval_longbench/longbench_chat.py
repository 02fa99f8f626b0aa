"""LongBench-Chat (LongAlign): long-document questions answered by the model, rated 1-10 by a judge.

Two phases, each resumable from ``results.json``: (1) generate an answer per case through the
model's chat template after middle-truncating the prompt to ``max_length`` tokens (the benchmark
keeps the first and last halves: instructions sit at the start, the question at the end);
(2) rate each answer with a judge given the question, the reference answer and the case's three
scored few-shot examples. Failed ratings are listed, not cached, so a rerun tries them again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm import tqdm

from eval_longbench.judge import build_judge_prompt, rate_many
from eval_longbench.models import GenerateFn
from eval_longbench.results import ResultStore
from longctx.core.errors import LongctxError, where
from longctx.core.io import read_json, read_text

CASE_FIELDS = {"idx": int, "prompt": str, "query": str, "answer": str}


def _refuse_wrapped_list(path: Path, text: str) -> None:
    """Refuse a whole-file JSON object holding the records under a key (``{"data": [...]}``): read as
    JSON lines it would be one record missing every field, which says nothing about the real mistake."""
    if not text.lstrip().startswith("{"):
        return
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return  # JSON lines (or broken JSON: reported line by line)
    lists = [k for k, v in data.items() if isinstance(v, list)]
    if lists:
        raise LongctxError(f"{path}: a JSON object with key {lists[0]!r} (a list of {len(data[lists[0]])}); "
                           "expected a JSON list of records or JSON lines (one record per line)")


def read_json_or_jsonl(path: Path) -> list[tuple[int, object]]:
    """``[(record number, record)]`` of a JSON list (1-based position) or a JSONL file (line number)."""
    text = read_text(path, what="a JSON list or JSON lines file")
    if not text.strip():
        raise LongctxError(f"{path}: file is empty")
    _refuse_wrapped_list(path, text)
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise LongctxError(f"{where(path, e.lineno)}: invalid JSON ({e.msg})") from None
        return [(i + 1, rec) for i, rec in enumerate(data)]
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append((n, json.loads(line)))
        except json.JSONDecodeError as e:
            raise LongctxError(f"{where(path, n)}: invalid JSON ({e.msg})") from None
    return out


def check_record(path: Path, n: int, rec: object, fields: dict[str, type]) -> None:
    """One-line error naming file, record and field unless ``rec`` is an object holding every field
    of ``fields`` with its type (a bool is not an int)."""
    if not isinstance(rec, dict):
        raise LongctxError(f"{where(path, n)}: record is not an object")
    for name, typ in fields.items():
        if name not in rec:
            raise LongctxError(f"{where(path, n, name)}: missing")
        if not isinstance(rec[name], typ) or isinstance(rec[name], bool):
            raise LongctxError(f"{where(path, n, name)}: expected {typ.__name__}, got {type(rec[name]).__name__}")


def read_records(path: str | Path, fields: dict[str, type], key: str, *, what: str = "records",
                 check: Callable[[int, dict], None] | None = None) -> list[dict]:
    """The records of a JSON list or JSONL file, each checked by :func:`check_record` (and ``check(n,
    rec)``), ``key`` unique, reduced to ``fields``. Errors name the file, the record (JSONL line, or
    1-based position in a JSON list) and the field."""
    path = Path(path)
    out, seen = [], {}
    for n, rec in read_json_or_jsonl(path):
        check_record(path, n, rec, fields)
        if check is not None:
            check(n, rec)
        if rec[key] in seen:
            raise LongctxError(f"{where(path, n, key)}: {rec[key]!r} repeats record {seen[rec[key]]}")
        seen[rec[key]] = n
        out.append({k: rec[k] for k in fields})
    if not out:
        raise LongctxError(f"{path}: no {what}")
    return out


def load_cases(path: str | Path) -> list[dict]:
    """Test cases from a JSON list or JSONL file; every record needs ``idx``, ``prompt``, ``query``, ``answer``."""
    return read_records(path, CASE_FIELDS, "idx", what="test cases")


def load_few_shots(path: str | Path) -> list[list[dict]]:
    """The few-shot file: a JSON list whose entry i (0-based) holds three ``{answer, score}`` for case idx i+1."""
    path = Path(path)
    data = read_json(path, kind=None, missing="no such file")
    if not isinstance(data, list) or not data:
        raise LongctxError(f"{path}: expected a non-empty JSON list of per-case example lists")
    for i, entry in enumerate(data):
        if not isinstance(entry, list) or not entry:
            raise LongctxError(f"{path}: [{i}]: expected a list of {{answer, score}} examples")
        for j, ex in enumerate(entry):
            if not isinstance(ex, dict) or not isinstance(ex.get("answer"), str):
                raise LongctxError(f"{path}: [{i}][{j}].answer: missing or not a string")
            if not isinstance(ex.get("score"), (int, float)) or isinstance(ex.get("score"), bool):
                raise LongctxError(f"{path}: [{i}][{j}].score: missing or not a number")
    return data


def few_shots_for(few_shots: list[list[dict]], idx: int, path: str = "few-shot file") -> list[dict]:
    """The examples of case ``idx`` (1-based, the benchmark's convention)."""
    if not 1 <= idx <= len(few_shots):
        raise LongctxError(f"{path}: has {len(few_shots)} entries, none for case idx {idx}")
    return few_shots[idx - 1]


def truncate_middle(tokenizer, text: str, max_length: int) -> str:
    """Keep the first ``max_length // 2`` and the last ``max_length - max_length // 2`` tokens of
    ``text`` when it is longer than ``max_length`` (LongBench's cut: ``ids[:L//2] + ids[-L//2:]``)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_length:
        return text
    half = max_length // 2
    return (tokenizer.decode(ids[:half], skip_special_tokens=True)
            + tokenizer.decode(ids[len(ids) - (max_length - half):], skip_special_tokens=True))


def generate_predictions(cases: Sequence[dict], generate: GenerateFn, tokenizer, store: ResultStore, *,
                         max_length: int, max_new_tokens: int = 1024, progress: bool = True) -> dict[int, str]:
    """Answer every case not yet in ``store`` (key ``pred/<idx>``), saving each answer as it comes.

    ``generate`` receives the truncated raw prompt; applying the chat template is its job (see
    :func:`eval_longbench.models.hf_generate_fn` with ``chat=True``). Without a ``tokenizer`` (an
    endpoint without ``--tokenizer``) prompts are sent whole.
    """
    todo = [c for c in cases if f"pred/{c['idx']}" not in store]
    for c in tqdm(todo, desc="longbench-chat generate", disable=not progress or not todo):
        prompt = c["prompt"] if tokenizer is None else truncate_middle(tokenizer, c["prompt"], max_length)
        store.put(f"pred/{c['idx']}", {"idx": c["idx"], "prediction": generate(prompt, max_new_tokens).strip()})
    return stored_predictions(cases, store)


def stored_predictions(cases: Sequence[dict], store: ResultStore) -> dict[int, str]:
    """``{idx: prediction}`` for every case, read from ``store`` (all must have been generated)."""
    return {c["idx"]: store.get(f"pred/{c['idx']}")["prediction"] for c in cases}


def judge_predictions(cases: Sequence[dict], predictions: dict[int, str], few_shots: list[list[dict]], judge,
                      store: ResultStore, *, concurrency: int = 4, few_shots_path: str = "few-shot file",
                      progress: bool = True, judge_id: str | None = None) -> None:
    """Rate every answer not yet rated (key ``score/<idx>``); failures go to ``fail/<idx>``, to be retried.

    ``judge_id`` (the judge's endpoint and model, or local checkpoint, and the few-shot file's hash)
    is stored with each score: a score given by another judge is rated again, never reused.
    """
    prompts = {}
    for c in cases:
        old = store.get(f"score/{c['idx']}")
        if old is None or (judge_id is not None and old.get("judge") != judge_id):
            shots = few_shots_for(few_shots, c["idx"], few_shots_path)
            prompts[str(c["idx"])] = build_judge_prompt(c["query"], c["answer"], shots, predictions[c["idx"]])
    bar = tqdm(total=len(prompts), desc="longbench-chat judge", disable=not progress or not prompts)

    def save(key: str, rating) -> None:
        rec = {"idx": int(key), "score": rating.score, "judge_reply": rating.reply, "attempts": rating.attempts}
        if judge_id is not None:
            rec["judge"] = judge_id
        failed = rating.score is None
        store.put_outcome("score", key, {**rec, "error": rating.error} if failed else rec, failed=failed)
        bar.update(1)

    try:
        rate_many(judge, prompts, save, concurrency=concurrency)
    finally:
        bar.close()


def report(cases: Sequence[dict], store: ResultStore) -> dict:
    """Mean score (1-10) over rated cases, per-case scores, and the cases without a rating."""
    per_case, failures = [], []
    for c in cases:
        s = store.get(f"score/{c['idx']}")
        if s is not None:
            per_case.append({"idx": c["idx"], "score": s["score"]})
        else:
            f = store.get(f"fail/{c['idx']}") or {}
            failures.append({"idx": c["idx"], "error": f.get("error") or ("no prediction" if f"pred/{c['idx']}" not in store else "not rated")})
    scores = [p["score"] for p in per_case]
    return {"mean_score": sum(scores) / len(scores) if scores else None, "rated": len(scores),
            "cases": len(cases), "per_case": per_case, "failures": failures}
