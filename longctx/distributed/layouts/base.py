"""What a sequence-parallel layout declares: the :class:`Layout` row, and the defaults rows share.

A row is plain data plus small pure functions, no torch at import (the planner reads the registry
without loading torch). The generic machinery reads only these fields: the sharding math
(:mod:`longctx.distributed.sharding`: unit, spans), the attention glue (``longctx_ring`` in
:mod:`longctx.attention.hf`: attention, attention_kwargs, multi_document), the trainer
(multi_document, check_heads) and the planner (unit, check_heads, comm_bytes_per_token).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Spans = list[tuple[int, int]]


def any_heads(sp_degree: int, num_heads: int, num_kv_heads: int) -> str | None:
    """Head constraint of a layout that splits the sequence, not the heads: every degree works."""
    return None


def no_attention_kwargs(sp: Any, query: Any, kwargs: dict) -> dict:
    """Layouts whose attention needs nothing beyond q, k, v, group and scale."""
    return {}


RING_COMM_FORMULA = "T·(4a·kv + 16·kv + (4+a)·q + 2a·kv)"


def ring_comm_bytes_per_token(q_dim: int, kv_dim: int, a: int) -> float:
    """Ring attention's communication buffers per local token (ring-flash-attn backward, the larger
    direction): the K/V block being used and the one in flight, 2 · 2 · a · kv; the dK/dV being
    accumulated and in flight in fp32, 2 · 2 · 4 · kv; the fp32 dq accumulator and block buffers,
    (4 + a) · q + 2 · a · kv. The planner multiplies it by the tokens a GPU holds."""
    return 4 * a * kv_dim + 16 * kv_dim + (4 + a) * q_dim + 2 * a * kv_dim


@dataclass(frozen=True)
class Layout:
    """One sequence-parallel layout: how a pack is split over ``W`` ranks and which attention runs on it."""

    name: str
    """Registry key; the value of ``parallel.layout`` and ``longctx plan --layout``."""
    description: str
    """One line for ``--help`` and error messages."""
    chunks_per_rank: int
    """The padded pack is cut into ``chunks_per_rank * W`` equal chunks; its length must be a
    multiple of that (:meth:`unit`)."""
    local_spans: Callable[[int, int, int], Spans]
    """``(total_len, rank, world_size) -> [(start, end), ...]``: the global token ranges rank ``rank``
    holds, in local order (``total_len`` is a multiple of the unit, rank and world are checked).
    Concatenated over ranks they must partition ``range(total_len)``; ``unshard`` inverts them."""
    attention: str
    """``"module:function"`` of the attention this layout runs on local shards, called as
    ``fn(q, k, v, group=..., scale=..., **attention_kwargs(...))``; imported lazily (no cycles)."""
    multi_document: bool
    """Whether one pack may hold several documents. False: the row is ONE causal sequence (plus
    trailing padding), and the trainer and ``longctx_ring`` refuse packs with several."""
    attention_kwargs: Callable[[Any, Any, dict], dict] = no_attention_kwargs
    """``(sp, query, kwargs) -> dict``: checks the local inputs against the layout and returns the
    extra keyword arguments of :attr:`attention` (``sp``: the active ``SequenceParallel``;
    ``kwargs``: what transformers passed to the attention layer, e.g. ``position_ids``)."""
    check_heads: Callable[[int, int, int], str | None] = any_heads
    """``(sp_degree, num_heads, num_kv_heads) -> why not | None``: the GQA constraint (a layout that
    splits heads, as Ulysses, needs the degree to divide the KV heads)."""
    comm_bytes_per_token: Callable[[int, int, int], float] = ring_comm_bytes_per_token
    """``(q_dim, kv_dim, a) -> bytes``: the planner's communication buffers per local token."""
    comm_formula: str = RING_COMM_FORMULA
    """:attr:`comm_bytes_per_token` in the planner's notation (shown in its memory table)."""

    def unit(self, world_size: int) -> int:
        """The pack length must be a multiple of this for ``world_size`` ranks."""
        return self.chunks_per_rank * world_size

    @property
    def unit_formula(self) -> str:
        """:meth:`unit` as text: ``"sp"`` or ``"2·sp"``."""
        return "sp" if self.chunks_per_rank == 1 else f"{self.chunks_per_rank}·sp"

    def attention_fn(self) -> Callable:
        """The attention function named by :attr:`attention`."""
        module, _, name = self.attention.partition(":")
        return getattr(importlib.import_module(module), name)
