"""The method registry: name -> pure function, the transformers ``rope_type`` it is written as,
the method parameters it accepts, and whether it works without training.

Every function takes keyword arguments ``base, head_dim, partial_rotary_factor, original_length,
factor`` plus its own parameters, and returns ``(inv_freq float64, attention_factor)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from longctx.errors import LongctxError
from rope_scaling.basic import abf_rope, default_rope, linear_rope, ntk_rope
from rope_scaling.common import RopeOutput
from rope_scaling.dynamic import dynamic_rope
from rope_scaling.llama3 import llama3_rope
from rope_scaling.longrope import longrope_rope
from rope_scaling.yarn import yarn_rope


@dataclass(frozen=True)
class RopeMethod:
    name: str
    fn: Callable[..., RopeOutput]
    rope_type: str  # what transformers reads from config.json (ntk and abf are written as "default")
    params: tuple[str, ...]  # method parameters beyond base/head_dim/partial/original/factor
    summary: str
    training: str  # "free", "short" (training-free at small factors, a short fine-tune beyond) or "needed"


METHODS: dict[str, RopeMethod] = {
    "default": RopeMethod("default", default_rope, "default", (), "plain RoPE (no extension)", "free"),
    "linear": RopeMethod("linear", linear_rope, "linear", (), "position interpolation: every frequency / factor", "needed"),
    "ntk": RopeMethod("ntk", ntk_rope, "default", (), "static NTK-aware: base * factor^(d/(d-2))", "short"),
    "dynamic": RopeMethod("dynamic", dynamic_rope, "dynamic", (), "dynamic NTK: base grows with the running length, untouched inside the original window", "free"),
    "yarn": RopeMethod("yarn", yarn_rope, "yarn",
                       ("beta_fast", "beta_slow", "mscale", "mscale_all_dim", "attention_factor", "truncate"),
                       "YaRN: keep high-frequency pairs, interpolate low ones, ramp between; attention scale", "short"),
    "llama3": RopeMethod("llama3", llama3_rope, "llama3", ("low_freq_factor", "high_freq_factor"),
                         "Llama-3.1: ramp over wavelength between original/high and original/low", "needed"),
    "longrope": RopeMethod("longrope", longrope_rope, "longrope", ("long_factor", "short_factor", "attention_factor"),
                           "LongRoPE: one searched factor per pair (short and long lists)", "short"),
    "abf": RopeMethod("abf", abf_rope, "default", ("rope_theta",), "adjusted base frequency: a larger rope_theta", "needed"),
}


def get_method(name: str) -> RopeMethod:
    """The registered method ``name``; an unknown name lists the valid ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise LongctxError(f"--method: unknown {name!r}; choose one of {', '.join(METHODS)}") from None


def validate_params(name: str, params: dict) -> None:
    """Raise on a parameter the method does not take (transformers would only warn)."""
    method = get_method(name)
    unknown = sorted(set(params) - set(method.params))
    if unknown:
        allowed = ", ".join(method.params) or "none"
        raise LongctxError(f"{name}: unknown parameter(s) {', '.join(unknown)}; this method takes: {allowed}")


def compute(name: str, **kwargs) -> RopeOutput:
    """Look up ``name`` and call it: ``compute("yarn", base=1e4, head_dim=128, factor=4, original_length=4096)``."""
    return get_method(name).fn(**kwargs)


def training_note(name: str, factor: float) -> str:
    """One line a user reads before choosing: does this need continued training?"""
    t = get_method(name).training
    if name == "dynamic":
        return "training-free: frequencies change only past the original length, at run time"
    if name == "longrope":
        return ("training-free with factors found by LongRoPE's search; with default (YaRN-derived) "
                "factors, treat it like YaRN: usable as-is, better after a short fine-tune")
    if t == "short":
        if factor <= 8:
            return "training-free usable at this factor (quality drops as it grows); a short fine-tune recovers most of the gap"
        return "needs continued training at this factor (training-free quality falls off beyond ~8x)"
    if t == "needed":
        return "needs continued training at the target length (not training-free)"
    return "no change"
