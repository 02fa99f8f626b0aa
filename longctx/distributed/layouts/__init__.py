"""The sequence-parallel layouts: ONE registry mapping each name to its :class:`Layout` row.

Every reader of a layout list reads it here: the trainer config (``parallel.layout`` and the layouts'
own degree keys), ``auto`` (:mod:`.choose`), the planner (``longctx plan --layout``), the sharding
math (:mod:`longctx.distributed.sharding`), the mesh (the sub-groups a row declares) and the
attention glue (``longctx_ring``). A new layout is one file in this package (its spans, its kernel,
its communication, what ``auto`` may pick it for) plus one row below; see :class:`Layout`.
"""

from __future__ import annotations

from longctx.distributed.layouts import ulysses, usp, varlen, zigzag
from longctx.distributed.layouts.base import Auto, Layout, SubGroups

LAYOUTS: dict[str, Layout] = {
    "zigzag": zigzag.LAYOUT,
    "varlen": varlen.LAYOUT,
    "ulysses": ulysses.LAYOUT,
    "usp": usp.LAYOUT,
}

DEFAULT_LAYOUT = "zigzag"
"""``parallel.layout`` and ``SequenceParallel.layout`` when not given."""


def get_layout(name: str) -> Layout:
    """The registry row of ``name``; ``ValueError`` naming the choices for an unknown one."""
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ValueError(f"layout: unknown {name!r}; choose one of {', '.join(LAYOUTS)}") from None


def layouts_help() -> str:
    """One line per layout, ``name: description``, for ``--help`` texts."""
    return "; ".join(f"{name}: {row.description}" for name, row in LAYOUTS.items())


def degree_keys() -> dict[str, Layout]:
    """``parallel.<key>`` -> the row whose sub-groups it sizes (usp: ``ulysses_degree``)."""
    return {row.split.key: row for row in LAYOUTS.values() if row.split is not None}


__all__ = ["DEFAULT_LAYOUT", "LAYOUTS", "Auto", "Layout", "SubGroups", "degree_keys", "get_layout", "layouts_help"]
