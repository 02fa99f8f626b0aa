"""Shared pieces of every RoPE method: the rotary dimension, the default frequencies, validators.

All math is float64 (transformers computes in float32): a method's frequencies are a property of
the checkpoint, so we compute them exactly and let the model round them when it loads.
Validators raise :class:`LongctxError` (transformers only warns, so a factor of 0.5 slips through).
"""

from __future__ import annotations

import math

import torch

from longctx.core.errors import LongctxError

RopeOutput = tuple[torch.Tensor, float]  # (inv_freq float64 [rotary_dim // 2], attention_factor)


def rotary_dim(head_dim: int, partial_rotary_factor: float = 1.0) -> int:
    """Number of rotated channels: ``int(head_dim * partial_rotary_factor)`` (GLM rotates half)."""
    if head_dim <= 0:
        raise LongctxError(f"head_dim: must be positive, got {head_dim}")
    if not 0.0 < partial_rotary_factor <= 1.0:
        raise LongctxError(f"partial_rotary_factor: must be in (0, 1], got {partial_rotary_factor}")
    dim = int(head_dim * partial_rotary_factor)
    if dim < 2:
        raise LongctxError(f"rotary dim int({head_dim} * {partial_rotary_factor}) = {dim} leaves no rotary pair")
    return dim


def exponents(dim: int) -> torch.Tensor:
    """``2i / dim`` for each rotary pair i, float64."""
    return torch.arange(0, dim, 2, dtype=torch.int64).to(torch.float64) / dim


def default_inv_freq(base: float, dim: int) -> torch.Tensor:
    """RoFormer's frequencies ``theta_i = base^(-2i/dim)`` (arXiv 2104.09864), float64."""
    check_base(base)
    return 1.0 / (float(base) ** exponents(dim))


def wavelengths(inv_freq: torch.Tensor) -> torch.Tensor:
    """Tokens per full turn of each pair: ``2 pi / theta_i``."""
    return 2 * math.pi / inv_freq


def check_base(base: float, field: str = "rope_theta") -> None:
    if not (isinstance(base, (int, float)) and math.isfinite(base) and base > 1.0):
        raise LongctxError(f"{field}: must be a finite number > 1, got {base!r}")


def check_factor(factor: float, field: str = "factor") -> None:
    if not (isinstance(factor, (int, float)) and math.isfinite(factor)):
        raise LongctxError(f"{field}: must be a number, got {factor!r}")
    if factor < 1.0:
        raise LongctxError(f"{field}: must be >= 1 (a factor below 1 shrinks the context), got {factor}")


def check_length(length: int, field: str = "original_max_position_embeddings") -> None:
    if not (isinstance(length, int) and not isinstance(length, bool) and length > 0):
        raise LongctxError(f"{field}: must be a positive integer, got {length!r}")
