"""``longctx needle``, ``longctx ppl``, ``longctx longbench-chat``, ``longctx ruler``: parse, validate, report.

The work lives in :mod:`eval_longbench.needle`, :mod:`~eval_longbench.ppl` and
:mod:`~eval_longbench.longbench_chat`; these functions only wire files and flags to them.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
from pathlib import Path

from longctx.errors import LongctxError
from longctx.io import atomic_write_json, atomic_write_text, check_out_vs_inputs

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


def check_int(flag: str, value: int | None, minimum: int = 1) -> None:
    """One-line error unless ``value`` (when given) is at least ``minimum``."""
    if value is not None and value < minimum:
        raise LongctxError(f"{flag}: must be at least {minimum}, got {value}")


def check_seconds(flag: str, value: float) -> None:
    """One-line error unless ``value`` is a finite number of seconds above 0."""
    if not (math.isfinite(value) and value > 0):
        raise LongctxError(f"{flag}: must be a finite number of seconds above 0, got {value}")


def check_device(text: str) -> None:
    """One-line error unless ``text`` names a torch device that this machine has (cpu, cuda[:i], mps, ...)."""
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        raise LongctxError(f"--device: {text!r} is not a torch device (e.g. cpu, cuda, cuda:1, mps)") from None
    if dev.type == "cpu":
        return
    backend = getattr(torch, dev.type, None) if dev.type != "mps" else getattr(torch.backends, "mps", None)
    available = getattr(backend, "is_available", None)
    if available is None:
        raise LongctxError(f"--device: {text!r} cannot run an evaluation (use cpu, cuda[:i] or mps)")
    if not available():
        raise LongctxError(f"--device: {text!r}: no {dev.type} device is available on this machine")
    count = getattr(backend, "device_count", None)
    if dev.index is not None and count is not None and dev.index >= count():
        raise LongctxError(f"--device: {text!r}: this machine has {count()} {dev.type} device(s) (index from 0)")


def _check_model_flags(a) -> None:
    check_device(a.device)


def _check_judge_flags(a) -> None:
    check_seconds("--judge-timeout", a.judge_timeout)
    check_int("--judge-tries", a.judge_tries)
    check_int("--concurrency", a.concurrency)


def model_names(paths: list[str], names: str | None) -> list[str]:
    if names:
        out = [n.strip() for n in names.split(",")]
        if len(out) != len(paths):
            raise LongctxError(f"--names: {len(out)} names for {len(paths)} models")
    else:
        out = [Path(p).name or str(p) for p in paths]
    if len(set(out)) != len(out):
        out = [f"{n}#{i}" for i, n in enumerate(out, 1)]
    return out


def _bind_models(store, paths: list[str], names: str | None) -> None:
    """Tie each model name in ``store`` to its checkpoint's content, before any model loads: a rerun
    with another checkpoint under the same name is refused instead of reusing its results."""
    from eval_longbench.fingerprint import model_fingerprint

    for path, name in zip(paths, model_names(paths, names)):
        store.bind_model(name, model_fingerprint(path))


def _load(a, path: str):
    """``(model, tokenizer)`` at ``path`` with the --trust-remote-code / --dtype / --device flags."""
    from eval_longbench.models import load_model

    return load_model(path, trust_remote_code=a.trust_remote_code, dtype=a.dtype, device=a.device)


def _each_model(a, paths: list[str], work) -> dict:
    """``{name: work(name, model, tokenizer)}``, one checkpoint loaded at a time, freed before the next loads."""
    out = {}
    for path, name in zip(paths, model_names(paths, a.names)):
        model, tok = _load(a, path)
        out[name] = work(name, model, tok)
        del model, tok
        gc.collect()
    return out


def _model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-remote-code", action="store_true", help="allow custom modeling code in the checkpoint")
    p.add_argument("--dtype", default="auto", help="auto (as saved), float32, bfloat16 or float16")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    p.add_argument("--names", help="comma-separated display names for the models (default: directory names)")


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


def needle_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="longctx needle", formatter_class=_FMT,
        description="Needle-in-a-haystack / passkey retrieval accuracy over context lengths x needle depths.\n\n"
        "Writes OUT/results.json (every cell, saved as it finishes; a rerun skips finished cells) and\n"
        "OUT/heatmap.png (x: context length, y: depth, colour: score 0-1), models side by side.\n\n"
        "example:\n  longctx needle base/ extended/ --lengths 1k,2k,4k --depths 5 --task passkey --out runs/niah",
    )
    p.add_argument("models", nargs="+", metavar="MODEL", help="checkpoint directories (two compare side by side)")
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
    p.add_argument("--chat", action="store_true", help="wrap prompts in the model's chat template")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--overwrite", action="store_true", help="start over instead of resuming OUT/results.json")
    _model_flags(p)
    _judge_flags(p)
    a = p.parse_args(argv)
    check_int("--max-new-tokens", a.max_new_tokens)
    check_int("--samples", a.samples)
    check_int("--num-needles", a.num_needles)
    _check_model_flags(a)
    _check_judge_flags(a)
    check_out_vs_inputs(a.out, [*a.models, *(a.haystack or []), a.judge_local])

    from eval_longbench.fingerprint import text_fingerprint
    from eval_longbench.haystack import read_text_sources, split_sentences
    from eval_longbench.judge import NEEDLE_JUDGE_TEMPLATE
    from eval_longbench.models import hf_generate_fn
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
    store = ResultStore(out / "results.json", {**cfg.meta(), "chat": a.chat,
                                               "haystack_sha256": text_fingerprint("\n".join(filler) if filler else None)},
                        overwrite=a.overwrite)
    _bind_models(store, a.models, a.names)

    def evaluate(name, model, tok):
        cells = run_needle(hf_generate_fn(model, tok, chat=a.chat), tok, cfg, store, model_name=name, scorer=scorer, filler=filler)
        print(f"{name}: mean score {sum(c['score'] for c in cells) / len(cells):.3f} over {len(cells)} cells")
        return cells

    cells = _each_model(a, a.models, evaluate)
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
    p.add_argument("models", nargs="+", metavar="MODEL", help="checkpoint directories (one line each on the plot)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--lengths", default="256,512,1024", help="evaluation lengths, e.g. 1k,2k,4k (default: 256,512,1024)")
    p.add_argument("--text", nargs="+", default=["builtin"],
                   help="text files/directories (*.txt), or 'builtin' (seeded noise sentences: periodic, easy) (default: builtin)")
    p.add_argument("--stride", type=int, default=256, help="tokens the window moves each step; capped at the length (default: 256)")
    p.add_argument("--max-tokens", type=int, help="tokens of text scored at every length (default: the largest length)")
    p.add_argument("--chunk-size", type=int, default=1024, help="positions per output-head chunk (default: 1024)")
    p.add_argument("--overwrite", action="store_true", help="start over instead of resuming OUT/results.json")
    _model_flags(p)
    a = p.parse_args(argv)
    check_int("--stride", a.stride)
    check_int("--chunk-size", a.chunk_size)
    check_int("--max-tokens", a.max_tokens, minimum=2)  # at least one token to score after the first
    _check_model_flags(a)
    check_out_vs_inputs(a.out, [*a.models, *a.text])

    from eval_longbench.fingerprint import text_fingerprint
    from eval_longbench.haystack import builtin_text, read_text_sources
    from eval_longbench.plots import plot_ppl
    from eval_longbench.ppl import rows_to_csv, run_ppl
    from eval_longbench.results import ResultStore

    lengths = parse_lengths(a.lengths)
    need = max(lengths) if a.max_tokens is None else a.max_tokens
    text = builtin_text(need) if a.text == ["builtin"] else read_text_sources(a.text)
    out = Path(a.out)
    store = ResultStore(out / "results.json", {"text": a.text, "text_sha256": text_fingerprint(text), "stride": a.stride,
                                               "max_tokens": need}, overwrite=a.overwrite)
    _bind_models(store, a.models, a.names)

    def evaluate(name, model, tok):
        ids = tok(text, add_special_tokens=True)["input_ids"]
        rows = run_ppl(model, ids, lengths, store, model_name=name, stride=a.stride, max_tokens=need, chunk_size=a.chunk_size)
        for r in rows:
            print(f"{name} @ {r['length']}: ppl {r['ppl']:.3f} over {r['tokens']} tokens")
        return rows

    rows = [r for model_rows in _each_model(a, a.models, evaluate).values() for r in model_rows]
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
        "      --few-shots few_shots.json --judge-url https://api.openai.com/v1 --judge-model gpt-4o --out runs/lbc",
    )
    p.add_argument("model", metavar="MODEL", help="checkpoint directory of the chat model under test")
    p.add_argument("--cases", required=True, help="test cases: JSON list or JSONL with idx, prompt, query, answer")
    p.add_argument("--few-shots", required=True, help="few-shot file: list; entry i = three {answer, score} for case idx i+1")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--max-length", type=int, default=64000, help="prompt tokens kept (first and last halves) (default: 64000)")
    p.add_argument("--max-new-tokens", type=int, default=1024)
    p.add_argument("--generate-only", action="store_true", help="only write predictions; rate them in a later run")
    p.add_argument("--overwrite", action="store_true", help="start over instead of resuming OUT/results.json")
    _model_flags(p)
    _judge_flags(p)
    a = p.parse_args(argv)
    check_int("--max-length", a.max_length, minimum=2)  # the first and last halves must each keep a token
    check_int("--max-new-tokens", a.max_new_tokens)
    _check_model_flags(a)
    _check_judge_flags(a)
    check_out_vs_inputs(a.out, [a.model, a.cases, a.few_shots, a.judge_local])

    from eval_longbench.longbench_chat import (
        generate_predictions, judge_predictions, load_cases, load_few_shots, report, stored_predictions,
    )
    from eval_longbench.models import hf_generate_fn
    from eval_longbench.results import ResultStore

    cases, shots = load_cases(a.cases), load_few_shots(a.few_shots)
    judge = None if a.generate_only else build_judge(a)
    if not a.generate_only and judge is None:
        raise LongctxError("a judge is needed: pass --judge-url URL (key in $" + a.judge_key_env + ") or --judge-local DIR, or --generate-only")
    out = Path(a.out)
    store = ResultStore(out / "results.json", {"model": model_names([a.model], a.names)[0], "max_length": a.max_length,
                                               "max_new_tokens": a.max_new_tokens}, overwrite=a.overwrite)
    _bind_models(store, [a.model], a.names)
    pending = [c for c in cases if f"pred/{c['idx']}" not in store]
    if pending:
        _each_model(a, [a.model], lambda _name, model, tok: generate_predictions(
            cases, hf_generate_fn(model, tok, chat=True), tok, store, max_length=a.max_length, max_new_tokens=a.max_new_tokens))
    preds = stored_predictions(cases, store)
    if judge is not None:
        judge_predictions(cases, preds, shots, judge, store, concurrency=a.concurrency, few_shots_path=a.few_shots)
    rep = report(cases, store)
    atomic_write_json(out / "report.json", rep)
    mean = "n/a" if rep["mean_score"] is None else f"{rep['mean_score']:.2f}"
    print(f"LongBench-Chat: mean score {mean} (1-10) over {rep['rated']}/{rep['cases']} cases; {len(rep['failures'])} without a rating")
    for f in rep["failures"]:
        print(f"  idx {f['idx']}: {f['error']}")
    print(f"wrote {out / 'report.json'}")
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


def _open_ruler_model(a, path: str):
    """The checkpoint at ``path`` as a :class:`eval_longbench.ruler.report.ModelUnderTest` (greedy HF generation)."""
    from eval_longbench.models import hf_generate_fn
    from eval_longbench.ruler.report import ModelUnderTest, use_chat

    model, tok = _load(a, path)
    chat = use_chat(a.chat, tok, path)
    return ModelUnderTest(hf_generate_fn(model, tok, chat=chat), tok, chat)


def ruler_main(argv: list[str]) -> int:
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
    p.add_argument("models", nargs="+", metavar="MODEL", help="checkpoint directories (several compare side by side)")
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
                   help="wrap prompts in the model's chat template; auto: when the tokenizer has one (default: auto)")
    p.add_argument("--max-new-tokens", type=int, help="answer reserve of every task (default: each task's RULER value)")
    p.add_argument("--overwrite", action="store_true", help="start over instead of resuming OUT/results.json")
    _model_flags(p)
    a = p.parse_args(argv)
    check_int("--samples", a.samples)
    check_int("--max-new-tokens", a.max_new_tokens)
    _check_model_flags(a)
    check_out_vs_inputs(a.out, [*a.models, *(a.haystack or []), a.squad_file, a.hotpotqa_file])

    from eval_longbench.fingerprint import model_fingerprint, text_fingerprint
    from eval_longbench.haystack import read_text_sources, split_sentences
    from eval_longbench.results import ResultStore
    from eval_longbench.ruler.qa import load_qa
    from eval_longbench.ruler.registry import select_tasks
    from eval_longbench.ruler.report import evaluate_model, parse_threshold, trained_window, write_reports
    from eval_longbench.ruler.runner import RulerConfig, comparison_table, markdown_table

    threshold = parse_threshold(a.threshold)
    qa_files = {fmt: f for fmt, f in (("squad", a.squad_file), ("hotpotqa", a.hotpotqa_file)) if f}
    qa = {fmt: load_qa(f, fmt) for fmt, f in qa_files.items()}
    cfg = RulerConfig(select_tasks(a.tasks, available=set(qa)), parse_lengths(a.lengths), a.samples, a.seed, a.max_new_tokens)
    essay = split_sentences(read_text_sources(a.haystack)) if a.haystack else None
    meta = {**cfg.meta(), "chat": a.chat, "haystack_sha256": text_fingerprint("\n".join(essay) if essay else None),
            **{f"{fmt}_sha256": text_fingerprint(Path(f).read_text(encoding="utf-8")) for fmt, f in qa_files.items()}}
    store = ResultStore(Path(a.out) / "results.json", meta, overwrite=a.overwrite)
    summaries = {}
    for path, name in zip(a.models, model_names(a.models, a.names)):
        summaries[name] = evaluate_model(store, cfg, name, model_fingerprint(path), lambda path=path: _open_ruler_model(a, path),
                                         threshold=threshold, window=trained_window(path), essay=essay, qa=qa)
        gc.collect()
        print(markdown_table(name, summaries[name]))
    if len(summaries) > 1:
        print(comparison_table(summaries))
    print("wrote " + ", ".join(map(str, write_reports(summaries, a.out, a.threshold))))
    return 0
