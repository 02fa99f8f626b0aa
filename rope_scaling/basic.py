"""Methods that change every pair the same way: default, linear (PI), static NTK-aware, ABF.

- linear / Position Interpolation (Chen et al., arXiv 2306.15595): positions are divided by the
  factor s, i.e. every ``theta_i / s``. Needs continued training; short-range resolution is lost.
- NTK-aware (bloc97, 2023; YaRN paper §3.1, arXiv 2309.00071): keep the highest frequency and
  interpolate the lowest by s, by raising the base: ``b' = b * s^(d / (d - 2))``.
- ABF, adjusted base frequency (Xiong et al., arXiv 2309.16039): just a larger ``rope_theta``,
  then continued training. See :mod:`rope_scaling.base_selection` for how large.
"""

from __future__ import annotations

from dataclasses import replace

from longctx.core.errors import LongctxError
from rope_scaling.base_selection import critical_base, lower_bound_base
from rope_scaling.common import RopeOutput, check_base, check_factor, default_inv_freq, rotary_dim
from rope_scaling.method import Param, Prepared, Request, RopeMethod


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


def prepare_ntk(req: Request) -> Prepared:
    """The new base is written as a plain ``default`` rope, so transformers applies it at every length."""
    rc = req.source
    return replace(Prepared.unchanged(req), rope_theta=ntk_base(rc.rope_theta, req.factor, rc.rotary_dim))


ABF_RULES = {"max": lambda lb, cb: max(lb, cb), "lower-bound": lambda lb, cb: lb, "critical": lambda lb, cb: cb}
ABF_PARAMS = (
    Param("rope_theta", float, "the new base", minimum=1.0, written=False,
          default_text="chosen by --abf-rule for the target length"),
    Param("abf_rule", str, "how the base is chosen without --rope-theta: the larger of the lower bound of arXiv "
          "2405.14591 and the critical base of arXiv 2310.05209, or either alone", default="max",
          choices=tuple(ABF_RULES), written=False),
)


def prepare_abf(req: Request) -> Prepared:
    """The base the user gave, or the one :mod:`rope_scaling.base_selection` picks for the target; it must
    exceed the current base."""
    rc, prepared = req.source, Prepared.unchanged(req)
    theta = req.params.get("rope_theta")
    if theta is None:
        rule = req.params.get("abf_rule", ABF.param("abf_rule").default)
        lb = lower_bound_base(req.target_length, dim=rc.rotary_dim, rtol=1e-4)
        cb = critical_base(req.target_length, dim=rc.rotary_dim, train_length=rc.original_length,
                           train_base=rc.rope_theta)
        theta = ABF_RULES[rule](lb, cb)
        prepared = prepared.with_note(f"rope_theta chosen by rule {rule!r}: lower bound (2405.14591) {lb:.4g}, "
                                      f"critical base (2310.05209) {cb:.4g}")
    if theta <= rc.rope_theta:
        raise LongctxError(f"rope_theta {theta:.4g} is not above the current base {rc.rope_theta:g}; "
                           "pass a larger --rope-theta")
    theta = float(theta)
    return replace(prepared, rope_theta=theta, params={**prepared.params, "rope_theta": theta})


DEFAULT = RopeMethod("default", default_rope, "default", "plain RoPE (no extension)", "free", extends=False)
LINEAR = RopeMethod("linear", linear_rope, "linear", "position interpolation: every frequency / factor", "needed")
NTK = RopeMethod("ntk", ntk_rope, "default", "static NTK-aware: base * factor^(d/(d-2))", "short", prepare=prepare_ntk)
ABF = RopeMethod("abf", abf_rope, "default", "adjusted base frequency (ABF): a larger rope_theta", "needed",
                 params=ABF_PARAMS, prepare=prepare_abf)
