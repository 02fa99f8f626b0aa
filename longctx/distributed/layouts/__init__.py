"""The sequence-parallel layouts: ONE registry mapping each name to its :class:`Layout` row.

Every reader of a layout list reads it here: the trainer config (``parallel.layout``), the planner
(``longctx plan --layout``), the sharding math (:mod:`longctx.distributed.sharding`), the attention
glue (``longctx_ring``). A new layout is one file in this package (its spans and, if it needs
more than q/k/v, its attention kwargs) plus one row below; see :class:`Layout` for the fields.
"""

from __future__ import annotations

from longctx.distributed.layouts import ulysses, usp, varlen, zigzag
from longctx.distributed.layouts.base import Layout

LAYOUTS: dict[str, Layout] = {
    "zigzag": zigzag.LAYOUT,
    "varlen": varlen.LAYOUT,
    "ulysses": ulysses.LAYOUT,
    "usp": usp.LAYOUT,
}


def get_layout(name: str) -> Layout:
    """The registry row of ``name``; ``ValueError`` naming the choices for an unknown one."""
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ValueError(f"layout: unknown {name!r}; choose one of {', '.join(LAYOUTS)}") from None


def layouts_help() -> str:
    """One line per layout, ``name: description``, for ``--help`` texts."""
    return "; ".join(f"{name}: {row.description}" for name, row in LAYOUTS.items())


__all__ = ["LAYOUTS", "Layout", "get_layout", "layouts_help"]
