"""LongRoPE (Ding et al., arXiv 2402.13753; Phi-3's ``rope_type="longrope"``).

Each pair gets its own rescale factor lambda_i, found by the paper's evolutionary search:
``theta_i' = theta_i / lambda_i``. Two lists ship with the model: ``short_factor`` (used while
the sequence fits the original window) and ``long_factor`` (beyond it); transformers switches at
run time. Attention is scaled by ``sqrt(1 + ln s / ln L0)`` (s = target / original length).

We do not run the search. When no lists are given, :func:`yarn_long_factor` supplies YaRN's
per-pair rescale as the long list (the paper also starts its search from such NTK-by-parts
solutions); short is then all ones. That checkpoint behaves like YaRN beyond L0 and is unchanged
inside it -- a starting point for fine-tuning, not a searched LongRoPE.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from longctx.core.errors import LongctxError
from rope_scaling.common import (
    RopeOutput,
    check_factor,
    check_length,
    default_inv_freq,
    rotary_dim,
)
from rope_scaling.method import FloatList, Param, Prepared, Request, RopeMethod
from rope_scaling.yarn import yarn_rope


def longrope_attention_factor(factor: float, original_length: int) -> float:
    """``sqrt(1 + ln s / ln L0)``, 1 when s <= 1."""
    return 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(original_length))


def _factors(values: Sequence[float], n: int, field: str) -> torch.Tensor:
    if values is None or len(values) != n:
        got = "none" if values is None else f"{len(values)} values"
        raise LongctxError(f"{field}: need one factor per rotary pair ({n}), got {got}")
    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    if not bool(torch.isfinite(t).all()) or bool((t <= 0).any()):
        raise LongctxError(f"{field}: every factor must be a finite number > 0")
    return t


def longrope_rope(
    *, base: float, head_dim: int, factor: float, original_length: int, long_factor: Sequence[float],
    short_factor: Sequence[float] | None = None, partial_rotary_factor: float = 1.0, seq_len: int | None = None,
    attention_factor: float | None = None, **_: object,
) -> RopeOutput:
    """Frequencies for ``seq_len`` (long list beyond ``original_length``, short list otherwise)."""
    check_factor(factor)
    check_length(original_length)
    dim = rotary_dim(head_dim, partial_rotary_factor)
    short = [1.0] * (dim // 2) if short_factor is None else short_factor
    use_long = seq_len is not None and seq_len > original_length
    ext = _factors(long_factor, dim // 2, "long_factor") if use_long else _factors(short, dim // 2, "short_factor")
    if attention_factor is None:
        attention_factor = longrope_attention_factor(factor, original_length)
    return default_inv_freq(base, dim) / ext, float(attention_factor)


def yarn_long_factor(*, base: float, head_dim: int, factor: float, original_length: int, partial_rotary_factor: float = 1.0) -> list[float]:
    """YaRN's per-pair rescale ``theta_i / theta_i'`` (1 for kept pairs, s for interpolated ones)."""
    dim = rotary_dim(head_dim, partial_rotary_factor)
    yarn, _ = yarn_rope(base=base, head_dim=head_dim, partial_rotary_factor=partial_rotary_factor, factor=factor,
                        original_length=original_length)
    return (default_inv_freq(base, dim) / yarn).tolist()


def prepare_longrope(req: Request) -> Prepared:
    """Without searched lists: YaRN's rescale as the long list (with a note saying so), ones as the short list."""
    prepared = Prepared.unchanged(req)
    params = prepared.params
    if "long_factor" not in params:
        params["long_factor"] = yarn_long_factor(**req.geometry)
        prepared = prepared.with_note("long_factor: YaRN's per-pair rescale (no LongRoPE search was run); "
                                      "short_factor: all 1")
    params.setdefault("short_factor", [1.0] * (req.source.rotary_dim // 2))
    return prepared


LONGROPE = RopeMethod(
    "longrope", longrope_rope, "longrope", "LongRoPE: one searched factor per pair (short and long lists)", "short",
    params=(
        Param("long_factor", FloatList, "per-pair factors beyond L0 (a,b,... or a JSON file)", minimum=0.0,
              default_text="YaRN's per-pair rescale, no search run"),
        Param("short_factor", FloatList, "per-pair factors inside L0 (a,b,... or a JSON file)", minimum=0.0,
              default_text="all 1"),
        Param("attention_factor", float, "fixed cos/sin multiplier", minimum=0.0,
              default_text="sqrt(1 + ln(factor) / ln(L0))"),
    ),
    prepare=prepare_longrope, seq_len_dependent=True, factor_from_lengths=True,
    training_text=("training-free with factors found by LongRoPE's search; with default (YaRN-derived) "
                   "factors, treat it like YaRN: usable as-is, better after a short fine-tune"),
)
