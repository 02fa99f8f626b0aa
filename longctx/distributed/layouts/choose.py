"""``parallel.layout: auto`` and the degree of a row's sub-groups: pure choices from the rows' declarations.

Each row declares what ``auto`` needs to know (:class:`~longctx.distributed.layouts.base.Auto`): its
place in the order (fastest first), and a fit rule of its own; documents per pack
(``multi_document``), the length unit and the head constraint (``check_heads``) are read from the
row as well. ``auto`` takes the first row that fits. With today's rows this is USP's rule
(arXiv 2405.07719: Ulysses is faster where the heads allow, ring attention covers the rest):
``U = gcd(sp, KV heads)``; ``U == sp``: ``ulysses``; ``1 < U < sp``: ``usp`` with Ulysses degree ``U``;
else ``zigzag`` when every pack holds one document and its length is a multiple of ``2·sp``
(balanced causal work), else ``varlen``.
"""

from __future__ import annotations

from dataclasses import dataclass

from longctx.core.errors import LongctxError
from longctx.distributed.layouts import LAYOUTS, Layout, get_layout

AUTO = "auto"


@dataclass(frozen=True)
class LayoutChoice:
    """A concrete registry layout, the degree of its sub-groups (0: it has none) and why, for the log."""

    layout: str
    degree: int
    reason: str


def auto_rows() -> list[Layout]:
    """The rows ``auto`` may pick, in the order it tries them."""
    return sorted((row for row in LAYOUTS.values() if row.auto is not None), key=lambda row: row.auto.rank)


def fallback_layout() -> Layout:
    """``auto``'s last resort (it fits every pack): what ``auto`` records at ``sp_degree`` 1 and whose
    unit the config checks the pack length against before the model is known."""
    return auto_rows()[-1]


def refusal(row: Layout, sp: int, num_heads: int, num_kv_heads: int, multi_document: bool,
            pack_length: int) -> str | None:
    """Why ``row`` cannot run these packs on ``sp`` ranks, from its declarations; None if it can."""
    if multi_document and not row.multi_document:
        return "one document per pack only"
    if pack_length % row.unit(sp):
        return f"pack length not a multiple of {row.unit_formula} = {row.unit(sp)}"
    why = row.check_heads(sp, num_heads, num_kv_heads)
    if why:
        return why
    degree = row.auto.fit(sp, num_heads, num_kv_heads) if row.auto is not None else 0
    if degree is None:
        return f"needs {row.auto.needs}"
    return row.split.check(degree, sp, num_heads) if row.split is not None and degree else None


def choose_layout(sp: int, num_heads: int, num_kv_heads: int, multi_document: bool, pack_length: int) -> LayoutChoice:
    """What ``parallel.layout: auto`` runs (module docstring); the reason names the rows passed over."""
    rows = auto_rows()
    if sp == 1:
        return LayoutChoice(rows[-1].name, 0, "sp_degree 1: no sequence parallelism")
    run = (f"{num_heads} heads / {num_kv_heads} KV heads, sp {sp}, "
           f"{'packs of several documents' if multi_document else 'one document per pack'}")
    passed = []
    for row in rows:
        why = refusal(row, sp, num_heads, num_kv_heads, multi_document, pack_length)
        if why:
            passed.append(f"not {row.name}: {why}")
            continue
        degree = row.auto.fit(sp, num_heads, num_kv_heads)
        what = f"{row.name}, {row.split.describe(degree, sp)}" if row.split is not None and degree else row.name
        return LayoutChoice(row.name, degree, f"{what} ({'; '.join([run, *passed])})")
    raise LongctxError(f"parallel.layout: auto: no layout fits ({'; '.join([run, *passed])})")


def resolve_layout(layout: str, degree: int, sp: int, num_heads: int, num_kv_heads: int,
                   multi_document: bool, pack_length: int) -> LayoutChoice:
    """The trainer's layout: ``auto`` chosen here; a row with sub-groups gets its degree (``degree``, the
    value of the row's own config key, or the row's default when 0), checked against the heads;
    anything else as configured."""
    if layout == AUTO:
        return choose_layout(sp, num_heads, num_kv_heads, multi_document, pack_length)
    split = get_layout(layout).split
    if split is None or sp == 1:
        return LayoutChoice(layout, 0, layout)
    u = degree or split.default(sp, num_heads, num_kv_heads)
    why = split.check(u, sp, num_heads)
    if why:
        raise LongctxError(f"config: parallel.{split.key}: {why}")
    src = f"parallel.{split.key}" if degree else split.default_formula
    return LayoutChoice(layout, u, f"{layout}, {split.describe(u, sp)} ({src})")
