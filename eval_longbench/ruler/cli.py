"""``longctx ruler``: RULER's synthetic tasks over context lengths, effective length, heatmap, comparison.

Only wiring: the tasks live in :mod:`eval_longbench.ruler.registry`, the run in
:func:`eval_longbench.ruler.runner.run_ruler`. How a model is opened (a local checkpoint) is the one
function :func:`open_model`; anything that yields a ``generate(prompt, max_new_tokens) -> str`` callable
and the model's tokenizer can be evaluated the same way.
"""

from __future__ import annotations

import argparse
import gc
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longctx.errors import LongctxError

EXAMPLE = """\
examples:
  longctx ruler base/ extended/ --lengths 4k,8k,16k --tasks all --samples 20 --out runs/ruler
  longctx ruler model/ --lengths 2k,4k,8k --tasks niah_single_1,vt,cwe --threshold base --out runs/ruler
  longctx ruler model/ --tasks all --squad-file dev-v2.0.json --hotpotqa-file hotpot_dev.json --out runs/ruler

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
CWE, 50 FWE, 32 QA; --max-new-tokens overrides) fits the length exactly in the model's own tokenizer,
chat template included; needles sit at seeded depths measured in tokens. A task that cannot fit a
length at all shows n/a and the length's average is over the tasks that fit.
"""


@dataclass
class ModelUnderTest:
    """What a run needs of a model: how to ask it, its tokenizer, and what identifies it."""

    generate: Any  # eval_longbench.models.GenerateFn
    tokenizer: Any
    chat: bool
    """Whether ``generate`` wraps prompts in the tokenizer's chat template (its tokens count against the length)."""


def trained_window(path: str) -> int | None:
    """``max_position_embeddings`` from the checkpoint's ``config.json`` (the window ``--threshold base`` uses)."""
    try:
        cfg = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    cfg = cfg.get("text_config", cfg)
    value = cfg.get("max_position_embeddings")
    return value if isinstance(value, int) else None


def open_model(a, path: str) -> ModelUnderTest:
    """Load the checkpoint at ``path`` (the --dtype/--device/--trust-remote-code flags) as a :class:`ModelUnderTest`."""
    from eval_longbench.cli import _load
    from eval_longbench.models import hf_generate_fn

    model, tok = _load(a, path)
    chat = _use_chat(a.chat, tok, path)
    return ModelUnderTest(hf_generate_fn(model, tok, chat=chat), tok, chat)


def _use_chat(mode: str, tokenizer, where: str) -> bool:
    has = bool(getattr(tokenizer, "chat_template", None))
    if mode == "on" and not has:
        raise LongctxError(f"--chat on: {where}: the tokenizer has no chat template")
    return has if mode == "auto" else mode == "on"


def parse_threshold(text: str) -> float | None:
    """``85.6`` -> 85.6; ``base`` -> ``None`` (each model's own average at its trained window)."""
    if text.strip().lower() == "base":
        return None
    try:
        value = float(text)
    except ValueError:
        raise LongctxError(f"--threshold: {text!r} is neither a score (0-100) nor 'base'") from None
    if not 0 <= value <= 100:
        raise LongctxError(f"--threshold: {value} is outside 0-100")
    return value


def build_parser() -> argparse.ArgumentParser:
    from eval_longbench.cli import _FMT, _model_flags
    from eval_longbench.ruler.runner import RULER_THRESHOLD

    p = argparse.ArgumentParser(
        prog="longctx ruler", formatter_class=_FMT,
        description="RULER (arXiv 2404.06654): retrieval, multi-hop tracing and aggregation tasks at each context\n"
        "length; the score table, the average per length and the effective length (the longest length whose\n"
        "average, and every shorter length's, stays at or above the threshold).\n\n"
        "Writes OUT/results.json (every sample, saved as it finishes; a rerun generates only what is missing\n"
        "and refuses results of another checkpoint under the same name), OUT/summary.json, OUT/table.md\n"
        "(per-model tables and a side-by-side comparison) and OUT/heatmap.png (tasks x lengths).\n\n" + EXAMPLE,
    )
    p.add_argument("models", nargs="+", metavar="MODEL", help="checkpoint directories (several compare side by side)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--lengths", default="4k,8k,16k", help="total lengths (prompt + answer reserve) in tokens (default: 4k,8k,16k)")
    p.add_argument("--tasks", default="all", help="all, or a comma list of task names (see below) (default: all)")
    p.add_argument("--samples", type=int, default=5, help="prompts per task and length; the cell is their mean (default: 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threshold", default=str(RULER_THRESHOLD),
                   help=f"average a length must keep to count as effective: a score, or 'base' = the model's own "
                   f"average at its trained window (config max_position_embeddings; must be one of --lengths) "
                   f"(default: {RULER_THRESHOLD}, RULER's: Llama-2-7B at 4K)")
    p.add_argument("--haystack", nargs="*", metavar="PATH",
                   help="text files/directories for the essay haystack (RULER: Paul Graham essays) (default: a built-in essay)")
    p.add_argument("--squad-file", metavar="FILE", help="SQuAD-format JSON for qa_1 (never downloaded)")
    p.add_argument("--hotpotqa-file", metavar="FILE", help="HotpotQA-format JSON for qa_2 (never downloaded)")
    p.add_argument("--chat", default="auto", choices=["auto", "on", "off"],
                   help="wrap prompts in the model's chat template: auto = when the tokenizer has one (default: auto)")
    p.add_argument("--max-new-tokens", type=int, help="answer reserve of every task (default: each task's RULER value)")
    p.add_argument("--overwrite", action="store_true", help="start over instead of resuming OUT/results.json")
    _model_flags(p)
    return p


