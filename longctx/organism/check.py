"""Passkey accuracy per context length of a chat-prompted checkpoint (the shipped model's yardstick).

A thin layer over :mod:`eval_longbench.needle`: the same prompts, greedy generation and exact-match
scoring as ``longctx needle --task passkey --chat``, summarised per length (cells of all depths
pooled). Seeds here never coincide with the pretraining data's (different namespaces, see
:func:`longctx.organism.data.sample_seed`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from longctx.core.errors import LongctxError

CHECK_SEED = 20261126
MAX_NEW_TOKENS = 24  # "The pass key is 12345." is 22 tokens
"""Default evaluation seed of ``longctx organism check`` and the model card."""


def shipped_model_dir() -> Path:
    """The tiny pretrained model shipped inside the package (longctx/assets/organism)."""
    path = Path(__file__).resolve().parent.parent / "assets" / "organism"
    if not (path / "config.json").is_file():
        raise LongctxError(f"{path}: the shipped organism is missing (reinstall longctx or run `longctx organism train`)")
    return path


def per_length(cells: Sequence[dict]) -> dict[int, dict]:
    """``{length: {"accuracy", "n"}}`` pooling every sample of every depth at that length."""
    out: dict[int, dict] = {}
    for c in cells:
        row = out.setdefault(int(c["length"]), {"hits": 0.0, "n": 0})
        row["hits"] += sum(s["score"] for s in c["samples"])
        row["n"] += len(c["samples"])
    return {L: {"accuracy": r["hits"] / r["n"], "n": r["n"]} for L, r in sorted(out.items())}


def passkey_cells(model_dir: str | Path, lengths: Sequence[int], *, samples_per_cell: int = 4, depths: int = 5,
                  seed: int = CHECK_SEED, results: str | Path | None = None, name: str | None = None,
                  progress: bool = True, model=None, tokenizer=None) -> list[dict]:
    """Run the passkey grid (lengths x ``depths`` evenly spaced depths x ``samples_per_cell``).

    ``results``: a results.json to fill incrementally (resumable); a temporary file when ``None``.
    """
    from eval_longbench.models import hf_generate_fn, load_model
    from eval_longbench.needle import NeedleConfig, depth_grid, run_needle
    from eval_longbench.results import ResultStore

    cfg = NeedleConfig(task="passkey", lengths=[int(L) for L in lengths], depths=depth_grid(depths),
                       samples=samples_per_cell, seed=seed, max_new_tokens=MAX_NEW_TOKENS)
    if model is None:
        model, tokenizer = load_model(model_dir)
    name = name or Path(model_dir).name
    with tempfile.TemporaryDirectory() as tmp:
        store = ResultStore(Path(results) if results else Path(tmp) / "results.json", {**cfg.meta(), "chat": True})
        return run_needle(hf_generate_fn(model, tokenizer, chat=True), tokenizer, cfg, store, model_name=name,
                          progress=progress)


def passkey_accuracy(model_dir: str | Path, lengths: Sequence[int], **kw) -> dict[int, dict]:
    """Per-length passkey exact-match accuracy of ``model_dir`` (see :func:`passkey_cells`)."""
    return per_length(passkey_cells(model_dir, lengths, **kw))


def format_accuracy(acc: dict[int, dict], context: int | None = None) -> str:
    """A markdown table: length, multiple of the original context, accuracy, n."""
    lines = ["| length | × context | passkey accuracy | n |", "|---:|---:|---:|---:|"]
    for L, r in acc.items():
        mult = f"{L / context:g}×" if context else ""
        lines.append(f"| {L} | {mult} | {r['accuracy']:.2f} | {r['n']} |")
    return "\n".join(lines)
