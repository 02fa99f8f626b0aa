"""The ``usp`` layout: Ulysses inside groups of ``U`` ranks x varlen ring across ``R = sp / U`` of them.

USP (arXiv 2405.07719): the SP group of ``U x R`` ranks holds contiguous slices (as ``varlen``);
SP rank ``p = ring_rank * U + ulysses_rank``. The all-to-all inside a Ulysses group turns its ``U``
slices into one contiguous ``1/R`` of the pack for ``H/U`` heads; the varlen ring runs across the
ring group on those (:func:`longctx.attention.ulysses.usp_attention`). It lifts Ulysses' cap (``U``
must divide the heads, ``R`` is free). The row declares the two sub-groups (:data:`SPLIT`: degree
``parallel.ulysses_degree``, default ``gcd(sp, KV heads)``); the mesh builds them
(:func:`longctx.distributed.mesh.build_layout_groups`) and the kernel receives them as
``ulysses_group=`` / ``ring_group=``.
"""

from __future__ import annotations

import math

from longctx.attention.ulysses import usp_attention
from longctx.core.errors import LongctxError
from longctx.distributed.layouts.base import RING_COMM_FORMULA, Auto, Layout, SubGroups, ring_comm_bytes_per_token
from longctx.distributed.layouts.ulysses import ULYSSES_COMM_FORMULA, ulysses_comm_bytes_per_token
from longctx.distributed.layouts.varlen import varlen_attention_kwargs, varlen_spans

DEGREE_KEY = "ulysses_degree"


def ulysses_degree_for(sp: int, num_heads: int, num_kv_heads: int) -> int:
    """The largest Ulysses degree that divides ``sp`` and splits the KV heads without copies."""
    return math.gcd(sp, num_kv_heads)


def check_ulysses_degree(degree: int, sp: int, num_heads: int | None = None) -> str | None:
    """``degree`` must divide the SP degree (``R = sp / U`` rings) and, once the model is known, the heads."""
    if degree < 1 or sp % degree:
        return f"{degree} does not divide parallel.sp_degree {sp}"
    if num_heads is not None and num_heads % degree:
        return f"{degree} must divide the {num_heads} attention heads"
    return None


def usp_group_ranks(sp_ranks: list[int], ulysses_degree: int) -> tuple[list[list[int]], list[list[int]]]:
    """The USP sub-groups of one SP group: (Ulysses groups, ring groups), as global ranks.

    SP rank ``p = ring_rank * U + ulysses_rank``: each Ulysses group is ``U`` consecutive SP ranks
    (their contiguous slices form one contiguous ``1/R`` of the pack; the all-to-all stays on the
    fastest links), each ring group takes every ``U``-th SP rank.
    """
    why = check_ulysses_degree(ulysses_degree, len(sp_ranks))
    if why:
        raise LongctxError(f"parallel.{DEGREE_KEY}: {why}")
    u = ulysses_degree
    ulysses = [sp_ranks[j * u:(j + 1) * u] for j in range(len(sp_ranks) // u)]
    ring = [sp_ranks[i::u] for i in range(u)]
    return ulysses, ring


def usp_comm_bytes_per_token(q_dim: int, kv_dim: int, a: int) -> float:
    """Both buffers: the all-to-all copies and the ring's (the ring holds U times the tokens with
    1/U of the heads: the same bytes per local token as a plain ring)."""
    return ulysses_comm_bytes_per_token(q_dim, kv_dim, a) + ring_comm_bytes_per_token(q_dim, kv_dim, a)


def partial_ulysses(sp: int, num_heads: int, num_kv_heads: int) -> int | None:
    """``auto``: Ulysses as far as the KV heads allow (``U = gcd(sp, KV heads)``), when that is a real
    split (``1 < U < sp``; ``U = sp`` is plain Ulysses)."""
    u = ulysses_degree_for(sp, num_heads, num_kv_heads)
    return u if 1 < u < sp else None


def describe_split(u: int, sp: int) -> str:
    """``Ulysses U x ring R`` for the log."""
    return f"Ulysses {u} x ring {sp // u}"


SPLIT = SubGroups(
    key=DEGREE_KEY,
    names=("ulysses_group", "ring_group"),
    ranks=usp_group_ranks,
    check=check_ulysses_degree,
    default=ulysses_degree_for,
    default_formula="gcd(sp, KV heads)",
    describe=describe_split,
)

LAYOUT = Layout(
    name="usp",
    description="Ulysses inside groups of parallel.ulysses_degree ranks x varlen ring across them (USP), "
                "packs of several documents",
    chunks_per_rank=1,
    local_spans=varlen_spans,
    attention=usp_attention,
    multi_document=True,
    attention_kwargs=varlen_attention_kwargs,
    comm_bytes_per_token=usp_comm_bytes_per_token,
    comm_formula=f"{ULYSSES_COMM_FORMULA} + {RING_COMM_FORMULA}",
    split=SPLIT,
    auto=Auto(rank=1, fit=partial_ulysses, needs="a Ulysses degree gcd(sp, KV heads) between 1 and sp"),
)