def main(argv: list[str]) -> int:
    from eval_longbench.cli import _check_model_flags, check_int, model_names, parse_lengths
    from eval_longbench.fingerprint import model_fingerprint, text_fingerprint
    from eval_longbench.haystack import read_text_sources, split_sentences
    from eval_longbench.plots import plot_task_heatmaps
    from eval_longbench.results import ResultStore
    from eval_longbench.ruler.qa import load_qa
    from eval_longbench.ruler.registry import select_tasks
    from eval_longbench.ruler.runner import RulerConfig, comparison_table, markdown_table, record_key, run_ruler, summarize
    from longctx.io import atomic_write_json, atomic_write_text, check_out_vs_inputs

    a = build_parser().parse_args(argv)
    check_int("--samples", a.samples)
    check_int("--max-new-tokens", a.max_new_tokens)
    _check_model_flags(a)
    threshold = parse_threshold(a.threshold)
    check_out_vs_inputs(a.out, [*a.models, *(a.haystack or []), a.squad_file, a.hotpotqa_file])

    qa = {}
    for fmt, path in (("squad", a.squad_file), ("hotpotqa", a.hotpotqa_file)):
        if path:
            qa[fmt] = load_qa(path, fmt)
    cfg = RulerConfig(select_tasks(a.tasks, available=set(qa)), parse_lengths(a.lengths), a.samples, a.seed,
                      a.max_new_tokens)
    essay = split_sentences(read_text_sources(a.haystack)) if a.haystack else None
    out = Path(a.out)
    meta = {**cfg.meta(), "chat": a.chat, "haystack_sha256": text_fingerprint("\n".join(essay) if essay else None),
            **{f"{fmt}_sha256": text_fingerprint(Path(p).read_text(encoding="utf-8"))
               for fmt, p in (("squad", a.squad_file), ("hotpotqa", a.hotpotqa_file)) if p}}
    store = ResultStore(out / "results.json", meta, overwrite=a.overwrite)

    summaries = {}
    for path, name in zip(a.models, model_names(a.models, a.names)):
        store.bind_model(name, model_fingerprint(path))  # before loading: another checkpoint is refused at once
        keys = [record_key(name, t, cfg, L, i) for t in cfg.tasks for L in cfg.lengths for i in range(cfg.samples)]
        if all(k in store for k in keys):
            records = [store.get(k) for k in keys]
            print(f"{name}: all {len(keys)} samples already in {out / 'results.json'}; nothing to generate")
        else:
            m = open_model(a, path)
            records = run_ruler(m.generate, m.tokenizer, cfg, store, model_name=name, chat=m.chat, essay=essay, qa=qa)
            del m
            gc.collect()
        summaries[name] = summarize(records, threshold, trained_window(path))
        print(markdown_table(name, summaries[name]))

    text = "\n".join(markdown_table(n, s) for n, s in summaries.items())
    if len(summaries) > 1:
        text += "\n### comparison (average per length)\n\n" + comparison_table(summaries)
        print(comparison_table(summaries))
    atomic_write_text(out / "table.md", text)
    atomic_write_json(out / "summary.json", {"threshold": a.threshold, "models": summaries})
    png = plot_task_heatmaps(summaries, out / "heatmap.png")
    print(f"wrote {out / 'table.md'}, {out / 'summary.json'} and {png}")
    return 0
