"""``longctx needle``, ``longctx ppl``, ``longctx longbench-chat``, ``longctx ruler``: parse, validate, report.

The work lives in :mod:`eval_longbench.needle`, :mod:`~eval_longbench.ppl` and
:mod:`~eval_longbench.longbench_chat`; these functions only wire files and flags to them.
"""

from __future__ import annotations

import argparse
import gc
import os
from pathlib import Path

from eval_longbench.chat_client import raise_failures
from eval_longbench.flags import check_device, check_int, check_seconds  # noqa: F401  (cli.check_* are used by tests)
from eval_longbench.model_source import add_local_model_args as _model_flags, model_names  # noqa: F401
from longctx.core.errors import LongctxError
from longctx.core.io import atomic_write_json, atomic_write_text, check_out_vs_inputs

_FMT = argparse.RawDescriptionHelpFormatter


def parse_lengths(text: str) -> list[int]:
    """``"256,512,1k,32K"`` -> ``[256, 512, 1024, 32768]``."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        mult = 1024 if part[-1] in "kK" else 1
        try:
            out.append(int(part[:-1] if mult > 1 else part) * mult)
        except ValueError:
            raise LongctxError(f"--lengths: {part!r} is not a length (e.g. 512 or 4k)") from None
        if out[-1] < 1:
            raise LongctxError(f"--lengths: {part!r} must be a positive length")
    if not out:
        raise LongctxError("--lengths: empty")
    return out


def parse_depths(text: str, spacing: str) -> list[float]:
    """``"5"`` -> five depths 0..1 (``spacing``); ``"0,0.5,1"`` or ``"0,50,100"`` (percent) -> as given."""
    from eval_longbench.needle import depth_grid

    if "," not in text and "." not in text:
        try:
            return depth_grid(int(text), spacing)
        except ValueError:
            raise LongctxError(f"--depths: {text!r} is neither a count nor a list") from None
    try:
        vals = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise LongctxError(f"--depths: {text!r} is not a comma-separated list of numbers") from None
    if not vals:
        raise LongctxError("--depths: empty")
    return [v / 100 for v in vals] if max(vals) > 1 else vals


def _check_judge_flags(a) -> None:
    check_seconds("--judge-timeout", a.judge_timeout)
    check_int("--judge-tries", a.judge_tries)
    check_int("--concurrency", a.concurrency)


def _load(a, path: str):
    """``(model, tokenizer)`` at ``path`` with the --trust-remote-code / --dtype / --device flags."""
    from eval_longbench.models import load_model

    return load_model(path, trust_remote_code=a.trust_remote_code, dtype=a.dtype, device=a.device)


def _judge_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("judge (an OpenAI-compatible chat-completions endpoint, or a local model)")
    g.add_argument("--judge-url", help="API base, e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1")
    g.add_argument("--judge-model", default="gpt-4o", help="model name sent to the endpoint (default: gpt-4o)")
    g.add_argument("--judge-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the API key (default: OPENAI_API_KEY); the key is never logged or saved")
    g.add_argument("--judge-local", metavar="DIR", help="use a local Hugging Face chat model as the judge instead (offline)")
    g.add_argument("--judge-timeout", type=float, default=120.0,
                   help="total seconds per request: connect, headers and reply together (default: 120)")
    g.add_argument("--judge-tries", type=int, default=5,
                   help="tries per case on 429/5xx/timeouts/unparseable replies; waits between tries follow the "
                   "back-off or the server's Retry-After, capped at 60 s (default: 5)")
    g.add_argument("--concurrency", type=int, default=4, help="judge requests in flight at once (default: 4)")


def build_judge(a):
    """The judge object from flags, or ``None`` when none was asked for."""
    from eval_longbench.judge import LocalJudge, OpenAIJudge

    if a.judge_url and a.judge_local:
        raise LongctxError("--judge-url and --judge-local: choose one")
    if a.judge_local:
        return LocalJudge(*_load(a, a.judge_local))
    if a.judge_url:
        key = os.environ.get(a.judge_key_env) or None
        if key is None:
            print(f"note: ${a.judge_key_env} is not set; calling the judge without an API key")
        return OpenAIJudge(a.judge_url, a.judge_model, api_key=key, timeout=a.judge_timeout, max_tries=a.judge_tries)
    return None


def judge_key(a) -> str:
    """What a judge's scores are keyed by: its endpoint and model, or its local checkpoint's content."""
    from eval_longbench.fingerprint import model_fingerprint
    from eval_longbench.model_source import endpoint_id

    if a.judge_local:
        return f"local {model_fingerprint(a.judge_local)}"
    return f"endpoint {endpoint_id(a.judge_url)} model {a.judge_model}"


def needle_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="longctx needle", formatter_class=_FMT,
        description="Needle-in-a-haystack / passkey retrieval accuracy over context lengths x needle depths.\n\n"
        "Writes OUT/results.json (every cell, saved as it finishes; a rerun skips finished cells) and\n"
        "OUT/heatmap.png (x: context length, y: depth, colour: score 0-1), models side by side.\n\n"
        "example:\n  longctx needle base/ extended/ --lengths 1k,2k,4k --depths 5 --task passkey --out runs/niah\n"
        "  longctx needle --endpoint http://127.0.0.1:8000/v1 --served-model NAME --tokenizer base/ --out runs/niah-served",
    )
    from eval_longbench.model_source import add_model_source_args

    add_model_source_args(p, multiple=True)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--task", default="passkey", choices=["passkey", "needle"], help="passkey (5-digit key) or needle (magic numbers)")
    p.add_argument("--lengths", default="256,512,1024", help="context lengths in tokens, e.g. 1k,2k,4k (default: 256,512,1024)")
    p.add_argument("--depths", default="5", help="a count (evenly spread 0-100%%) or a list like 0,25,50 (default: 5)")
    p.add_argument("--depth-spacing", default="linear", choices=["linear", "sigmoid"], help="spacing for a depth count")
    p.add_argument("--samples", type=int, default=1, help="prompts per cell; the cell score is their mean (default: 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-needles", type=int, default=1, help="needle task: needles in the haystack (1 asked, the rest distractors)")
    p.add_argument("--needle", help="custom needle sentence (with --question and --answer)")
    p.add_argument("--question", help="custom question, asked after the haystack")
    p.add_argument("--answer", help="custom expected answer")
    p.add_argument("--haystack", nargs="*", metavar="PATH", help="text files/directories for the haystack (default: built-in noise sentences)")
    p.add_argument("--scoring", default="auto", choices=["auto", "exact", "contains", "judge"],
                   help="auto: exact number match for passkey/needle, contains for a custom needle; judge: 1-10 by an LLM")
    p.add_argument("--chat", action="store_true", help="wrap prompts in the model's chat template (always on with --endpoint)")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--overwrite", action="store_true", help="start over instead of resuming OUT/results.json")
    _judge_flags(p)
    a = p.parse_args(argv)
    check_int("--max-new-tokens", a.max_new_tokens)
    check_int("--samples", a.samples)
    check_int("--num-needles", a.num_needles)
    from eval_longbench.model_source import bind_sources, check_model_source, each_model, input_paths, model_sources, require_tokenizer

    check_model_source(a)
    require_tokenizer(a, "needle")
    _check_judge_flags(a)
    check_out_vs_inputs(a.out, [*input_paths(a), *(a.haystack or []), a.judge_local])
    chat = a.chat or bool(a.endpoint)  # chat/completions always applies the served model's chat template

    from eval_longbench.fingerprint import text_fingerprint
    from eval_longbench.haystack import read_text_sources, split_sentences
    from eval_longbench.judge import NEEDLE_JUDGE_TEMPLATE
    from eval_longbench.needle import NeedleConfig, run_needle
    from eval_longbench.plots import plot_heatmaps
    from eval_longbench.results import ResultStore

    filler = split_sentences(read_text_sources(a.haystack)) if a.haystack else None
    cfg = NeedleConfig(
        task=a.task, lengths=parse_lengths(a.lengths), depths=parse_depths(a.depths, a.depth_spacing), samples=a.samples,
        seed=a.seed, num_needles=a.num_needles, needle=a.needle, question=a.question, answer=a.answer,
        scoring=a.scoring, max_new_tokens=a.max_new_tokens, filler_name=",".join(a.haystack) if a.haystack else "noise",
    )
    scorer = None
    if cfg.scoring == "judge":
        judge = build_judge(a)
        if judge is None:
            raise LongctxError("--scoring judge: needs --judge-url or --judge-local")

        def scorer(pred, ans, q):
            r = judge.rate(NEEDLE_JUDGE_TEMPLATE.format(question=q, reference=ans, prediction=pred))
            return 0.0 if r.score is None else (r.score - 1) / 9

    out = Path(a.out)
    meta = {**cfg.meta(), "chat": chat, "haystack_sha256": text_fingerprint("\n".join(filler) if filler else None)}
    if cfg.scoring == "judge":
        meta["judge"] = judge_key(a)  # scores of another judge are not comparable
    store = ResultStore(out / "results.json", meta, overwrite=a.overwrite)
    bind_sources(store, model_sources(a))

    def evaluate(m):
        cells = run_needle(m.generate, m.tokenizer, cfg, store, model_name=m.name, scorer=scorer, filler=filler)
        print(f"{m.name}: mean score {sum(c['score'] for c in cells) / len(cells):.3f} over {len(cells)} cells")
        return cells

    cells = each_model(a, evaluate, chat=chat)
    png = plot_heatmaps(cells, out / "heatmap.png", title=f"{cfg.task} retrieval")
    print(f"wrote {out / 'results.json'} and {png}")
    return 0


def ppl_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="longctx ppl", formatter_class=_FMT,
        description="Sliding-window perplexity at several context lengths (the YaRN paper's protocol: the\n"
        "window is the evaluation length, moved by --stride; every length scores the same first\n"
        "--max-tokens tokens). Logits are computed in chunks, never for a whole window at once.\n"
        "Writes OUT/results.json (resumable), OUT/ppl.csv and OUT/ppl.png (one line per model).\n\n"
        "example:\n  longctx ppl base/ extended/ --lengths 1k,2k,4k,8k --text book.txt --stride 256 --out runs/ppl",
    )
    from eval_longbench.model_source import (
        add_model_source_args, bind_sources, check_model_source, each_model, input_paths, model_sources, refuse_endpoint,
    )

    add_model_source_args(p, multiple=True)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--lengths", default="256,512,1024", help="evaluation lengths, e.g. 1k,2k,4k (default: 256,512,1024)")
    p.add_argument("--text", nargs="+", default=["builtin"],
                   help="text files/directories (*.txt), or 'builtin' (seeded noise sentences: periodic, easy) (default: builtin)")
    p.add_argument("--stride", type=int, default=256, help="tokens the window moves each step; capped at the length (default: 256)")
    p.add_argument("--max-tokens", type=int, help="tokens of text scored at every length (default: the largest length)")
    p.add_argument("--chunk-size", type=int, default=1024, help="positions per output-head chunk (default: 1024)")
    p.add_argument("--overwrite", action="store_true", help="start over instead of resuming OUT/results.json")
    a = p.parse_args(argv)
    refuse_endpoint(a, "ppl", "needs the model's logits for every token, which chat/completions does not return")
    check_model_source(a)
    check_int("--stride", a.stride)
    check_int("--chunk-size", a.chunk_size)
    check_int("--max-tokens", a.max_tokens, minimum=2)  # at least one token to score after the first
    check_out_vs_inputs(a.out, [*input_paths(a), *a.text])

    from eval_longbench.fingerprint import text_fingerprint
    from eval_longbench.haystack import builtin_text, read_text_sources
    from eval_longbench.plots import plot_ppl
    from eval_longbench.ppl import rows_to_csv, run_ppl
    from eval_longbench.results import ResultStore

    lengths = parse_lengths(a.lengths)
    if a.max_tokens is None and max(lengths) < 2:  # the span scored defaults to the largest length
        raise LongctxError(f"--lengths: the largest length, {max(lengths)}, is below 2 (perplexity needs a token "
                           "to score after the first)")
    need = max(lengths) if a.max_tokens is None else a.max_tokens
    text = builtin_text(need) if a.text == ["builtin"] else read_text_sources(a.text)
    out = Path(a.out)
    store = ResultStore(out / "results.json", {"text": a.text, "text_sha256": text_fingerprint(text), "stride": a.stride,
                                               "max_tokens": need}, overwrite=a.overwrite)
    bind_sources(store, model_sources(a))

    def evaluate(m):
        ids = m.tokenizer(text, add_special_tokens=True)["input_ids"]
        rows = run_ppl(m.model, ids, lengths, store, model_name=m.name, stride=a.stride, max_tokens=need,
                       chunk_size=a.chunk_size)
        for r in rows:
            print(f"{m.name} @ {r['length']}: ppl {r['ppl']:.3f} over {r['tokens']} tokens")
        return rows

    rows = [r for model_rows in each_model(a, evaluate, chat=False).values() for r in model_rows]
    atomic_write_text(out / "ppl.csv", rows_to_csv(rows))
    plot_ppl(rows, out / "ppl.png")
    print(f"wrote {out / 'ppl.csv'} and {out / 'ppl.png'}")
    return 0


def longbench_chat_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="longctx longbench-chat", formatter_class=_FMT,
        description="LongBench-Chat: answer each long-document case with the model (chat template, prompt\n"
        "middle-truncated to --max-length tokens), then rate each answer 1-10 with a judge that sees the\n"
        "question, the reference answer and three scored examples. You supply both files.\n"
        "Writes OUT/results.json (predictions and ratings, saved as they come; a rerun resumes and\n"
        "retries failed ratings) and OUT/report.json (mean score, per-case scores, failures).\n\n"
        "example:\n  OPENAI_API_KEY=... longctx longbench-chat extended/ --cases test_cases.json \\\n"
        "      --few-shots few_shots.json --judge-url https://api.openai.com/v1 --judge-model gpt-4o --out runs/lbc\n"
        "  longctx longbench-chat --endpoint http://127.0.0.1:8000/v1 --served-model NAME --tokenizer base/ ...",
    )
    from eval_longbench.model_source import add_model_source_args

    add_model_source_args(p)
    p.add_argument("--cases", required=True, help="test cases: JSON list or JSONL with idx, prompt, query, answer")
    p.add_argument("--few-shots", required=True, help="few-shot file: list; entry i = three {answer, score} for case idx i+1")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--max-length", type=int, default=64000, help="prompt tokens kept (first and last halves) (default: 64000)")
    p.add_argument("--max-new-tokens", type=int, default=1024)
    p.add_argument("--generate-only", action="store_true", help="only write predictions; rate them in a later run")
    p.add_argument("--overwrite", action="store_true", help="start over instead of resuming OUT/results.json")
    _judge_flags(p)
    a = p.parse_args(argv)
    check_int("--max-length", a.max_length, minimum=2)  # the first and last halves must each keep a token
    check_int("--max-new-tokens", a.max_new_tokens)
    from eval_longbench.model_source import bind_sources, check_model_source, input_paths, model_sources, open_source

    check_model_source(a)
    _check_judge_flags(a)
    check_out_vs_inputs(a.out, [*input_paths(a), a.cases, a.few_shots, a.judge_local])

    from eval_longbench.longbench_chat import (
        generate_predictions, judge_predictions, load_cases, load_few_shots, report, stored_predictions,
    )
    from eval_longbench.fingerprint import file_fingerprint
    from eval_longbench.results import ResultStore

    cases, shots = load_cases(a.cases), load_few_shots(a.few_shots)
    judge = None if a.generate_only else build_judge(a)
    if not a.generate_only and judge is None:
        raise LongctxError("a judge is needed: pass --judge-url URL (key in $" + a.judge_key_env + ") or --judge-local DIR, or --generate-only")
    out = Path(a.out)
    (src,) = model_sources(a)
    truncation = "none: endpoint without --tokenizer" if src.is_endpoint and not a.tokenizer else "tokens"
    if truncation != "tokens":
        print("note: no --tokenizer, so prompts are sent whole (no middle truncation to --max-length)")
    store = ResultStore(out / "results.json", {"model": src.name, "max_length": a.max_length, "max_new_tokens": a.max_new_tokens,
                                               "truncation": truncation, "cases_sha256": file_fingerprint(a.cases)},
                        overwrite=a.overwrite)
    bind_sources(store, [src])
    pending = [c for c in cases if f"pred/{c['idx']}" not in store]
    if pending:
        m = open_source(a, src, chat=True)
        generate_predictions(cases, m.generate, m.tokenizer, store, max_length=a.max_length, max_new_tokens=a.max_new_tokens)
        del m
        gc.collect()
    preds = stored_predictions(cases, store)
    if judge is not None:
        judge_predictions(cases, preds, shots, judge, store, concurrency=a.concurrency, few_shots_path=a.few_shots,
                          judge_id=judge_key(a) + f" few-shots {file_fingerprint(a.few_shots)}")
    rep = report(cases, store)
    atomic_write_json(out / "report.json", rep)
    mean = "n/a" if rep["mean_score"] is None else f"{rep['mean_score']:.2f}"
    print(f"LongBench-Chat: mean score {mean} (1-10) over {rep['rated']}/{rep['cases']} cases; {len(rep['failures'])} without a rating")
    for f in rep["failures"]:
        print(f"  idx {f['idx']}: {f['error']}")
    print(f"wrote {out / 'report.json'}")
    if judge is not None:  # --generate-only rates nothing: no rating is then no failure
        raise_failures(rep["failures"], "idx", rep["cases"])
    return 0


def longbench_v2_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="longctx longbench-v2", formatter_class=_FMT,
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
    from eval_longbench.longbench_v2 import ANSWER_TOKENS, COT_TOKENS
    from eval_longbench.model_source import add_model_source_args

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
    a = p.parse_args(argv)
    check_int("--samples", a.samples)
    check_int("--max-length", a.max_length, minimum=2)
    check_int("--max-new-tokens", a.max_new_tokens)
    check_int("--cot-max-new-tokens", a.cot_max_new_tokens)
    from eval_longbench.model_source import bind_sources, check_model_source, input_paths, model_sources, open_source

    check_model_source(a)
    if a.endpoint and not a.tokenizer and a.max_length:
        raise LongctxError("--max-length: counted in the served model's tokens; pass --tokenizer DIR with it")
    check_out_vs_inputs(a.out, [*input_paths(a), a.data])

    from eval_longbench.fingerprint import file_fingerprint
    from eval_longbench.longbench_v2 import V2Config, load_records, report, run_longbench_v2, table_line
    from eval_longbench.model_source import prompt_overhead
    from eval_longbench.results import ResultStore

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
    store = ResultStore(out / "results.json", {**cfg.meta(), "model": src.name, "data_sha256": file_fingerprint(a.data)},
                        overwrite=a.overwrite)
    bind_sources(store, [src])
    m = open_source(a, src, chat=True)
    run_longbench_v2(records, m.generate, m.tokenizer, cfg, store, concurrency=m.max_concurrency)
    rep = report(records, store)
    atomic_write_json(out / "report.json", {"model": src.name, **rep})
    print("model\tOverall\tEasy\tHard\tShort\tMedium\tLong")
    print(f"{src.name}\t{table_line(rep)}")
    print(f"{rep['answered']}/{rep['records']} answered, {rep['no_answer_extracted']} without an extractable answer, "
          f"{rep['truncated']} truncated; {len(rep['failures'])} failed")
    for f in rep["failures"]:
        print(f"  {f['_id']}: {f['error']}")
    print(f"wrote {out / 'report.json'}")
    raise_failures(rep["failures"], "_id", rep["records"])
    return 0


RULER_EXAMPLES = """\
examples:
  longctx ruler base/ extended/ --lengths 4k,8k,16k --tasks all --samples 20 --out runs/ruler
  longctx ruler model/ --lengths 2k,4k,8k --tasks niah_single_1,vt,cwe --threshold base --out runs/ruler
  longctx ruler model/ --squad-file dev-v2.0.json --hotpotqa-file hotpot_dev.json --out runs/ruler

