"""The ``zigzag`` layout: one long causal sequence, balanced over the ranks (ring-flash-attn's scheme).

The sequence is cut into ``2W`` equal chunks; rank ``r`` holds chunks ``r`` and ``2W-1-r`` (in that
order), so causal work is the same on every rank. The whole row is ONE causal sequence (plus
trailing padding): use it for long single documents; packs of several documents need ``varlen``.
Its kernel is the zigzag ring (:func:`longctx.attention.ring.zigzag.zigzag_ring_attention`: K/V
travel the ring, each hop computing only the causally visible blocks of these two chunks).
"""

from __future__ import annotations

from longctx.attention.ring.zigzag import zigzag_ring_attention
from longctx.distributed.layouts.base import Auto, Layout, Spans


def zigzag_chunks(rank: int, world_size: int) -> tuple[int, int]:
    """The two chunk indices (out of ``2*world_size``) that ``rank`` holds, in local order."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside [0, {world_size})")
    return rank, 2 * world_size - 1 - rank


def zigzag_spans(total_len: int, rank: int, world_size: int) -> Spans:
    """Chunks ``rank`` and ``2W-1-rank`` of ``2W`` equal chunks."""
    c = total_len // (2 * world_size)
    return [(i * c, (i + 1) * c) for i in zigzag_chunks(rank, world_size)]


LAYOUT = Layout(
    name="zigzag",
    description="2·sp chunks, rank r holds chunks r and 2·sp-1-r (balanced causal work), one document per pack",
    chunks_per_rank=2,
    local_spans=zigzag_spans,
    attention=zigzag_ring_attention,
    multi_document=False,
    auto=Auto(rank=2),  # after the all-to-all layouts; before varlen: the same ring with balanced causal work
)
