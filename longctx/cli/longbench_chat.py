"""``longctx longbench-chat``: LongBench-Chat answers rated 1-10 by an LLM judge; parse, validate,
report. The work is :mod:`eval_longbench.longbench_chat` (predictions, then ratings), run over the model
by :func:`eval_longbench.sweep.run_sweep`."""

from __future__ import annotations

import argparse
from pathlib import Path

from eval_longbench.chat_client import raise_failures
from eval_longbench.fingerprint import file_fingerprint
from eval_longbench.flags import check_int
from eval_longbench.longbench_chat import (
    generate_predictions, judge_predictions, load_cases, load_few_shots, report as chat_report, stored_predictions,
)
from eval_longbench.model_source import add_model_source_args, check_model_source, input_paths, model_sources, open_source
from eval_longbench.sweep import run_sweep
from longctx.cli._judge import add_judge_args, build_judge, check_judge_args, judge_key
from longctx.core.errors import LongctxError
from longctx.core.io import atomic_write_json, check_out_vs_inputs


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="longctx longbench-chat", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="LongBench-Chat: answer each long-document case with the model (chat template, prompt\n"
        "middle-truncated to --max-length tokens), then rate each answer 1-10 with a judge that sees the\n"
        "question, the reference answer and three scored examples. You supply both files.\n"
        "Writes OUT/results.json (predictions and ratings, saved as they come; a rerun resumes and\n"
        "retries failed ratings) and OUT/report.json (mean score, per-case scores, failures).\n\n"
        "example:\n  OPENAI_API_KEY=... longctx longbench-chat extended/ --cases test_cases.json \\\n"
        "      --few-shots few_shots.json --judge-url https://api.openai.com/v1 --judge-model gpt-4o --out runs/lbc\n"
        "  longctx longbench-chat --endpoint http://127.0.0.1:8000/v1 --served-model NAME --tokenizer base/ ...",
    )
    add_model_source_args(p)
    p.add_argument("--cases", required=True, help="test cases: JSON list or JSONL with idx, prompt, query, answer")
    p.add_argument("--few-shots", required=True, help="few-shot file: list; entry i = three {answer, score} for case idx i+1")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--max-length", type=int, default=64000, help="prompt tokens kept (first and last halves) (default: 64000)")
    p.add_argument("--max-new-tokens", type=int, default=1024)
    p.add_argument("--generate-only", action="store_true", help="only write predictions; rate them in a later run")
    p.add_argument("--overwrite", action="store_true", help="start over instead of resuming OUT/results.json")
    add_judge_args(p)
    return p


def main(argv: list[str]) -> int:
    a = _parser().parse_args(argv)
    check_int("--max-length", a.max_length, minimum=2)  # the first and last halves must each keep a token
    check_int("--max-new-tokens", a.max_new_tokens)
    check_model_source(a)
    check_judge_args(a)
    check_out_vs_inputs(a.out, [*input_paths(a), a.cases, a.few_shots, a.judge_local])

    cases, shots = load_cases(a.cases), load_few_shots(a.few_shots)
    judge = None if a.generate_only else build_judge(a)
    if not a.generate_only and judge is None:
        raise LongctxError("a judge is needed: pass --judge-url URL (key in $" + a.judge_key_env + ") or --judge-local DIR, or --generate-only")
    out = Path(a.out)
    (src,) = model_sources(a)
    truncation = "none: endpoint without --tokenizer" if src.is_endpoint and not a.tokenizer else "tokens"
    if truncation != "tokens":
        print("note: no --tokenizer, so prompts are sent whole (no middle truncation to --max-length)")
    meta = {"model": src.name, "max_length": a.max_length, "max_new_tokens": a.max_new_tokens,
            "truncation": truncation, "cases_sha256": file_fingerprint(a.cases)}

    def evaluate(store, src):
        """The model's answers; it is opened only when some are missing (a rerun that only rates loads nothing)."""
        if any(f"pred/{c['idx']}" not in store for c in cases):
            m = open_source(a, src, chat=True)
            generate_predictions(cases, m.generate, m.tokenizer, store, max_length=a.max_length,
                                 max_new_tokens=a.max_new_tokens)
        return stored_predictions(cases, store)

    def rate_and_report(store, preds):
        if judge is not None:
            judge_predictions(cases, preds[src.name], shots, judge, store, concurrency=a.concurrency, few_shots_path=a.few_shots,
                              judge_id=judge_key(a) + f" few-shots {file_fingerprint(a.few_shots)}")
        rep = chat_report(cases, store)
        atomic_write_json(out / "report.json", rep)
        mean = "n/a" if rep["mean_score"] is None else f"{rep['mean_score']:.2f}"
        print(f"LongBench-Chat: mean score {mean} (1-10) over {rep['rated']}/{rep['cases']} cases; {len(rep['failures'])} without a rating")
        for f in rep["failures"]:
            print(f"  idx {f['idx']}: {f['error']}")
        print(f"wrote {out / 'report.json'}")
        return rep

    rep = run_sweep(out, meta, [src], evaluate, rate_and_report, overwrite=a.overwrite)
    if judge is not None:  # --generate-only rates nothing: no rating is then no failure
        raise_failures(rep["failures"], "idx", rep["cases"])
    return 0