tasks (RULER's names; all = every task whose input you supplied):
  niah_single_1/2/3   one needle; noise / essay haystack; number / number / UUID value
  niah_multikey_1/2/3 the asked needle among distractors: 3 other needles in an essay / a haystack made
                      of needles (word keys) / the same with UUID keys and values
  niah_multivalue     four values under one key, all asked
  niah_multiquery     four keys asked at once
  vt                  variable tracking: a 4-hop chain VAR B = VAR A ..., name every variable of a value
  cwe                 common-word extraction: the 10 most repeated words of a numbered list
  fwe                 frequent-word extraction: the 3 most frequent coded words of a Zipf-distributed text
  qa_1 / qa_2         question answering over documents from --squad-file / --hotpotqa-file

Scores are RULER's string-match recall in 0-100 (the fraction of the expected strings in the reply;
QA: any accepted answer). Each prompt plus the task's answer reserve (128 tokens NIAH, 30 VT, 120
CWE, 50 FWE, 32 QA; --max-new-tokens overrides) fits the length in the model's own tokenizer, chat
template included; needles sit at seeded depths measured in tokens. A task that cannot fit a length
at all shows n/a there, and that length's average is over the tasks that fit.
"""


def _open_ruler_model(a, src):
    """``(model, chat)``: ``src`` opened (a checkpoint or an endpoint) and whether its prompts go through
    the chat template, whose tokens then count against each length."""
    from eval_longbench.model_source import open_source
    from eval_longbench.models import hf_generate_fn
    from eval_longbench.ruler.report import use_chat

    m = open_source(a, src, chat=False)
    chat = use_chat(a.chat, m.tokenizer, src.config_dir)
    if chat and not src.is_endpoint:
        m.generate = hf_generate_fn(m.model, m.tokenizer, chat=True)
    return m, chat


def ruler_main(argv: list[str]) -> int:
    from eval_longbench.model_source import add_model_source_args, bind_sources, input_paths, model_sources, require_tokenizer
    from eval_longbench.ruler.runner import RULER_THRESHOLD

    p = argparse.ArgumentParser(
        prog="longctx ruler", formatter_class=_FMT,
        description="RULER (arXiv 2404.06654): retrieval, multi-hop tracing and aggregation tasks at each context\n"
        "length; the score table, the average per length and the effective length (the longest length whose\n"
        "average, and every shorter length's, stays at or above the threshold).\n\n"
        "Writes OUT/results.json (every sample, saved as it finishes; a rerun generates only what is missing\n"
        "and refuses results of another checkpoint under the same name), OUT/summary.json, OUT/table.md\n"
        "(per-model tables and a side-by-side comparison) and OUT/heatmap.png (tasks x lengths).\n\n" + RULER_EXAMPLES,
    )
    add_model_source_args(p, multiple=True)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--lengths", default="4k,8k,16k", help="total lengths (prompt + answer reserve) in tokens (default: 4k,8k,16k)")
    p.add_argument("--tasks", default="all", help="all, or a comma list of task names (see below) (default: all)")
    p.add_argument("--samples", type=int, default=5, help="prompts per task and length; the cell is their mean (default: 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threshold", default=str(RULER_THRESHOLD),
                   help="average a length must keep to count as effective: a score, or 'base' = the model's own average "
                   "at its trained window (config max_position_embeddings; must be one of --lengths) "
                   f"(default: {RULER_THRESHOLD}, RULER's: Llama-2-7B at 4K)")
    p.add_argument("--haystack", nargs="*", metavar="PATH",
                   help="text files/directories for the essay haystack (RULER: Paul Graham essays) (default: a built-in essay)")
    p.add_argument("--squad-file", metavar="FILE", help="SQuAD-format JSON for qa_1 (never downloaded)")
    p.add_argument("--hotpotqa-file", metavar="FILE", help="HotpotQA-format JSON for qa_2 (never downloaded)")
    p.add_argument("--chat", default="auto", choices=["auto", "on", "off"],
                   help="wrap prompts in the model's chat template; auto: when the tokenizer has one. An endpoint always "
                   "applies its own template: --chat off is refused there (default: auto)")
    p.add_argument("--max-new-tokens", type=int, help="answer reserve of every task (default: each task's RULER value)")
    p.add_argument("--overwrite", action="store_true", help="start over instead of resuming OUT/results.json")
    a = p.parse_args(argv)
    check_int("--samples", a.samples)
    check_int("--max-new-tokens", a.max_new_tokens)
    sources = model_sources(a)
    require_tokenizer(a, "ruler")
    if a.endpoint and a.chat == "off":
        raise LongctxError("--chat off: an endpoint applies its chat template to every prompt; use auto or on")
    check_out_vs_inputs(a.out, [*input_paths(a), *(a.haystack or []), a.squad_file, a.hotpotqa_file])

    from eval_longbench.fingerprint import text_fingerprint
    from eval_longbench.haystack import read_text_sources, split_sentences
    from eval_longbench.results import ResultStore
    from eval_longbench.ruler.qa import load_qa
    from eval_longbench.ruler.registry import select_tasks
    from eval_longbench.ruler.report import evaluate_model, parse_threshold, write_reports
    from eval_longbench.ruler.runner import RulerConfig, check_lengths, comparison_table, markdown_table

    threshold = parse_threshold(a.threshold)
    qa_files = {fmt: f for fmt, f in (("squad", a.squad_file), ("hotpotqa", a.hotpotqa_file)) if f}
    qa = {fmt: load_qa(f, fmt) for fmt, f in qa_files.items()}
    cfg = RulerConfig(select_tasks(a.tasks, available=set(qa)), parse_lengths(a.lengths), a.samples, a.seed, a.max_new_tokens)
    essay = split_sentences(read_text_sources(a.haystack)) if a.haystack else None
    meta = {**cfg.meta(), "chat": a.chat, "haystack_sha256": text_fingerprint("\n".join(essay) if essay else None),
            **{f"{fmt}_sha256": text_fingerprint(Path(f).read_text(encoding="utf-8")) for fmt, f in qa_files.items()}}
    for src in sources:  # before anything is generated or written
        check_lengths(cfg.lengths, src.window(), threshold, src.name)
    store = ResultStore(Path(a.out) / "results.json", meta, overwrite=a.overwrite)
    summaries = {}
    bind_sources(store, sources)
    for src in sources:
        summaries[src.name] = evaluate_model(store, cfg, src.name, src.fingerprint_key(), lambda src=src: _open_ruler_model(a, src),
                                             threshold=threshold, window=src.window(), essay=essay, qa=qa)
        gc.collect()
        print(markdown_table(src.name, summaries[src.name]))
    if len(summaries) > 1:
        print(comparison_table(summaries))
    print("wrote " + ", ".join(map(str, write_reports(summaries, a.out, a.threshold))))
    return 0
