"""The ``usp`` layout: Ulysses inside groups of ``U`` ranks x varlen ring across ``R = sp / U`` of them.

USP (arXiv 2405.07719): the SP group of ``U x R`` ranks holds contiguous slices (as ``varlen``);
SP rank ``p = ring_rank * U + ulysses_rank``. The all-to-all inside a Ulysses group turns its ``U``
slices into one contiguous ``1/R`` of the pack for ``H/U`` heads; the varlen ring runs across the
ring group on those. It lifts Ulysses' cap (``U`` must divide the heads, ``R`` is free). The two
sub-groups come from the ``sequence_parallel`` context (``ulysses_group=``, ``ring_group=``; the
trainer builds them with :func:`longctx.distributed.mesh.build_usp_groups`).
"""

from __future__ import annotations

from typing import Any

from longctx.distributed.layouts.base import RING_COMM_FORMULA, Layout, ring_comm_bytes_per_token
from longctx.distributed.layouts.ulysses import ULYSSES_COMM_FORMULA, ulysses_comm_bytes_per_token
from longctx.distributed.layouts.varlen import varlen_attention_kwargs, varlen_spans


def usp_attention_kwargs(sp: Any, query: Any, kwargs: dict) -> dict:
    """The varlen row's (batch 1, GLOBAL cu_seqlens) plus the context's Ulysses and ring sub-groups."""
    ulysses, ring = getattr(sp, "ulysses_group", None), getattr(sp, "ring_group", None)
    if ulysses is None or ring is None:
        raise ValueError("longctx_ring usp layout needs sequence_parallel(..., ulysses_group=, ring_group=) "
                         "(longctx.distributed.mesh.build_usp_groups)")
    return {**varlen_attention_kwargs(sp, query, kwargs), "ulysses_group": ulysses, "ring_group": ring}


def usp_comm_bytes_per_token(q_dim: int, kv_dim: int, a: int) -> float:
    """Both buffers: the all-to-all copies and the ring's (the ring holds U times the tokens with
    1/U of the heads: the same bytes per local token as a plain ring)."""
    return ulysses_comm_bytes_per_token(q_dim, kv_dim, a) + ring_comm_bytes_per_token(q_dim, kv_dim, a)


LAYOUT = Layout(
    name="usp",
    description="Ulysses inside groups of parallel.ulysses_degree ranks x varlen ring across them (USP), "
                "packs of several documents",
    chunks_per_rank=1,
    local_spans=varlen_spans,
    attention="longctx.attention.ulysses:usp_attention",
    multi_document=True,
    attention_kwargs=usp_attention_kwargs,
    comm_bytes_per_token=usp_comm_bytes_per_token,
    comm_formula=f"{ULYSSES_COMM_FORMULA} + {RING_COMM_FORMULA}",
)
