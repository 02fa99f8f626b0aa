"""The quick start's report folder: heatmaps, perplexity plot, summary (markdown + JSON), commands.sh."""

from __future__ import annotations

import os
import platform
import time

from eval_longbench.passkey import per_length
from longctx.core.io import atomic_write_json, atomic_write_text


def summary_rows(runner) -> list[dict]:
    """One row per model: passkey accuracy (with n) and perplexity per window (m x the original context).

    The passkey prompt of a window has ``window - overhead`` tokens, so prompt + chat template + reply
    fill the window exactly; perplexity is measured with windows of exactly that length.
    """
    rows = []
    for name, info in runner.models.items():
        acc = per_length(runner.needle_cells[name])
        ppl = {int(r["length"]): r["ppl"] for r in runner.ppl_rows[name]}
        rows.append({"model": name, "method": info["method"], "stage": info["stage"], "path": info["path"],
                     "windows": {str(W): {"prompt_tokens": L, "accuracy": acc[L]["accuracy"], "n": acc[L]["n"],
                                          "ppl": ppl[W]}
                                 for W, L in zip(runner.windows, runner.lengths)}})
    return rows


def markdown_table(rows: list[dict], windows: list[int], context: int) -> str:
    head = " | ".join(f"{W} ({W // context}×)" for W in windows)
    lines = [f"| model | stage | {head} |", "|---|---|" + "---:|" * len(windows)]
    for r in rows:
        cells = " | ".join(f"{r['windows'][str(W)]['accuracy']:.2f} / {r['windows'][str(W)]['ppl']:.3g}" for W in windows)
        lines.append(f"| {r['model']} | {r['stage']} | {cells} |")
    return "\n".join(lines)


def heatmap_titles(runner) -> dict[str, str]:
    """Titles of heatmap_before.png and heatmap_after.png: both name the x axis' unit (prompt tokens)."""
    from eval_longbench.plots import prompt_heatmap_title

    return {"before": prompt_heatmap_title("before training", runner.overhead),
            "after": prompt_heatmap_title(f"after {runner.cfg.steps} training steps", runner.overhead)}


def write_report(runner, total_seconds: float) -> dict:
    from eval_longbench.plots import PROMPT_XLABEL, plot_heatmaps, plot_ppl

    out = runner.out / "report"
    out.mkdir(parents=True, exist_ok=True)
    before = {n: runner.needle_cells[n] for n, v in runner.models.items() if v["stage"] != "fine-tuned"}
    after = {n: runner.needle_cells[n] for n, v in runner.models.items() if v["stage"] in ("shipped", "fine-tuned")}
    titles = heatmap_titles(runner)
    plot_heatmaps(before, out / "heatmap_before.png", title=titles["before"], xlabel=PROMPT_XLABEL)
    plot_heatmaps(after, out / "heatmap_after.png", title=titles["after"], xlabel=PROMPT_XLABEL)
    plot_ppl([r for rows in runner.ppl_rows.values() for r in rows], out / "ppl.png",
             title="perplexity vs context length (builtin noise text)")
    rows = summary_rows(runner)
    n = runner.cfg.eval_depths * runner.cfg.eval_samples
    summary = {
        "base_model": str(runner.base), "original_context": runner.context, "target_context": runner.target,
        "windows": runner.windows, "passkey_prompt_tokens": runner.lengths, "chat_overhead_tokens": runner.overhead,
        "passkey_n_per_length": n, "config": runner.cfg.to_dict(),
        "timings_s": runner.timings, "total_seconds": round(total_seconds, 1),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "models": rows,
    }
    atomic_write_json(out / "summary.json", summary)
    md = [
        "# longctx quick start",
        "",
        f"Base model: `{runner.base}` (context {runner.context}); extended ×{runner.cfg.factor} to {runner.target} "
        f"with {', '.join(runner.cfg.methods)}; {runner.cfg.steps} training steps per method on "
        f"{runner.cfg.sp_degree} sequence-parallel ranks (ring attention, gloo).",
        "",
        f"Each cell: passkey accuracy (greedy, exact match; n = {n} per length over {runner.cfg.eval_depths} depths; "
        f"the prompt has {runner.overhead} tokens less than the window, which the chat template and the reply fill) / "
        f"perplexity (sliding window of that length, stride {runner.cfg.ppl_stride}, builtin noise text).",
        "",
        markdown_table(rows, runner.windows, runner.context),
        "",
        f"Wall time: {total_seconds / 60:.1f} min on {summary['machine']['cpus']} CPU core(s) "
        "(" + ", ".join(f"{k}: {v:.0f} s" for k, v in runner.timings.items()) + ").",
        "",
        "Files: `heatmap_before.png`, `heatmap_after.png`, `ppl.png`, `summary.json`, `commands.sh`.",
        "",
    ]
    atomic_write_text(out / "summary.md", "\n".join(md))
    from longctx.recipe.steps import write_commands_sh

    write_commands_sh(out / "commands.sh", ["The longctx commands equivalent to each step of this quick start.",
                                            "Replace the base model path with your own checkpoint to repeat them."],
                      runner.commands)
    return summary
