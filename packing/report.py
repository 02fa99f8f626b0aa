"""The closing report of ``longctx pack`` (text) and its length histogram (PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np


def format_report(manifest: dict) -> str:
    """A short human-readable summary of a pack manifest: what went in, what came out, how full."""
    c = manifest["counts"]
    mode = manifest["mode"]
    unit = "packs" if mode == "pack" else "batches"
    spg = manifest["sequences_per_group"]
    lines = [
        f"records       {c['records']:>12,}  ({c['records_bad']:,} bad, skipped)",
        f"sequences     {c['sequences']:>12,}",
        f"{unit:<13} {c[unit]:>12,}  of {manifest['pack_length']:,} tokens" + (" (mode sorted: longest allowed)" if mode == "sorted" else ""),
        f"efficiency    {manifest['efficiency']:>12.2%}  (real tokens / token slots{'' if mode == 'pack' else ', padded to longest per batch'})",
        f"seqs/{unit[:-1] if mode == 'pack' else 'batch':<8} {spg['mean']:>12.2f}  (min {spg['min']}, max {spg['max']})",
        f"tokens        {c['tokens_in']:>12,} in = {c['tokens_packed']:,} packed + {c.get('tokens_dropped', 0):,} dropped",
        f"targets       {c['target_tokens']:>12,}  tokens with a loss",
    ]
    outcomes = {k: v for k, v in c.items() if k.startswith(("records_", "split_", "chunks_")) and k != "records_bad"}
    if outcomes:
        lines.append("outcomes      " + ", ".join(f"{k.removeprefix('records_')}={v:,}" for k, v in outcomes.items()))
    for key, label in (("tokens_dropped_by_reason", "dropped tokens"), ("target_tokens_dropped_by_reason", "lost targets")):
        if c.get(key):
            lines.append(f"{label:<13} " + ", ".join(f"{k}={v:,}" for k, v in c[key].items()))
    if c["bad_by_reason"]:
        lines.append("bad records   " + ", ".join(f"{k}={v:,}" for k, v in c["bad_by_reason"].items()))
    return "\n".join(lines)


def write_histogram(path: Path, lengths: np.ndarray, fill: np.ndarray, cfg) -> None:
    """Two panels: sequence-length histogram, and real tokens per pack (how full the packs are)."""
    matplotlib.use("Agg")
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    bins = np.linspace(0, max(int(lengths.max()), 1), 41)
    a.hist(lengths, bins=bins, color="#4878a8")
    a.set_xlabel("sequence length (tokens)")
    a.set_ylabel("sequences")
    a.set_title(f"{len(lengths):,} sequences")
    a.set_yscale("log")
    b.hist(fill / cfg.pack_length, bins=np.linspace(0, 1, 41), color="#6a9f58")
    b.set_xlabel("real tokens / pack length" if cfg.mode == "pack" else "sequence length / max length")
    b.set_ylabel("packs" if cfg.mode == "pack" else "sequences")
    b.set_title(f"fill ({cfg.mode}, {cfg.strategy if cfg.mode == 'pack' else 'sorted batching'})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
