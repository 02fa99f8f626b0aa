"""Pictures people read faster than tables: needle heatmaps (one or two models) and ppl-vs-length curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import io

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import LinearSegmentedColormap  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter, NullLocator, ScalarFormatter

from longctx.core.io import atomic_write_bytes  # noqa: E402

# Red (missed) -> yellow -> green (found), the colours of gkamradt's NIAH plots.
NIAH_CMAP = LinearSegmentedColormap.from_list("niah", ["#F0496E", "#EBB839", "#0CD79F"])


def heatmap_matrix(cells: Sequence[dict]) -> tuple[list[int], list[float], list[list[float]]]:
    """``(lengths, depths, scores[depth][length])`` from needle cells (``None`` where a cell is missing)."""
    lengths = sorted({c["length"] for c in cells})
    depths = sorted({c["depth"] for c in cells})
    by = {(c["length"], c["depth"]): c["score"] for c in cells}
    return lengths, depths, [[by.get((L, d)) for L in lengths] for d in depths]


def save_figure(fig, path: str | Path) -> Path:
    """Write ``fig`` as a PNG atomically and close it (every plot of ours, and the recipe report, go through here)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def prompt_heatmap_title(what: str, overhead: int) -> str:
    """Title of a passkey heatmap whose x axis is the prompt length: the window minus ``overhead`` tokens
    (chat template + reply). Every such heatmap says so the same way, so before/after read alike."""
    return f"passkey retrieval {what} (x axis: prompt tokens; +{overhead} = window)"


PROMPT_XLABEL = "passkey prompt (tokens)"


def plot_heatmaps(models: dict[str, Sequence[dict]], path: str | Path, title: str = "",
                  xlabel: str = "context length (tokens)") -> Path:
    """One heatmap per model, side by side (x: context length, y: needle depth, colour: score 0-1)."""
    grids = {}
    for name, cells in models.items():
        lengths, depths, m = heatmap_matrix(cells)
        mean = [v for row in m for v in row if v is not None]
        grids[f"{name}\nmean {sum(mean) / len(mean):.2f}" if mean else name] = (
            [_fmt_len(L) for L in lengths], [f"{100 * d:.0f}%" for d in depths], m)
    return plot_grids(grids, path, ylabel="needle depth", vmax=1, title=title, height=4.6, xlabel=xlabel)


def plot_grids(grids: dict[str, tuple[list[str], list[str], list[list[float | None]]]], path: str | Path, *,
               ylabel: str, vmax: float, title: str = "", height: float = 4.6, fmt=None, missing: str = "",
               xlabel: str = "context length (tokens)") -> Path:
    """Score grids side by side, one per title: ``(x labels, y labels, rows of values or None)``; red
    (0) to green (``vmax``), each cell annotated, missing cells blank (labelled ``missing``)."""
    fmt = fmt or (lambda v: f"{v:.2f}".rstrip("0").rstrip(".") if v not in (0, 1) else f"{v:.0f}")
    ncols = max(len(x) for x, _, _ in grids.values())
    fig, axes = plt.subplots(1, len(grids), figsize=(1.0 + 0.9 * max(4, ncols) * len(grids), height), squeeze=False)
    im = None
    for col, (ax, (name, (xs, ys, m))) in enumerate(zip(axes[0], grids.items())):
        data = [[float("nan") if v is None else v for v in row] for row in m]
        im = ax.imshow(data, cmap=NIAH_CMAP, vmin=0, vmax=vmax, aspect="auto", origin="upper")
        ax.set_xticks(range(len(xs)), xs, rotation=45)
        ax.set_yticks(range(len(ys)), ys)
        ax.set_xlabel(xlabel)
        if col == 0:
            ax.set_ylabel(ylabel)
        ax.set_title(name, fontsize=10)
        for i, row in enumerate(m):
            for j, v in enumerate(row):
                if v is not None or missing:
                    ax.text(j, i, missing if v is None else fmt(v), ha="center", va="center", fontsize=7)
    if im is not None:
        fig.colorbar(im, ax=list(axes[0]), label="score", fraction=0.046 / len(grids), pad=0.02)
    if title:
        fig.suptitle(title, y=1.06)
    return save_figure(fig, path)


def plot_task_heatmaps(summaries: dict[str, dict], path: str | Path, title: str = "RULER") -> Path:
    """RULER tables as heatmaps (y: tasks, then the average; x: length; colour: score 0-100), models side by side."""
    grids = {}
    for name, s in summaries.items():
        lengths = sorted(s["average"])
        rows = [[row.get(L) for L in lengths] for row in s["table"].values()] + [[s["average"][L] for L in lengths]]
        eff = s["effective_length"]
        grids[f"{title}: {name}\neffective length {eff if eff is not None else 'none'} (>= {s['threshold']:.1f})"] = (
            [_fmt_len(L) for L in lengths], [*s["table"], "average"], rows)
    n_rows = max(len(s["table"]) + 1 for s in summaries.values())
    return plot_grids(grids, path, ylabel="task", vmax=100, height=1.2 + 0.32 * n_rows, fmt=lambda v: f"{v:.0f}",
                      missing="n/a")


# One marker and line style per curve (colours alone fail where curves coincide and in greyscale);
# hollow markers let a point hidden under another still show its outline.
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
_LINESTYLES = ("-", "--", "-.", ":")


