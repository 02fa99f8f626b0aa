"""``longctx ruler``: RULER tasks at each length, the score table and the effective length; parse,
validate, report. The work is :func:`eval_longbench.ruler.report.evaluate_model` (one model, opened only
when samples are missing), run over the models by :func:`eval_longbench.sweep.run_sweep`."""

from __future__ import annotations

import argparse
from pathlib import Path

from eval_longbench.fingerprint import text_fingerprint
from eval_longbench.flags import check_int, parse_lengths
from eval_longbench.model_source import (
    ModelSource, ModelUnderTest, add_model_source_args, input_paths, model_sources, open_source, require_tokenizer,
)
from eval_longbench.models import hf_generate_fn
from eval_longbench.ruler.qa import load_qa
from eval_longbench.ruler.registry import select_tasks
from eval_longbench.ruler.report import evaluate_model, parse_threshold, use_chat, write_reports
from eval_longbench.ruler.runner import RULER_THRESHOLD, RulerConfig, check_lengths, comparison_table, markdown_table
from eval_longbench.ruler.texts import default_haystack, read_haystack
from eval_longbench.sweep import run_sweep
from longctx.core.errors import LongctxError
from longctx.core.io import check_out_vs_inputs

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

Prompts are laid out as NVIDIA/RULER's: the task text is the user turn and the answer prefix ("The
special magic number for ... is") opens the assistant turn; VT and CWE start with a worked example;
noise haystacks are RULER's noise block, one per line. Over --endpoint (a chat API) the prefix ends the
user message instead, as RULER's own API clients send it. Scores are RULER's string-match recall in
0-100 (the fraction of the expected strings in the reply; QA: any accepted answer). Each prompt plus the
task's answer reserve (128 tokens NIAH, 30 VT, 120 CWE, 50 FWE, 32 QA; --max-new-tokens overrides) fits
the length in the model's own tokenizer, chat template, example and prefix included. A task that cannot
fit a length at all shows n/a there, and that length's average is over the tasks that fit.
"""


def _open_ruler_model(a: argparse.Namespace, src: ModelSource) -> tuple[ModelUnderTest, bool]:
    """``(model, chat)``: ``src`` opened (a checkpoint or an endpoint) and whether its prompts go through
    the chat template, whose tokens then count against each length. A checkpoint in chat mode gets the
    templated conversation, answer prefix included, and adds nothing to it."""
    m = open_source(a, src, chat=False)
    chat = use_chat(a.chat, m.tokenizer, src.config_dir)
    if chat and not src.is_endpoint:
        m.generate = hf_generate_fn(m.model, m.tokenizer, templated=True)
    return m, chat


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="longctx ruler", formatter_class=argparse.RawDescriptionHelpFormatter,
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
                   help="the essay haystack: text files, folders of *.txt, or RULER's PaulGrahamEssays.json (default: the "
                   "World English Bible when Debian's sword-text-web is installed, else a short built-in essay, which "
                   "repeats past ~1K tokens: a warning says so)")
    p.add_argument("--squad-file", metavar="FILE", help="SQuAD-format JSON for qa_1 (never downloaded)")
    p.add_argument("--hotpotqa-file", metavar="FILE", help="HotpotQA-format JSON for qa_2 (never downloaded)")
    p.add_argument("--chat", default="auto", choices=["auto", "on", "off"],
                   help="wrap prompts in the model's chat template; auto: when the tokenizer has one. An endpoint always "
                   "applies its own template: --chat off is refused there (default: auto)")
    p.add_argument("--max-new-tokens", type=int, help="answer reserve of every task (default: each task's RULER value)")
    p.add_argument("--overwrite", action="store_true", help="start over instead of resuming OUT/results.json")
    return p


def main(argv: list[str]) -> int:
    a = _parser().parse_args(argv)
    check_int("--samples", a.samples)
    check_int("--max-new-tokens", a.max_new_tokens)
    sources = model_sources(a)
    require_tokenizer(a, "ruler")
    if a.endpoint and a.chat == "off":
        raise LongctxError("--chat off: an endpoint applies its chat template to every prompt; use auto or on")
    check_out_vs_inputs(a.out, [*input_paths(a), *(a.haystack or []), a.squad_file, a.hotpotqa_file])

    threshold = parse_threshold(a.threshold)
    qa_files = {fmt: f for fmt, f in (("squad", a.squad_file), ("hotpotqa", a.hotpotqa_file)) if f}
    qa = {fmt: load_qa(f, fmt) for fmt, f in qa_files.items()}
    cfg = RulerConfig(select_tasks(a.tasks, available=set(qa)), parse_lengths(a.lengths), a.samples, a.seed, a.max_new_tokens)
    essay = read_haystack(a.haystack) if a.haystack else None
    meta = {**cfg.meta(), "chat": a.chat, "haystack_sha256": text_fingerprint((essay or default_haystack()).joined),
            **{f"{fmt}_sha256": text_fingerprint(Path(f).read_text(encoding="utf-8")) for fmt, f in qa_files.items()}}
    for src in sources:  # before anything is generated or written
        check_lengths(cfg.lengths, src.window(), threshold, src.name)

    def evaluate(store, src):
        summary = evaluate_model(store, cfg, src.name, src.fingerprint_key(), lambda: _open_ruler_model(a, src),
                                 threshold=threshold, window=src.window(), essay=essay, qa=qa)
        print(markdown_table(src.name, summary))
        return summary

    def report(store, summaries):
        if len(summaries) > 1:
            print(comparison_table(summaries))
        print("wrote " + ", ".join(map(str, write_reports(summaries, a.out, a.threshold))))

    run_sweep(a.out, meta, sources, evaluate, report, overwrite=a.overwrite)
    return 0
