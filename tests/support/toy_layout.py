"""A toy sequence-parallel layout, written as a contributor adds one: this module plus one registry row.

``contiguous``: rank ``r`` of ``W`` holds the ``r``-th contiguous slice of a pack that is ONE causal
document (plus trailing padding); the kernel is the varlen ring's, reused by object, with the
boundaries "one causal sequence" (the context's, or the whole row). Nothing else in the repository
knows it: :data:`ROW` is the one line a real layout adds to ``LAYOUTS`` in
``longctx/distributed/layouts/__init__.py`` (the tests put it there with ``monkeypatch`` or
:func:`register_row`), and sharding, the trainer config, the planner, ``longctx_ring`` and the mesh
take it from the registry.
"""

from __future__ import annotations

from typing import Any

import torch

from longctx.attention.ring.varlen import varlen_ring_attention
from longctx.distributed.layouts.base import Layout, Spans


def contiguous_spans(total_len: int, rank: int, world_size: int) -> Spans:
    """The ``rank``-th of ``world_size`` equal contiguous slices."""
    n = total_len // world_size
    return [(rank * n, (rank + 1) * n)]


def one_document(sp: Any, query: torch.Tensor, kwargs: dict) -> dict:
    """The ring's GLOBAL boundaries: the context's (one document, maybe a padding segment), else the whole row."""
    if query.shape[0] != 1:
        raise ValueError(f"longctx_ring contiguous layout takes one pack per rank (batch 1), got batch {query.shape[0]}")
    total = query.shape[2] * sp.world_size
    return {"cu_seqlens": sp.cu_seqlens if sp.cu_seqlens is not None else torch.tensor([0, total], dtype=torch.int32)}


LAYOUT = Layout(
    name="contiguous",
    description="sp contiguous slices, one document per pack (the varlen ring's kernel)",
    chunks_per_rank=1,
    local_spans=contiguous_spans,
    attention=varlen_ring_attention,
    multi_document=False,
    attention_kwargs=one_document,
)

ROW = {LAYOUT.name: LAYOUT}
"""The registry row, as it would read in ``LAYOUTS``: ``"contiguous": contiguous.LAYOUT``."""


def register_row() -> None:
    """Add :data:`ROW` to the registry of this process (a spawned rank has no monkeypatch)."""
    from longctx.distributed.layouts import LAYOUTS

    LAYOUTS.update(ROW)
