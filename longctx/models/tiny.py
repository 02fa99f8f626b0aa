"""``longctx make-tiny``: a tiny random checkpoint (+ byte tokenizer) of a chosen model family.

Random weights prove that code runs, not that an extension works; they are what the tests and
the first README command use. The *trained* tiny model shipped with the project is ``organism``.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, CONFIG_MAPPING, PretrainedConfig

from longctx.core.errors import LongctxError
from longctx.core.io import atomic_dir
from longctx.core.tokenizer import byte_tokenizer
from longctx.models.registry import FAMILIES, supported


# keyword -> the make-tiny flag that sets it (errors name the flag the user typed).
FLAGS = {"hidden_size": "--hidden-size", "num_layers": "--layers", "num_heads": "--heads", "num_kv_heads": "--kv-heads",
         "intermediate_size": "--intermediate-size", "max_position_embeddings": "--max-position-embeddings",
         "rope_theta": "--rope-theta", "vocab_size": "vocab_size"}
MIN_VOCAB = 258
"""The byte tokenizer's 256 bytes plus BOS (256) and EOS/PAD (257)."""


def check_sizes(family: str, **sizes: float) -> None:
    """Refuse sizes no model can have, before transformers builds one (it accepts 0 layers, 3 KV heads
    for 4 query heads, ... and fails later, or never): every size a positive integer, the heads dividing
    the width into an even (rotary) head dimension, the KV heads dividing the query heads."""
    for key, value in sizes.items():
        if key == "rope_theta":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise LongctxError(f"{FLAGS[key]}: must be a positive integer, got {value!r}")
    theta = sizes["rope_theta"]
    if isinstance(theta, bool) or not isinstance(theta, (int, float)) or not math.isfinite(theta) or theta <= 1:
        raise LongctxError(f"--rope-theta: must be a finite number > 1, got {theta!r}")
    if sizes["vocab_size"] < MIN_VOCAB:
        raise LongctxError(f"vocab_size: must be at least {MIN_VOCAB} (the byte tokenizer's ids), got {sizes['vocab_size']}")
    hidden, heads, kv = sizes["hidden_size"], sizes["num_heads"], sizes["num_kv_heads"]
    if hidden % heads:
        raise LongctxError(f"--heads: {heads} does not divide --hidden-size {hidden}")
    if heads % kv:
        raise LongctxError(f"--kv-heads: {kv} does not divide --heads {heads} (grouped-query attention)")
    rotary = hidden // heads * FAMILIES[family].partial_rotary_factor
    if rotary % 2:
        raise LongctxError(f"--heads: head dimension {hidden // heads} (--hidden-size / --heads) gives an odd rotary "
                           f"dimension {rotary:g} for {family}; RoPE rotates pairs")


def tiny_config(
    family: str = "llama",
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 128,
    max_position_embeddings: int = 256,
    rope_theta: float = 10000.0,
    vocab_size: int = 258,
    tie_word_embeddings: bool = True,
) -> PretrainedConfig:
    """A small config of ``family`` (a declared model_type) with a plain (default) RoPE, plus the fields the
    family's declaration sets for a tiny model (``Family.tiny_config``, its ``partial_rotary_factor``)."""
    if family not in FAMILIES:
        raise LongctxError(f"--family: unknown {family!r}; choose one of {supported()}")
    check_sizes(family, hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads, num_kv_heads=num_kv_heads,
                intermediate_size=intermediate_size, max_position_embeddings=max_position_embeddings,
                rope_theta=rope_theta, vocab_size=vocab_size)
    kwargs = dict(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        head_dim=hidden_size // num_heads,
        max_position_embeddings=max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": float(rope_theta)},
        tie_word_embeddings=tie_word_embeddings,
        bos_token_id=256,
        eos_token_id=257,
        pad_token_id=257,
    )
    fam = FAMILIES[family]
    if fam.partial_rotary_factor != 1.0:
        kwargs["rope_parameters"]["partial_rotary_factor"] = fam.partial_rotary_factor
    kwargs.update(fam.tiny_config)
    return CONFIG_MAPPING[family](**kwargs)


def make_tiny_checkpoint(out: str | Path, family: str = "llama", seed: int = 0, overwrite: bool = False, **config_kwargs) -> Path:
    """Write a random ``family`` model (safetensors) and the byte tokenizer to ``out``, atomically."""
    config = tiny_config(family, **config_kwargs)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    tokenizer = byte_tokenizer()
    out = Path(out)
    with atomic_dir(out, overwrite=overwrite, command="make-tiny") as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return out
