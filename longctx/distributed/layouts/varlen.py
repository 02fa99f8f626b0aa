"""The ``varlen`` layout: contiguous shards of a pack of several documents.

Rank ``r`` holds the contiguous slice ``[r*T/W, (r+1)*T/W)``. Document boundaries may fall
anywhere, including across ranks; attention learns them from the GLOBAL ``cu_seqlens`` (the
``sequence_parallel`` context's, or gathered once per forward from the ranks' ``position_ids``).
Its kernel is the varlen ring (:func:`longctx.attention.ring.varlen.varlen_ring_attention`: K/V
all-gathered, each local run of a document attends its document's keys). It fits every pack, so
it is ``auto``'s last resort.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from longctx.attention.boundaries import cu_seqlens_from_position_ids
from longctx.attention.ring.varlen import varlen_ring_attention
from longctx.distributed.layouts.base import Auto, Layout, Spans


def varlen_spans(total_len: int, rank: int, world_size: int) -> Spans:
    """The ``rank``-th of ``world_size`` equal contiguous slices."""
    n = total_len // world_size
    return [(rank * n, (rank + 1) * n)]


def global_cu_seqlens(sp: Any, position_ids: torch.Tensor | None, local_len: int) -> torch.Tensor:
    """The pack's GLOBAL boundaries: the context's ``cu_seqlens``, else all-gathered ``position_ids``.

    Every layer of one forward gets the same ``position_ids`` tensor: gather once per tensor version.
    The cache (``sp.cache``) holds the tensor itself, so a new tensor at a reused address cannot match.
    """
    if sp.cu_seqlens is not None:
        return sp.cu_seqlens
    if position_ids is None:
        raise ValueError("longctx_ring (varlen layout) needs cu_seqlens in sequence_parallel(...) or position_ids")
    key = (tuple(position_ids.shape), position_ids._version)
    if sp.cache.get("pos") is not position_ids or sp.cache.get("key") != key:
        local = position_ids.reshape(-1)[:local_len].contiguous()
        parts = [torch.empty_like(local) for _ in range(sp.world_size)]
        dist.all_gather(parts, local, group=sp.group)
        # rank order = global order for contiguous shards
        sp.cache.update(pos=position_ids, key=key, cu=cu_seqlens_from_position_ids(torch.cat(parts)))
    return sp.cache["cu"]


def varlen_attention_kwargs(sp: Any, query: torch.Tensor, kwargs: dict) -> dict:
    """One pack per rank (batch 1); the ring needs the pack's GLOBAL ``cu_seqlens``."""
    if query.shape[0] != 1:
        raise ValueError(f"longctx_ring varlen layout takes one pack per rank (batch 1), got batch {query.shape[0]}")
    # Left where it is (the trainer's are on the host): the kernels plan their blocks from it on the
    # host, so a device copy would cost a host->device copy and a device->host sync per layer.
    return {"cu_seqlens": global_cu_seqlens(sp, kwargs.get("position_ids"), query.shape[2])}


LAYOUT = Layout(
    name="varlen",
    description="sp contiguous slices, packs of several documents (boundaries from the global cu_seqlens)",
    chunks_per_rank=1,
    local_spans=varlen_spans,
    attention=varlen_ring_attention,
    multi_document=True,
    attention_kwargs=varlen_attention_kwargs,
    auto=Auto(rank=3),  # last: every pack, every head count
)
