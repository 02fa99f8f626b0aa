"""What a RoPE method declares: its function, its parameters and how a plan becomes a config.

Like transformers' ``ROPE_INIT_FUNCTIONS`` (one entry per ``rope_type``), every method is one
:class:`RopeMethod` value defined beside its math and listed once in :mod:`rope_scaling.registry`.
Everything else reads the declaration: ``longctx extend`` generates its flags and their checks from
:class:`Param`, :func:`rope_scaling.extend.plan_extension` calls the ``prepare`` hook and
:meth:`RopeMethod.rope_parameters`, and the config reader asks the registry how the method treats
``max_position_embeddings``. A new method is therefore one file plus one registry line.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from longctx.core.errors import LongctxError
from rope_scaling.common import RopeOutput

if TYPE_CHECKING:
    from rope_scaling.checkpoint_config import RopeConfig

FloatList = list[float]  # ``Param.type`` of per-pair factor lists (``1,1.5,2`` or a JSON file on the command line)


@dataclass(frozen=True)
class Param:
    """One method parameter: a keyword of the method's function and, unless ``written`` is False, a key of
    ``rope_parameters`` under the same name. Its flag is ``--name-with-dashes`` (``--no-name`` for a bool
    that defaults to True)."""

    name: str
    type: type  # float, int, bool, str or FloatList
    help: str  # what it does, as a sentence fragment; the generated --help adds range, default and methods
    default: Any = None  # what the function uses when the user gives nothing (None: computed or off)
    default_text: str | None = None  # how --help shows a computed default ("0.1 ln s + 1")
    minimum: float | None = None  # numbers (and each list item) must be finite and above this ...
    inclusive: bool = False  # ... or equal to it when True
    choices: tuple[str, ...] | None = None  # for str parameters
    always_written: bool = False  # write ``default`` into rope_parameters even when not given (transformers' default)
    written: bool = True  # False: used by prepare only (ABF's rope_theta becomes the base, not a key of its own)

    @property
    def flag(self) -> str:
        dashed = self.name.replace("_", "-")
        return f"--no-{dashed}" if self.type is bool and self.default is True else f"--{dashed}"

    def range_text(self) -> str:
        if self.type is bool:
            return ""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.minimum is None:
            return "finite" if self.type in (float, int, FloatList) else ""
        return f"finite, {'>=' if self.inclusive else '>'} {self.minimum:g}"

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not acceptable (None when it is); the caller prefixes the key or flag."""
        if self.type is bool:
            return None if isinstance(value, bool) else f"must be true or false, got {value!r}"
        if self.type is str:
            ok = isinstance(value, str) and (self.choices is None or value in self.choices)
            return None if ok else f"must be {self.range_text()}, got {value!r}"
        if self.type is FloatList:
            if not isinstance(value, (list, tuple)):
                return f"must be a list of numbers, got {value!r}"
            bad = [v for v in value if not self._number_ok(v)]
            return f"every value must be a number ({self.range_text()}), got {bad[0]!r}" if bad else None
        if not self._number_ok(value) or (self.type is int and not float(value).is_integer()):
            kind = "an integer" if self.type is int else "a number"
            return f"must be {kind} ({self.range_text()}), got {value!r}"
        return None

    def _number_ok(self, v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return False
        if self.minimum is None:
            return True
        return v >= self.minimum if self.inclusive else v > self.minimum


@dataclass(frozen=True)
class Request:
    """What ``prepare`` gets: the checkpoint's RoPE, the resolved target, and the user's parameters
    (None dropped, in the order given)."""

    source: RopeConfig
    target_length: int
    factor: float
    params: dict

    @property
    def geometry(self) -> dict:
        """The keywords every method function takes (the checkpoint's base, not a new one)."""
        rc = self.source
        return dict(base=rc.rope_theta, head_dim=rc.head_dim, partial_rotary_factor=rc.partial_rotary_factor,
                    original_length=rc.original_length, factor=self.factor)


@dataclass(frozen=True)
class Prepared:
    """What ``prepare`` returns: the final parameters (in write order), the base written as ``rope_theta``,
    the new ``max_position_embeddings`` and notes for the user."""

    params: dict
    rope_theta: float
    max_position_embeddings: int
    notes: tuple[str, ...] = ()

    @classmethod
    def unchanged(cls, req: Request) -> Prepared:
        """The user's parameters as given, the checkpoint's base, the target length as the new maximum."""
        return cls(dict(req.params), req.source.rope_theta, req.target_length)

    def with_note(self, note: str, **changes: Any) -> Prepared:
        return replace(self, notes=(*self.notes, note), **changes)


TRAINING_NOTES = {
    "free": "no change",
    "needed": "needs continued training at the target length (not training-free)",
}


@dataclass(frozen=True)
class RopeMethod:
    """One registered method; see the module docstring for who reads which field."""

    name: str
    fn: Callable[..., RopeOutput]  # base, head_dim, partial_rotary_factor, original_length, factor + params
    rope_type: str  # what transformers reads from config.json (ntk and abf are written as "default")
    summary: str
    training: str  # "free", "short" (training-free at small factors, a short fine-tune beyond) or "needed"
    params: tuple[Param, ...] = ()
    prepare: Callable[[Request], Prepared] = Prepared.unchanged
    training_text: str | None = None  # replaces the generic sentence of ``training``
    extends: bool = True  # False for "default": it describes checkpoints, it cannot extend one
    seq_len_dependent: bool = False  # fn takes ``seq_len``: transformers recomputes frequencies at run time
    keeps_trained_length: bool = False  # max_position_embeddings stays L0 (dynamic's run-time rule measures L0 by it)
    factor_from_lengths: bool = False  # no ``factor`` in the config means max_position_embeddings / L0 (Phi-3)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)

    def defaults(self) -> dict:
        """Declared defaults, passed to ``fn`` under the user's values (None = computed by fn or prepare)."""
        return {p.name: p.default for p in self.params if p.default is not None}

    def check_values(self, params: dict) -> None:
        """Refuse NaN, inf, out-of-range or mistyped values, naming the key."""
        for name, value in params.items():
            problem = self.param(name).problem(value)
            if problem:
                raise LongctxError(f"{name}: {problem}")

    def training_note(self, factor: float) -> str:
        """One line a user reads before choosing: does this need continued training?"""
        if self.training_text:
            return self.training_text
        if self.training == "short":
            if factor <= 8:
                return ("training-free usable at this factor (quality drops as it grows); a short fine-tune "
                        "recovers most of the gap")
            return "needs continued training at this factor (training-free quality falls off beyond ~8x)"
        return TRAINING_NOTES[self.training]

    def rope_parameters(self, source: RopeConfig, factor: float, prepared: Prepared) -> dict:
        """The v5 ``rope_parameters`` dict: fixed keys, transformers' defaults, then the prepared parameters."""
        rope = {"rope_type": self.rope_type, "rope_theta": as_number(prepared.rope_theta),
                "partial_rotary_factor": source.partial_rotary_factor,
                "original_max_position_embeddings": source.original_length}
        if self.rope_type != "default":
            rope["factor"] = as_number(factor)
        rope.update({p.name: p.default for p in self.params if p.always_written})
        written = {p.name for p in self.params if p.written}
        rope.update({k: v for k, v in prepared.params.items() if k in written})
        return rope


def as_number(x: float) -> float | int:
    """Whole numbers as JSON integers (``factor: 4``), everything else as floats."""
    return int(x) if float(x).is_integer() and abs(x) < 2**53 else float(x)
