"""``longctx extend``'s method flags, generated from the registry's :class:`~rope_scaling.method.Param` lists.

One argparse group per method holds its own flags; a parameter several methods declare under the
same name (``attention_factor``: yarn and longrope) becomes one flag in a shared group. Values are
checked against the declaration after parsing, so NaN, inf or an out-of-range number is a one-line
error naming the flag, raised before anything is read or written.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from longctx.core.errors import LongctxError
from rope_scaling.method import FloatList, Param
from rope_scaling.registry import METHODS


@dataclass(frozen=True)
class MethodFlag:
    """A command-line flag and every method declaring its parameter (one declaration per method)."""

    methods: tuple[str, ...]
    declarations: tuple[Param, ...]

    @property
    def param(self) -> Param:
        return self.declarations[0]

    def help(self) -> str:
        p = self.param
        text = f"do not {p.help}" if p.flag.startswith("--no-") else p.help
        rng = p.range_text()
        shown = [_default_text(d) for d in self.declarations]
        if len(set(shown)) == 1:
            default = shown[0]
        else:
            default = "; ".join(f"{m}: {s}" for m, s in zip(self.methods, shown))
        details = ([f"{'each ' if p.type is FloatList else ''}{rng}"] if rng else []) + [f"default: {default}"]
        prefix = f"{', '.join(self.methods)}: " if len(self.methods) > 1 else ""
        return (prefix + text + f" ({'; '.join(details)})").replace("%", "%%")


def _default_text(p: Param) -> str:
    if p.default_text is not None:
        return p.default_text
    if p.type is bool:
        return "on" if p.default else "off"
    return "none" if p.default is None else f"{p.default:g}" if isinstance(p.default, float) else str(p.default)


def method_flags() -> list[MethodFlag]:
    """Every declared parameter once, in registry order; declarations sharing a name must agree on
    everything that shapes the flag (type, range, choices, default shown to the parser)."""
    seen: dict[str, tuple[list[str], list[Param]]] = {}
    for name, method in METHODS.items():
        for p in method.params:
            methods, decls = seen.setdefault(p.name, ([], []))
            first = decls[0] if decls else p
            shape = lambda q: (q.type, q.minimum, q.inclusive, q.choices, q.flag, q.written)  # noqa: E731
            if shape(first) != shape(p):
                raise ValueError(f"parameter {p.name!r}: methods {methods[0]} and {name} declare it differently")
            methods.append(name)
            decls.append(p)
    return [MethodFlag(tuple(m), tuple(d)) for m, d in seen.values()]


def float_list(text: str) -> list[float]:
    """``1,1.5,2`` or ``@file.json`` / ``file.json`` holding a JSON list."""
    try:
        if text.startswith("@") or text.endswith(".json"):
            values = json.loads(Path(text.lstrip("@")).read_text())
        else:
            values = [float(x) for x in text.split(",") if x.strip()]
    except (OSError, ValueError) as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers or a JSON list file: {err}")
    if not isinstance(values, list) or not all(isinstance(v, (int, float)) for v in values):
        raise argparse.ArgumentTypeError("expected a list of numbers")
    return [float(v) for v in values]


def _add(group: argparse._ArgumentGroup, flag: MethodFlag) -> None:
    p = flag.param
    if p.type is bool:
        group.add_argument(p.flag, dest=p.name, action="store_const", const=not p.default, help=flag.help())
    elif p.choices:
        group.add_argument(p.flag, dest=p.name, choices=p.choices, help=flag.help())
    else:
        kind = float_list if p.type is FloatList else p.type
        group.add_argument(p.flag, dest=p.name, type=kind, help=flag.help())


def add_method_flags(parser: argparse.ArgumentParser) -> None:
    """One group per method with parameters, then the flags several methods share."""
    flags = method_flags()
    for name, method in METHODS.items():
        own = [f for f in flags if f.methods == (name,)]
        if own:
            group = parser.add_argument_group(f"--method {name}", method.summary)
            for f in own:
                _add(group, f)
    shared = [f for f in flags if len(f.methods) > 1]
    if shared:
        group = parser.add_argument_group("shared by several methods", "each applies only to the methods it names")
        for f in shared:
            _add(group, f)


def method_params(args: argparse.Namespace) -> dict:
    """The method flags the user gave, as parameter name -> value, each checked against its declaration."""
    out = {}
    for f in method_flags():
        value = getattr(args, f.param.name, None)
        if value is None:
            continue
        problem = f.param.problem(value)
        if problem:
            raise LongctxError(f"{f.param.flag}: {problem}")
        out[f.param.name] = value
    return out
