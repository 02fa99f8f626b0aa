"""YaRN, "Yet another RoPE extensioN" (Peng et al., arXiv 2309.00071), NTK-by-parts + attention scale.

Each pair is judged by how many turns r_i = L0 / lambda_i it makes inside the original window L0:
pairs with r_i > beta_fast (high frequency) are left alone (extrapolated), pairs with
r_i < beta_slow (low frequency, never a full turn) are interpolated by s, and a linear ramp over
the pair *index* blends the two in between (eq. 17-18 of the paper). The ramp ends are the
(fractional) pair indices where r_i equals beta_fast / beta_slow:
``i(r) = d * ln(L0 / (2 pi r)) / (2 ln b)``, floored/ceiled when ``truncate``.
Attention is scaled by ``sqrt(1/t) = 0.1 ln s + 1`` (eq. 22); DeepSeek's ``mscale`` /
``mscale_all_dim`` variant divides two such terms.
"""

from __future__ import annotations

import math

import torch

from longctx.core.errors import LongctxError
from rope_scaling.common import RopeOutput, check_factor, check_length, default_inv_freq, rotary_dim
from rope_scaling.method import Param, RopeMethod


def yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    """``0.1 * mscale * ln(scale) + 1`` for scale > 1, else 1."""
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def yarn_attention_factor(factor: float, mscale: float | None = None, mscale_all_dim: float | None = None) -> float:
    """The cos/sin multiplier; ``mscale(s, m) / mscale(s, m_all)`` when both are given (and non-zero)."""
    if mscale and mscale_all_dim:
        return yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all_dim)
    return yarn_mscale(factor)


def correction_dim(num_rotations: float, dim: int, base: float, original_length: int) -> float:
    """Fractional pair index whose wavelength fits ``num_rotations`` turns into ``original_length``."""
    return dim * math.log(original_length / (num_rotations * 2 * math.pi)) / (2 * math.log(base))


def correction_range(beta_fast: float, beta_slow: float, dim: int, base: float, original_length: int, truncate: bool) -> tuple[float, float]:
    """Ramp ends (low, high) in pair-index units, clipped to ``[0, dim - 1]`` as in the reference code."""
    low = correction_dim(beta_fast, dim, base, original_length)
    high = correction_dim(beta_slow, dim, base, original_length)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    return max(low, 0), min(high, dim - 1)


def ramp(low: float, high: float, n: int) -> torch.Tensor:
    """0 up to ``low``, 1 from ``high``, linear in between (a tiny width avoids 0/0 when low == high)."""
    if low == high:
        high += 0.001
    return ((torch.arange(n, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)


def yarn_rope(
    *, base: float, head_dim: int, factor: float, original_length: int, partial_rotary_factor: float = 1.0,
    beta_fast: float = 32.0, beta_slow: float = 1.0, mscale: float | None = None, mscale_all_dim: float | None = None,
    attention_factor: float | None = None, truncate: bool = True, **_: object,
) -> RopeOutput:
    """YaRN frequencies and attention factor (same conventions as transformers' ``rope_type="yarn"``)."""
    check_factor(factor)
    check_length(original_length)
    if beta_fast is None or beta_slow is None or beta_fast <= 0 or beta_slow <= 0 or beta_fast < beta_slow:
        raise LongctxError(f"beta_fast/beta_slow: need beta_fast >= beta_slow > 0, got {beta_fast}/{beta_slow}")
    if attention_factor is not None and attention_factor <= 0:
        raise LongctxError(f"attention_factor: must be > 0, got {attention_factor}")
    dim = rotary_dim(head_dim, partial_rotary_factor)
    extrapolated = default_inv_freq(base, dim)
    interpolated = extrapolated / factor
    low, high = correction_range(beta_fast, beta_slow, dim, base, original_length, truncate)
    keep = 1 - ramp(low, high, dim // 2)  # 1 = leave the pair alone, 0 = interpolate it fully
    inv_freq = interpolated * (1 - keep) + extrapolated * keep
    if attention_factor is None:
        attention_factor = yarn_attention_factor(factor, mscale, mscale_all_dim)
    return inv_freq, float(attention_factor)


YARN = RopeMethod(
    "yarn", yarn_rope, "yarn", "YaRN: keep high-frequency pairs, interpolate low ones, ramp between; attention scale",
    "short", params=(
        Param("beta_fast", float, "pairs with more turns than this in the original window are kept", default=32.0,
              minimum=0.0, always_written=True),
        Param("beta_slow", float, "pairs with fewer turns are fully interpolated", default=1.0, minimum=0.0,
              always_written=True),
        Param("mscale", float, "DeepSeek-style attention scale numerator", minimum=0.0, inclusive=True,
              default_text="off"),
        Param("mscale_all_dim", float, "DeepSeek-style attention scale denominator", minimum=0.0, inclusive=True,
              default_text="off"),
        Param("attention_factor", float, "fixed cos/sin multiplier", minimum=0.0,
              default_text="0.1 ln(factor) + 1, or the mscale ratio"),
        Param("truncate", bool, "round the ramp ends to whole pairs", default=True),
    ),
)
