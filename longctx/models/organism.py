"""The shipped tiny pretrained model ("organism", longctx/assets/organism): where it is and how it was measured.

A 0.46M-parameter Llama with a byte tokenizer and a 512-token context, pretrained on chat passkey
tasks (its recipe: ``longctx organism train``); it retrieves inside its window and fails far beyond,
so a context extension is visible on a laptop CPU. Recipes name it ``base: organism``.
"""

from __future__ import annotations

from pathlib import Path

from longctx.core.errors import LongctxError

CHECK_SEED = 20261126
"""Evaluation seed of ``longctx organism check`` and the model card (never a pretraining data seed: those
live in another namespace, :func:`longctx.recipe.pretrain_data.sample_seed`)."""


def shipped_model_dir() -> Path:
    """The tiny pretrained model shipped inside the package (longctx/assets/organism)."""
    path = Path(__file__).resolve().parent.parent / "assets" / "organism"
    if not (path / "config.json").is_file():
        raise LongctxError(f"{path}: the shipped organism is missing (reinstall longctx or run `longctx organism train`)")
    return path
