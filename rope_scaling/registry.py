"""The method registry, as transformers' ``ROPE_INIT_FUNCTIONS``: name -> :class:`RopeMethod`.

Each method is declared beside its math (function, parameters, ``prepare`` hook; see
:mod:`rope_scaling.method`); this table only lists them, one line each. ``longctx extend``'s
flags, the planner and the config reader all read it, so adding a method is one new file plus one
line here. Every function takes keyword arguments ``base, head_dim, partial_rotary_factor,
original_length, factor`` plus its own parameters, and returns ``(inv_freq float64, attention_factor)``.
"""

from __future__ import annotations

from longctx.core.errors import LongctxError
from rope_scaling.basic import ABF, DEFAULT, LINEAR, NTK
from rope_scaling.common import RopeOutput
from rope_scaling.dynamic import DYNAMIC
from rope_scaling.llama3 import LLAMA3
from rope_scaling.longrope import LONGROPE
from rope_scaling.method import RopeMethod
from rope_scaling.yarn import YARN

METHODS: dict[str, RopeMethod] = {
    "default": DEFAULT,
    "linear": LINEAR,
    "ntk": NTK,
    "dynamic": DYNAMIC,
    "yarn": YARN,
    "llama3": LLAMA3,
    "longrope": LONGROPE,
    "abf": ABF,
}


def get_method(name: str) -> RopeMethod:
    """The registered method ``name``; an unknown name lists the valid ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise LongctxError(f"--method: unknown {name!r}; choose one of {', '.join(METHODS)}") from None


def extending_methods() -> list[str]:
    """Names ``longctx extend --method`` accepts (every method but the plain ``default``)."""
    return [n for n, m in METHODS.items() if m.extends]


def methods_taking(param: str) -> list[str]:
    """Registered methods that declare a parameter called ``param``."""
    return [n for n, m in METHODS.items() if param in m.param_names]


def flag_of(param: str) -> str:
    """The ``longctx extend`` flag of a declared parameter (``truncate`` -> ``--no-truncate``)."""
    return METHODS[methods_taking(param)[0]].param(param).flag


def validate_params(name: str, params: dict) -> None:
    """Raise on a parameter the method does not take (transformers would only warn), saying which methods
    take it; then on a value outside the declared range (NaN, inf, a factor below its minimum)."""
    method = get_method(name)
    unknown = sorted(set(params) - set(method.param_names))
    if unknown:
        allowed = ", ".join(method.param_names) or "none"
        elsewhere = [f"{flag_of(k)} only applies to --method {'/'.join(methods_taking(k))}"
                     for k in unknown if methods_taking(k)]
        hint = f" ({'; '.join(elsewhere)})" if elsewhere else ""
        raise LongctxError(f"{name}: unknown parameter(s) {', '.join(unknown)}; this method takes: {allowed}{hint}")
    method.check_values(params)


def compute(name: str, **kwargs) -> RopeOutput:
    """Look up ``name`` and call it: ``compute("yarn", base=1e4, head_dim=128, factor=4, original_length=4096)``."""
    return get_method(name).fn(**kwargs)


def training_note(name: str, factor: float) -> str:
    """One line a user reads before choosing: does this need continued training?"""
    return get_method(name).training_note(factor)
