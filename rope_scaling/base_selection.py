"""How large should ``rope_theta`` be for a target context? Two published answers (for ABF).

1. Critical base, "Scaling Laws of RoPE-based Extrapolation" (Liu et al., arXiv 2310.05209).
   A pair whose wavelength exceeds the training length never completes a turn in training, so its
   angles beyond that length are out of distribution. The *critical dimension* counts the pairs
   that did complete one: ``d_extra = 2 * ceil((d/2) * log_b(T_train / 2 pi))`` (92 for Llama-2:
   d = 128, b = 1e4, T_train = 4096). After fine-tuning with base beta the extrapolation bound is
   ``T_extra = 2 pi * beta^(d_extra / d)`` (Theorem 2), so for a target T we invert it:
   ``beta = (T / 2 pi)^(d / d_extra)``.

2. Lower bound, "Base of RoPE Bounds Context Length" (Men et al., arXiv 2405.14591).
   Attention to similar tokens should not lose to random ones at any distance; this needs
   ``B(m) = sum_i cos(m * theta_i) >= 0`` for every relative distance ``m <= L`` (their eq. 8,
   theta_i = b^(-2i/d)). The smallest base with that property is found numerically: a log-scale
   scan upward, then bisection on log(base) inside the first feasible step; B(m) is evaluated
   for all m at once, in chunks.
"""

from __future__ import annotations

import math

import torch

from longctx.core.errors import LongctxError
from rope_scaling.common import check_base, default_inv_freq

TWO_PI = 2 * math.pi


def critical_dimension(dim: int, train_base: float, train_length: int) -> int:
    """``d_extra = 2 ceil((d/2) log_b(T_train / 2 pi))``, clipped to ``[2, d]`` (2310.05209 §3)."""
    check_base(train_base)
    if train_length <= TWO_PI:
        raise LongctxError(f"train_length: must exceed 2*pi tokens, got {train_length}")
    d_extra = 2 * math.ceil((dim / 2) * math.log(train_length / TWO_PI) / math.log(train_base))
    return max(2, min(dim, d_extra))


def extrapolation_bound(base: float, dim: int, d_extra: int) -> float:
    """``T_extra = 2 pi * base^(d_extra / d)``: the longest context a fine-tuned base supports."""
    return TWO_PI * float(base) ** (d_extra / dim)


def critical_base(target_length: int, *, dim: int, train_length: int, train_base: float = 10000.0) -> float:
    """Smallest base whose extrapolation bound reaches ``target_length`` (2310.05209, Thm 2 inverted)."""
    if target_length <= TWO_PI:
        raise LongctxError(f"target_length: must exceed 2*pi tokens, got {target_length}")
    d_extra = critical_dimension(dim, train_base, train_length)
    return (target_length / TWO_PI) ** (dim / d_extra)


def decay_curve(base: float, dim: int, max_len: int) -> torch.Tensor:
    """``B(m) = sum_i cos(m theta_i)`` for m = 0..max_len (float64), the quantity of 2405.14591."""
    theta = default_inv_freq(base, dim)
    m = torch.arange(max_len + 1, dtype=torch.float64)
    return torch.cos(m[:, None] * theta[None, :]).sum(-1)


def decays_safely(base: float, dim: int, max_len: int, chunk_elems: int = 1 << 22) -> bool:
    """True when ``B(m) >= 0`` for every integer m in [0, max_len]; stops at the first violation."""
    theta = default_inv_freq(base, dim)
    step = max(1, chunk_elems // theta.numel())
    for start in range(0, max_len + 1, step):
        m = torch.arange(start, min(max_len + 1, start + step), dtype=torch.float64)
        if bool((torch.cos(m[:, None] * theta[None, :]).sum(-1) < 0).any()):
            return False
    return True


def lower_bound_base(target_length: int, *, dim: int, lo: float = 1.5, hi: float = 1e15, rtol: float = 1e-6) -> float:
    """Smallest base (to relative ``rtol``) with ``B(m) >= 0`` for all m <= target_length (2405.14591).

    The condition is not monotone in the base everywhere, so we return the first feasible base
    reached scanning upward on a log grid (8 points per decade), refined by bisection.
    """
    if target_length < 1:
        raise LongctxError(f"target_length: must be >= 1, got {target_length}")
    if dim < 4:
        raise LongctxError(f"rotary dim {dim}: need at least 2 pairs (one pair's frequency is 1 for every base)")
    step = 10 ** (1 / 8)
    prev, cur = None, lo
    while cur <= hi:
        if decays_safely(cur, dim, target_length):
            break
        prev, cur = cur, cur * step
    else:
        raise LongctxError(f"no base up to {hi:g} keeps sum_i cos(m theta_i) >= 0 for m <= {target_length} (dim {dim})")
    if prev is None:
        return cur
    a, b = math.log(prev), math.log(cur)  # a infeasible, b feasible
    while b - a > rtol:
        mid = (a + b) / 2
        if decays_safely(math.exp(mid), dim, target_length):
            b = mid
        else:
            a = mid
    return math.exp(b)
