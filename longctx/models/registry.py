"""The model families longctx knows, keyed by ``config.json`` ``model_type``: the one allow-list.

A new family is one file (``longctx/models/<family>.py`` declaring its :class:`Family`) plus its row in
:data:`DECLARED` below; ``extend``, ``inspect``, ``train``, ``plan`` and ``make-tiny`` then accept it
(``tests/models/test_model_families.py`` registers a toy family that way).
"""

from __future__ import annotations

from typing import Any

from longctx.core.errors import LongctxError
from longctx.models import glm, glm4, llama, mistral, phi3, qwen2, qwen3
from longctx.models.family import LOGIT_TRANSFORMS, Family, config_getter
from longctx.models.moe import refuse_moe

DECLARED: tuple[Family, ...] = (
    llama.FAMILY,
    mistral.FAMILY,
    qwen2.FAMILY,
    qwen3.FAMILY,
    glm.FAMILY,
    glm4.FAMILY,
    phi3.FAMILY,
)


def by_model_type(families: tuple[Family, ...]) -> dict[str, Family]:
    """``{model_type: family}``; a model_type declared twice is a programming error."""
    out: dict[str, Family] = {}
    for fam in families:
        for model_type in fam.model_types:
            if model_type in out:
                raise ValueError(f"model_type {model_type!r} is declared by two families")
            out[model_type] = fam
    return out


FAMILIES: dict[str, Family] = by_model_type(DECLARED)
"""Every supported ``model_type`` -> its family (in declaration order: ``--family`` choices, error lists)."""

NO_ROPE: dict[str, str] = {
    "gpt2": "learned absolute position embeddings", "gpt_bigcode": "learned absolute position embeddings",
    "opt": "learned absolute position embeddings", "bloom": "ALiBi", "mpt": "ALiBi",
    "bert": "learned absolute position embeddings", "roberta": "learned absolute position embeddings",
    "t5": "relative position buckets", "xglm": "sinusoidal absolute position embeddings",
}
"""Architectures known to have no rotary embedding, with what they use instead (``extend`` names it)."""


def supported() -> str:
    """The supported model types, comma-separated (for error messages)."""
    return ", ".join(FAMILIES)


def find_family(model_type: Any) -> Family | None:
    """The family declaring ``model_type``, or None."""
    return FAMILIES.get(model_type) if isinstance(model_type, str) else None


def family_of(config: Any, source: str) -> Family:
    """The family of ``config`` (a config.json dict or a transformers config object), or one LongctxError line
    naming ``source``, the model type and the supported ones."""
    model_type = config_getter(config)("model_type", None)
    fam = find_family(model_type)
    if fam is None:
        raise LongctxError(f"{source}: model_type {model_type!r} is not a supported model family (supported: "
                           f"{supported()}); a new family is one file in longctx/models/")
    return fam


def logit_transforms(config: Any) -> tuple[str, ...]:
    """The config fields that would change ``config``'s logits after the head: every family's
    :data:`LOGIT_TRANSFORMS` plus those its own family declares."""
    fam = find_family(config_getter(config)("model_type", None))
    return LOGIT_TRANSFORMS + (fam.logit_transforms if fam is not None else ())


def refuse_logit_transforms(config: Any, source: str) -> None:
    """ONE LongctxError line if ``config`` transforms its logits after the head (:func:`logit_transforms`
    set to anything but the identity): the chunked loss computes plain ``hidden @ W^T`` logits."""
    get = config_getter(config)
    for name in logit_transforms(config):
        value = get(name, None)
        if value not in (None, 1, 1.0):
            raise LongctxError(f"{source} sets {name}={value!r}; the chunked loss computes plain "
                               "hidden @ W^T logits, so this model cannot be trained correctly with it yet")


def trainable_family(config: Any, source: str) -> Family:
    """The family of ``config`` (a transformers config object) if longctx trains it exactly, else ONE
    LongctxError line: a mixture of experts (:func:`refuse_moe`), an undeclared family, a sliding window
    (longctx attention attends to the whole causal prefix of each sequence), a logit transform."""
    refuse_moe(config, source)
    fam = family_of(config, source)
    refuse_logit_transforms(config, source)
    window = fam.sliding_window(config)
    if window is not None:
        raise LongctxError(f"{source}: model_type {config.model_type!r} sets {fam.sliding_window_key}={window}: "
                           "longctx attention has no sliding window (it attends to the whole causal prefix), so "
                           f"training would change the model; set {fam.sliding_window_key}: null for full attention")
    return fam
