"""``longctx needle``: needle-in-a-haystack / passkey accuracy over lengths x depths; parse, validate,
report. The work is :func:`eval_longbench.needle.run_needle`, run over the models by
:func:`eval_longbench.sweep.run_sweep`."""

from __future__ import annotations

import argparse
from pathlib import Path

from eval_longbench.fingerprint import text_fingerprint
from eval_longbench.flags import check_int, parse_lengths
from eval_longbench.haystack import read_text_sources, split_sentences
from eval_longbench.judge import NEEDLE_JUDGE_TEMPLATE
from eval_longbench.model_source import (
    add_model_source_args, check_model_source, input_paths, model_sources, open_source, require_tokenizer,
)
from eval_longbench.needle import NeedleConfig, depth_grid, run_needle
from eval_longbench.plots import plot_heatmaps
from eval_longbench.sweep import run_sweep
from longctx.cli._judge import add_judge_args, build_judge, check_judge_args, judge_key
from longctx.core.errors import LongctxError
from longctx.core.io import check_out_vs_inputs


def parse_depths(text: str, spacing: str) -> list[float]:
    """``"5"`` -> five depths 0..1 (``spacing``); ``"0,0.5,1"`` or ``"0,50,100"`` (percent) -> as given."""
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


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="longctx needle", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Needle-in-a-haystack / passkey retrieval accuracy over context lengths x needle depths.\n\n"
        "Writes OUT/results.json (every cell, saved as it finishes; a rerun skips finished cells) and\n"
        "OUT/heatmap.png (x: context length, y: depth, colour: score 0-1), models side by side.\n\n"
        "example:\n  longctx needle base/ extended/ --lengths 1k,2k,4k --depths 5 --task passkey --out runs/niah\n"
        "  longctx needle --endpoint http://127.0.0.1:8000/v1 --served-model NAME --tokenizer base/ --out runs/niah-served",
    )
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
    add_judge_args(p)
    return p


def main(argv: list[str]) -> int:
    a = _parser().parse_args(argv)
    check_int("--max-new-tokens", a.max_new_tokens)
    check_int("--samples", a.samples)
    check_int("--num-needles", a.num_needles)
    check_model_source(a)
    require_tokenizer(a, "needle")
    check_judge_args(a)
    check_out_vs_inputs(a.out, [*input_paths(a), *(a.haystack or []), a.judge_local])
    chat = a.chat or bool(a.endpoint)  # chat/completions always applies the served model's chat template

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

    def evaluate(store, src):
        m = open_source(a, src, chat=chat)
        cells = run_needle(m.generate, m.tokenizer, cfg, store, model_name=m.name, scorer=scorer, filler=filler)
        print(f"{m.name}: mean score {sum(c['score'] for c in cells) / len(cells):.3f} over {len(cells)} cells")
        return cells

    def report(store, cells):
        png = plot_heatmaps(cells, out / "heatmap.png", title=f"{cfg.task} retrieval")
        print(f"wrote {store.path} and {png}")

    run_sweep(out, meta, model_sources(a), evaluate, report, overwrite=a.overwrite)
    return 0
