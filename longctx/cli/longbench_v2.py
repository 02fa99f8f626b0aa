"""``longctx longbench-v2``: LongBench v2 multiple-choice accuracy by difficulty and length; parse,
validate, report. The work is :func:`eval_longbench.longbench_v2.run_longbench_v2`, run over the model
by :func:`eval_longbench.sweep.run_sweep`."""

from __future__ import annotations

import argparse
from pathlib import Path

from eval_longbench.chat_client import raise_failures
from eval_longbench.fingerprint import file_fingerprint
from eval_longbench.flags import check_int
from eval_longbench.longbench_v2 import (
    ANSWER_TOKENS, COT_TOKENS, V2Config, load_records, report as v2_report, run_longbench_v2, table_line,
)
from eval_longbench.model_source import (
    add_model_source_args, check_model_source, input_paths, model_sources, open_source, prompt_overhead,
)
from eval_longbench.sweep import run_sweep
from longctx.core.errors import LongctxError
from longctx.core.io import atomic_write_json, check_out_vs_inputs


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="longctx longbench-v2", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="LongBench v2 (arXiv 2412.15204): four-choice questions over long contexts, on a file you supply\n"
        "in the official format (JSON list or JSONL of _id, domain, sub_domain, difficulty, length, question,\n"
        "choice_A..choice_D, answer, context: the Hugging Face THUDM/LongBench-v2 data.json). The official\n"
        "zero-shot prompt (or --cot: reasoning, then the answer), middle truncation of the prompt to\n"
        "--max-length tokens, the official answer extraction; greedy decoding.\n"
        "Writes OUT/results.json (every answer, saved as it comes; a rerun resumes and retries failed\n"
        "requests) and OUT/report.json: accuracy overall, by difficulty (easy/hard) and by length\n"
        "(short/medium/long).\n\n"
        "examples:\n  longctx longbench-v2 extended/ --data data.json --out runs/lbv2 --samples 50\n"
        "  longctx longbench-v2 --endpoint http://127.0.0.1:8000/v1 --served-model NAME --tokenizer base/ \\\n"
        "      --data data.json --out runs/lbv2-served --max-length 120000",
    )
    add_model_source_args(p)
    p.add_argument("--data", required=True, help="the questions: JSON list or JSONL in the official format")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--samples", type=int, help="only the first N records of --data (default: all)")
    p.add_argument("--max-length", type=int,
                   help="prompt tokens kept, first and last halves (default: the model's window minus the reply "
                   "and the chat template; the official script uses 120000 for 128K models)")
    p.add_argument("--cot", action="store_true", help="chain of thought: a reasoning pass, then a short answer pass (official -cot)")
    p.add_argument("--max-new-tokens", type=int, default=ANSWER_TOKENS, help=f"tokens of the answer (default: {ANSWER_TOKENS})")
    p.add_argument("--cot-max-new-tokens", type=int, default=COT_TOKENS,
                   help=f"tokens of the --cot reasoning pass (default: {COT_TOKENS})")
    p.add_argument("--overwrite", action="store_true", help="start over instead of resuming OUT/results.json")
    return p


def main(argv: list[str]) -> int:
    a = _parser().parse_args(argv)
    check_int("--samples", a.samples)
    check_int("--max-length", a.max_length, minimum=2)
    check_int("--max-new-tokens", a.max_new_tokens)
    check_int("--cot-max-new-tokens", a.cot_max_new_tokens)
    check_model_source(a)
    if a.endpoint and not a.tokenizer and a.max_length:
        raise LongctxError("--max-length: counted in the served model's tokens; pass --tokenizer DIR with it")
    check_out_vs_inputs(a.out, [*input_paths(a), a.data])

    records = load_records(a.data)[:a.samples]
    (src,) = model_sources(a)
    tok = src.load_tokenizer(a.trust_remote_code)
    max_length = a.max_length
    if max_length is None and tok is not None:
        window = src.window()
        if not window:
            raise LongctxError(f"--max-length: needed, {src.name}'s context window is not known "
                               f"(no max_position_embeddings in {src.config_dir}/config.json)")
        reply = a.cot_max_new_tokens if a.cot else a.max_new_tokens  # the long prompt's reply (--cot: the reasoning)
        max_length = window - reply - prompt_overhead(tok)
        if max_length < 2:
            raise LongctxError(f"--max-new-tokens: {reply} reply tokens leave no room for a prompt in the window of {window}")
    if tok is None:
        print("note: no --tokenizer, so prompts are sent whole (no middle truncation); the server must fit them")
    cfg = V2Config(cot=a.cot, max_length=max_length, max_new_tokens=a.max_new_tokens, cot_max_new_tokens=a.cot_max_new_tokens)
    out = Path(a.out)

    def evaluate(store, src):
        m = open_source(a, src, chat=True)
        run_longbench_v2(records, m.generate, m.tokenizer, cfg, store, concurrency=m.max_concurrency)

    def report(store, _):
        rep = v2_report(records, store)
        atomic_write_json(out / "report.json", {"model": src.name, **rep})
        print("model\tOverall\tEasy\tHard\tShort\tMedium\tLong")
        print(f"{src.name}\t{table_line(rep)}")
        print(f"{rep['answered']}/{rep['records']} answered, {rep['no_answer_extracted']} without an extractable answer, "
              f"{rep['truncated']} truncated; {len(rep['failures'])} failed")
        for f in rep["failures"]:
            print(f"  {f['_id']}: {f['error']}")
        print(f"wrote {out / 'report.json'}")
        return rep

    rep = run_sweep(out, {**cfg.meta(), "model": src.name, "data_sha256": file_fingerprint(a.data)}, [src], evaluate, report,
                    overwrite=a.overwrite)
    raise_failures(rep["failures"], "_id", rep["records"])
    return 0
