"""A recipe run's report folder: per-stage passkey heatmaps, curves, a summary table (markdown + JSON), commands.sh."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

from eval_longbench.plots import PROMPT_XLABEL, plot_heatmaps, plot_ppl, plt, prompt_heatmap_title, save_figure
from longctx.core.io import atomic_write_json, atomic_write_text
from longctx.recipe.steps import write_commands_sh


def summary_rows(run) -> list[dict]:
    """One row per model (the base, then per stage its extended model when evaluated before training and its
    trained model): accuracy, n and perplexity per window."""
    rows = [{"model": "base", "stage": 0, "context": run.recipe.base_context,
             "passkey": run.base_eval.get("passkey", {}), "ppl": run.base_eval.get("ppl", {}),
             "train_seconds": 0.0, "train_cpu_seconds": 0.0}]
    for r in run.stages:
        if "extended" in r:
            e = r["extended"]
            rows.append({"model": e["model"], "stage": r["index"], "context": r["context"], "passkey": e["passkey"],
                         "ppl": e["ppl"], "train_seconds": 0.0, "train_cpu_seconds": 0.0, "path": e["path"],
                         "before_training": True})
        rows.append({"model": r["name"], "stage": r["index"], "context": r["context"], "passkey": r["passkey"],
                     "ppl": r["ppl"], "train_seconds": r.get("train_seconds") or 0.0,
                     "train_cpu_seconds": r.get("train_cpu_seconds") or 0.0, "hash": r["hash"],
                     "path": r["output"]})
    return rows


def model_cells(run) -> list[list[dict]]:
    """The passkey cells of each :func:`summary_rows` row, in the same order."""
    out = [run.base_eval.get("cells", [])]
    for r in run.stages:
        out += ([r["extended"]["cells"]] if "extended" in r else []) + [r["cells"]]
    return out


def markdown_table(rows: list[dict]) -> str:
    """``| model | context | 512 | 2048 | ...`` with ``accuracy (n) / ppl`` per window (— where not evaluated)."""
    windows = sorted({int(w) for r in rows for w in (*r["passkey"], *r["ppl"])})
    lines = ["| model | context | train s (CPU s) | " + " | ".join(map(str, windows)) + " |",
             "|---|---:|---:|" + "---:|" * len(windows)]
    for r in rows:
        cells = []
        for w in map(str, windows):
            acc = r["passkey"].get(w)
            ppl = r["ppl"].get(w)
            a = f"{acc['accuracy']:.2f} (n={acc['n']})" if acc else "—"
            cells.append(f"{a} / {ppl:.3g}" if ppl is not None else a)
        lines.append(f"| {r['model']} | {r['context']} | {r['train_seconds']:.0f} ({r['train_cpu_seconds']:.0f}) | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_lines(series: dict[str, list[tuple[float, float]]], path: Path, *, xlabel: str, ylabel: str, title: str,
               logx: bool = False, logy: bool = False) -> Path:
    """One line per series (points sorted by x)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, pts in series.items():
        pts = sorted(pts)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o" if len(pts) < 30 else None, label=name)
    if logx:
        ax.set_xscale("log", base=2)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title(title)
    return save_figure(fig, path)


def loss_curve(run) -> dict[str, list[tuple[float, float]]]:
    """Training loss per stage against the recipe's global step (stage i continues where i-1 ended)."""
    out, offset = {}, 0
    for r in run.stages:
        metrics = Path(r["output"]).parent / "metrics.jsonl"
        pts = []
        if metrics.is_file():
            for line in metrics.read_text().splitlines():
                m = json.loads(line)
                if "loss" in m and "step" in m:
                    pts.append((offset + m["step"], m["loss"]))
        out[r["name"]] = pts
        offset = max([p[0] for p in pts], default=offset)
    return out


def write_report(run, total_seconds: float) -> dict:
    out = run.out / "report"
    out.mkdir(parents=True, exist_ok=True)
    rows = summary_rows(run)
    cells = {row["model"]: c for row, c in zip(rows, model_cells(run)) if c}  # evaluated models only
    if cells:
        plot_heatmaps(cells, out / "heatmaps.png", title=prompt_heatmap_title("after each stage", run.overhead),
                      xlabel=PROMPT_XLABEL)
    ppl = [{"model": row["model"], "length": int(w), "ppl": p} for row in rows for w, p in row["ppl"].items()]
    if ppl:
        plot_ppl(ppl, out / "ppl.png", title="perplexity vs context length after each stage (builtin noise text)")
    windows = sorted({int(w) for r in rows for w in r["passkey"]})
    acc = {f"{w} tokens": [(r["stage"], r["passkey"][str(w)]["accuracy"]) for r in rows
                           if str(w) in r["passkey"] and not r.get("before_training")] for w in windows}
    if acc:
        plot_lines(acc, out / "accuracy_by_stage.png", xlabel="stage (0 = base)", ylabel="passkey accuracy",
                   title="passkey accuracy after each stage, one line per window")
    losses = loss_curve(run)
    if any(losses.values()):
        plot_lines(losses, out / "loss.png", xlabel="optimizer step (whole recipe)", ylabel="training loss",
                   title="training loss, one line per stage")
    summary = {"recipe": run.recipe.path, "base_model": str(run.base), "rows": rows,
               "total_seconds": round(total_seconds, 1),
               "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
               "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    atomic_write_json(out / "summary.json", summary)
    ev = run.recipe.eval
    md = [f"# longctx recipe: {run.recipe.path}", "",
          f"Base model `{run.base}` (context {run.recipe.base_context}); {len(run.stages)} stage(s).", "",
          "Each cell: passkey accuracy (greedy exact match; n per window; the prompt is the window minus the "
          f"{run.overhead if ev else '?'}-token chat template and reply) / perplexity (sliding window of that length, builtin "
          "noise text). Stage rows are the trained model of that stage.", "",
          markdown_table(rows), "",
          f"Wall time: {total_seconds / 60:.1f} min on {os.cpu_count()} CPU core(s); "
          + (f"base evaluated with n = {ev.samples} prompts per length over {ev.depths} depths." if ev else
             "no evaluation (eval: false)."), "",
          "Files: `heatmaps.png`, `accuracy_by_stage.png`, `ppl.png`, `loss.png`, `summary.json`, `commands.sh`.", ""]
    atomic_write_text(out / "summary.md", "\n".join(md))
    write_commands_sh(out / "commands.sh", [f"The longctx commands of each stage of {run.recipe.path}.",
                                            "The synthetic data files (data/sft.jsonl) were written by the recipe."],
                      run.commands)
    return summary
