"""Methods that change every pair the same way: default, linear (PI), static NTK-aware, ABF.

- linear / Position Interpolation (Chen et al., arXiv 2306.15595): positions are divided by the
  factor s, i.e. every ``theta_i / s``. Needs continued training; short-range resolution is lost.
- NTK-aware (bloc97, 2023; YaRN paper §3.1, arXiv 2309.00071): keep the highest frequency and
  interpolate the lowest by s, by raising the base: ``b' = b * s^(d / (d - 2))``.
- ABF, adjusted base frequency (Xiong et al., arXiv 2309.16039): just a larger ``rope_theta``,
  then continued training. See :mod:`rope_scaling.base_selection` for how large.
"""

from __future__ import annotations

from longctx.errors import LongctxError
from rope_scaling.common import RopeOutput, check_base, check_factor, default_inv_freq, rotary_dim


def default_rope(*, base: float, head_dim: int, partial_rotary_factor: float = 1.0, **_: object) -> RopeOutput:
    """Plain RoPE: ``theta_i = base^(-2i/d)``, attention factor 1."""
    return default_inv_freq(base, rotary_dim(head_dim, partial_rotary_factor)), 1.0


def linear_rope(*, base: float, head_dim: int, factor: float, partial_rotary_factor: float = 1.0, **_: object) -> RopeOutput:
    """Position interpolation: every frequency divided by ``factor`` (same as positions / factor)."""
    check_factor(factor)
    inv_freq, _ = default_rope(base=base, head_dim=head_dim, partial_rotary_factor=partial_rotary_factor)
    return inv_freq / factor, 1.0


def ntk_base(base: float, factor: float, dim: int) -> float:
    """NTK-aware base ``b * s^(d/(d-2))``: the last pair (exponent (d-2)/d) is then exactly ``theta/s``."""
    check_base(base)
    check_factor(factor)
    if dim <= 2:
        return float(base)  # a single pair has exponent 0: no base change can move it
    return float(base) * float(factor) ** (dim / (dim - 2))


def ntk_rope(*, base: float, head_dim: int, factor: float, partial_rotary_factor: float = 1.0, **_: object) -> RopeOutput:
    """Static NTK-aware scaling: a new base, applied to every position (written as a default rope)."""
    dim = rotary_dim(head_dim, partial_rotary_factor)
    return default_inv_freq(ntk_base(base, factor, dim), dim), 1.0


def abf_rope(*, base: float, head_dim: int, rope_theta: float, partial_rotary_factor: float = 1.0, **_: object) -> RopeOutput:
    """Adjusted base frequency: plain RoPE with ``rope_theta`` (must be above the old base)."""
    check_base(rope_theta, "rope_theta (new)")
    if rope_theta <= base:
        raise LongctxError(f"rope_theta: ABF needs a new base above the current {base:g}, got {rope_theta:g}")
    return default_inv_freq(rope_theta, rotary_dim(head_dim, partial_rotary_factor)), 1.0