def ppl_figure(rows: Sequence[dict], title: str = "Perplexity vs context length"):
    """The figure :func:`plot_ppl` saves (returned open, so tests can read its axes).

    The y axis is logarithmic: past its trained window a model's perplexity reaches hundreds or
    thousands while an extended one stays near its short-context value, and on a linear axis the
    good curves would collapse into one flat line at the bottom. A log axis still squeezes curves
    that differ by a few percent, so when two or more curves sit within 25 % of the lowest one and the
    whole plot spans over 10x, a zoom panel beside it redraws just those curves on a linear axis (a
    panel, not an inset: an inset would cover the steep curve of the failing model; see
    :func:`_close_curves`). Ticks are the measured lengths in tokens ("512", "1K", ...), not 2^9.
    """
    curves = {}
    for name in dict.fromkeys(r["model"] for r in rows):
        pts = sorted((r["length"], r["ppl"]) for r in rows if r["model"] == name)
        curves[name] = ([p[0] for p in pts], [p[1] for p in pts])
    close = _close_curves(curves)
    if close:
        fig, (ax, zoom) = plt.subplots(1, 2, figsize=(11.0, 4.2), gridspec_kw={"width_ratios": [1.4, 1], "wspace": 0.22})
    else:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
    styles = {name: {"color": f"C{i % 10}", "marker": _MARKERS[i % len(_MARKERS)],
                     "linestyle": _LINESTYLES[i % len(_LINESTYLES)], "markerfacecolor": "none", "markersize": 7,
                     "label": name}
              for i, name in enumerate(curves)}
    for name, (xs, ys) in curves.items():
        ax.plot(xs, ys, **styles[name])
    lengths = sorted({x for xs, _ in curves.values() for x in xs})
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    _length_ticks(ax, lengths)
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    values = [y for _, ys in curves.values() for y in ys]
    if values and max(values) < 10 * min(values):  # under one decade: label the minor ticks too
        ax.yaxis.set_minor_formatter(plain)
    else:
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("perplexity")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    if close:
        for name in close:
            zoom.plot(*curves[name], **styles[name])
        zoom.set_xscale("log", base=2)
        _length_ticks(zoom, lengths)
        zoom.set_xlabel("context length (tokens)")
        zoom.set_title("zoom: the lowest curves, linear y", fontsize=10)
        zoom.grid(True, alpha=0.3)
        zoom.legend(fontsize=8)
        fig.suptitle(title)
    else:
        ax.set_title(title)
    return fig


def _length_ticks(ax, lengths: Sequence[int]) -> None:
    """x ticks at exactly the measured lengths, labelled in tokens ("512", "1K"), no minor labels."""
    ax.xaxis.set_major_locator(FixedLocator(lengths))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _fmt_len(int(round(v)))))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())


def _close_curves(curves: dict[str, tuple[list, list]]) -> list[str]:
    """Curves worth a linear-axis zoom panel: those whose every point is within 25 % of the lowest
    curve's maximum (closer than a marker's height on a log axis spanning a few decades), when there
    are at least two of them and the whole plot spans more than 10x (else the main axis already
    separates them as well as a zoom would)."""
    finite = {n: ys for n, (_, ys) in curves.items() if ys}
    if len(finite) < 2:
        return []
    floor = min(max(ys) for ys in finite.values())
    close = [n for n, ys in finite.items() if max(ys) <= 1.25 * floor]
    top = max(max(ys) for ys in finite.values())
    lowest = min(min(ys) for ys in finite.values())
    return close if len(close) >= 2 and top > 10 * lowest else []


def plot_ppl(rows: Sequence[dict], path: str | Path, title: str = "Perplexity vs context length") -> Path:
    """Perplexity (log scale) against evaluation length, one line per model (see :func:`ppl_figure`)."""
    return save_figure(ppl_figure(rows, title), path)


def _fmt_len(n: int) -> str:
    return f"{n // 1024}K" if n >= 1024 and n % 1024 == 0 else str(n)


def plot_training_curves(records: Sequence[dict], path: str | Path, title: str = "Evaluation during training") -> Path:
    """Evaluation records of a training run (``longctx.train.evaluate``) against the optimizer step.

    Left: passkey accuracy, one line per prompt length, the short-context guard dashed with its base
    value dotted. Right: perplexity (log scale), one line per length, the guard likewise.
    """
    recs = sorted(records, key=lambda r: r["step"])
    fig, (acc, ppl) = plt.subplots(1, 2, figsize=(11.0, 4.2), gridspec_kw={"wspace": 0.28})
    steps = [r["step"] for r in recs]
    for ax, kind in ((acc, "passkey"), (ppl, "ppl")):
        lengths = sorted({int(L) for r in recs for L in r.get(kind, {})})
        for L in lengths:
            pts = [(r["step"], r[kind][str(L)]) for r in recs if str(L) in r.get(kind, {})]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3, label=_fmt_len(L))
        guard = [r["guard"] for r in recs if "guard" in r]
        if guard:
            g = guard[-1]
            ax.plot(steps, [x[kind] for x in guard], "k--", marker=".", label=f"guard {_fmt_len(g['length'])}")
            ax.axhline(g[f"{kind}_base"], color="k", linestyle=":", linewidth=1, label="guard base")
        ax.set_xlabel("optimizer step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, title="length (tokens)", title_fontsize=8)
    acc.set_ylim(-0.03, 1.03)
    acc.set_ylabel("passkey accuracy")
    acc.set_title("passkey accuracy vs step")
    ppl.set_yscale("log")
    ppl.yaxis.set_major_formatter(ScalarFormatter())
    ppl.yaxis.set_minor_formatter(ScalarFormatter())
    ppl.set_ylabel("perplexity")
    ppl.set_title("perplexity vs step")
    fig.suptitle(title)
    return save_figure(fig, path)
