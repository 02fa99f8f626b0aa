"""The quick start's report folder: heatmaps, perplexity plot, summary (markdown + JSON), commands.sh.

A view of a finished recipe run (:class:`QuickstartView`): the base, each method's extended model
(training-free) and its trained one, with accuracy and perplexity per window.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

from eval_longbench.plots import PROMPT_XLABEL, plot_heatmaps, plot_ppl, prompt_heatmap_title
from longctx.core.io import atomic_write_json, atomic_write_text
from longctx.quickstart.config import QuickstartConfig
from longctx.quickstart.eta import STAGES
from longctx.quickstart.recipe import method_label
from longctx.recipe.steps import write_commands_sh

PHASES = {"evaluate": ("base-eval",), "extend": ("extend", "extended-eval"), "pack": ("pack",), "train": ("train",),
          "re-evaluate": ("eval",)}
"""The quick start's steps (:data:`longctx.quickstart.eta.STAGES`) in the recipe runner's phases."""


def quickstart_timings(phases: dict[str, float], done_only: bool = False) -> dict[str, float]:
    """Seconds per quick start step from the runner's seconds per phase (``done_only``: the steps that ran)."""
    return {k: round(sum(phases.get(p, 0.0) for p in PHASES[k]), 1) for k in STAGES
            if not done_only or any(p in phases for p in PHASES[k])}


@dataclass
class QuickstartView:
    """What the report shows: the run's models in order (base, extended, trained) with their evaluations."""

    cfg: QuickstartConfig
    out: Path
    base: Path
    context: int
    target: int
    windows: list[int]
    lengths: list[int]
    overhead: int
    timings: dict[str, float]
    models: dict[str, dict]
    """name -> {"path", "method", "stage", "cells", "passkey", "ppl"}: the runner's evaluation of that model."""
    commands: list[str]

    @classmethod
    def of(cls, run, cfg: QuickstartConfig) -> QuickstartView:
        method = {r["name"]: method_label(r["resolved"]["extend"]["method"]) for r in run.stages}
        models = {"base": {**run.base_eval, "method": "none", "stage": "shipped"}}
        for r in run.stages:
            models[r["extended"]["model"]] = {**r["extended"], "method": method[r["name"]], "stage": "training-free"}
        for r in run.stages:
            name = run.layout.name(run.recipe.stage(r["name"]))
            models[name] = {"path": r["output"], "cells": r["cells"], "passkey": r["passkey"], "ppl": r["ppl"],
                            "method": method[r["name"]], "stage": "fine-tuned"}
        windows = list(run.recipe.eval.passkey_lengths)
        return cls(cfg, run.out, run.base, run.recipe.base_context, run.recipe.stages[0].context, windows,
                   run.prompt_lengths(run.recipe.eval), run.overhead, quickstart_timings(run.timings), models,
                   run.commands)


def summary_rows(view: QuickstartView) -> list[dict]:
    """One row per model: passkey accuracy (with n) and perplexity per window (m x the original context).

    The passkey prompt of a window has ``window - overhead`` tokens, so prompt + chat template + reply
    fill the window exactly; perplexity is measured with windows of exactly that length.
    """
    rows = []
    for name, info in view.models.items():
        rows.append({"model": name, "method": info["method"], "stage": info["stage"], "path": info["path"],
                     "windows": {str(W): {"prompt_tokens": L, "accuracy": info["passkey"][str(W)]["accuracy"],
                                          "n": info["passkey"][str(W)]["n"], "ppl": info["ppl"][str(W)]}
                                 for W, L in zip(view.windows, view.lengths)}})
    return rows


def markdown_table(rows: list[dict], windows: list[int], context: int) -> str:
    head = " | ".join(f"{W} ({W // context}×)" for W in windows)
    lines = [f"| model | stage | {head} |", "|---|---|" + "---:|" * len(windows)]
    for r in rows:
        cells = " | ".join(f"{r['windows'][str(W)]['accuracy']:.2f} / {r['windows'][str(W)]['ppl']:.3g}" for W in windows)
        lines.append(f"| {r['model']} | {r['stage']} | {cells} |")
    return "\n".join(lines)


def heatmap_titles(view) -> dict[str, str]:
    """Titles of heatmap_before.png and heatmap_after.png: both name the x axis' unit (prompt tokens)."""
    return {"before": prompt_heatmap_title("before training", view.overhead),
            "after": prompt_heatmap_title(f"after {view.cfg.steps} training steps", view.overhead)}


def write_report(view: QuickstartView, total_seconds: float) -> dict:
    out = view.out / "report"
    out.mkdir(parents=True, exist_ok=True)
    cells = {n: v["cells"] for n, v in view.models.items()}
    before = {n: cells[n] for n, v in view.models.items() if v["stage"] != "fine-tuned"}
    after = {n: cells[n] for n, v in view.models.items() if v["stage"] in ("shipped", "fine-tuned")}
    titles = heatmap_titles(view)
    plot_heatmaps(before, out / "heatmap_before.png", title=titles["before"], xlabel=PROMPT_XLABEL)
    plot_heatmaps(after, out / "heatmap_after.png", title=titles["after"], xlabel=PROMPT_XLABEL)
    plot_ppl([{"model": n, "length": int(W), "ppl": p} for n, v in view.models.items() for W, p in v["ppl"].items()],
             out / "ppl.png", title="perplexity vs context length (builtin noise text)")
    rows = summary_rows(view)
    c = view.cfg
    n = c.eval_depths * c.eval_samples
    summary = {
        "base_model": str(view.base), "original_context": view.context, "target_context": view.target,
        "windows": view.windows, "passkey_prompt_tokens": view.lengths, "chat_overhead_tokens": view.overhead,
        "passkey_n_per_length": n, "config": c.to_dict(),
        "timings_s": view.timings, "total_seconds": round(total_seconds, 1),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "models": rows,
    }
    atomic_write_json(out / "summary.json", summary)
    md = [
        "# longctx quick start",
        "",
        f"Base model: `{view.base}` (context {view.context}); extended ×{c.factor} to {view.target} "
        f"with {', '.join(c.methods)}; {c.steps} training steps per method on "
        f"{c.sp_degree} sequence-parallel ranks (ring attention, gloo).",
        "",
        f"Each cell: passkey accuracy (greedy, exact match; n = {n} per length over {c.eval_depths} depths; "
        f"the prompt has {view.overhead} tokens less than the window, which the chat template and the reply fill) / "
        f"perplexity (sliding window of that length, stride {c.ppl_stride}, builtin noise text).",
        "",
        markdown_table(rows, view.windows, view.context),
        "",
        f"Wall time: {total_seconds / 60:.1f} min on {summary['machine']['cpus']} CPU core(s) "
        "(" + ", ".join(f"{k}: {v:.0f} s" for k, v in view.timings.items()) + ").",
        "",
        "Files: `heatmap_before.png`, `heatmap_after.png`, `ppl.png`, `summary.json`, `commands.sh`.",
        "",
    ]
    atomic_write_text(out / "summary.md", "\n".join(md))
    write_commands_sh(out / "commands.sh", ["The longctx commands equivalent to each step of this quick start.",
                                            "Replace the base model path with your own checkpoint to repeat them."],
                      view.commands)
    print(f"\nquick start done in {total_seconds / 60:.1f} min; report in {out}", flush=True)
    return summary
