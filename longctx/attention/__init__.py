"""Attention for long sequences: packed (varlen) attention and exact ring attention across ranks.

Importing this package registers ``attn_implementation="longctx_varlen"`` and ``"longctx_ring"``
with transformers. Tensors are ``[B, H, T, D]`` (the SDPA / HF layout); K/V may have fewer heads
(GQA), they are never expanded in memory.

Public API::

    varlen_attention(q, k, v, cu_seqlens, scale=None) -> out              # one process, packed
    zigzag_ring_attention(q, k, v, group=None, scale=None) -> out         # local zigzag shard
    varlen_ring_attention(q, k, v, cu_seqlens, group=None, scale=None) -> out  # local contiguous shard, GLOBAL cu_seqlens
    ulysses_attention(q, k, v, cu_seqlens, group=None, scale=None) -> out  # contiguous shard, all-to-all to heads
    usp_attention(q, k, v, cu_seqlens, ulysses_group, ring_group, group=None) -> out  # Ulysses x varlen ring
    full_attention_reference(q, k, v, cu_seqlens=None, scale=None) -> out # dense float64-capable oracle
    with sequence_parallel(group, layout="zigzag" | "varlen" | "ulysses" | "usp", cu_seqlens=None,
                           ulysses_group=None, ring_group=None) as sp: model(..., longctx_sp=sp)

Single-process ``varlen_attention`` runs SDPA per group of documents and lets autograd do the
backward (``varlen_plan``: equal lengths batched, many short documents bucketed), or
``kernel="flex"`` (FlexAttention with a document mask, ``flex.py``); the hand-written block path
(``kernel="flash" | "efficient" | "cudnn" | "torch"``) is what the ring variants share. Its O(T)
kernels are torch's SDPA ops that return the lse (``sdpa_kernels.py``; the CUDA ones UNVERIFIED until
``scripts/gpu_run.py`` has run on a GPU); the quadratic ``"torch"`` kernel is never chosen silently
for a long block on CUDA.

Sharding helpers live in ``longctx.distributed.sharding`` (``shard_for_layout``, ``unshard``).
On CUDA with flash-attn / ring-flash-attn installed the same functions delegate to them
(``longctx.attention.cuda``, unverified on GPU in this project's CI); without them ring attention
runs on the SDPA-op block kernels.
"""

from longctx.attention.blocks import block_attention_forward, full_attention_reference
from longctx.attention.hf import (
    SequenceParallel,
    current_sequence_parallel,
    longctx_ring_attention,
    longctx_varlen_attention,
    register,
    sequence_parallel,
)
from longctx.attention.ring.varlen import varlen_ring_attention
from longctx.attention.ring.zigzag import zigzag_ring_attention
from longctx.attention.ulysses import ulysses_attention, usp_attention
from longctx.attention.varlen import varlen_attention

register()

__all__ = [
    "SequenceParallel",
    "block_attention_forward",
    "current_sequence_parallel",
    "full_attention_reference",
    "longctx_ring_attention",
    "longctx_varlen_attention",
    "register",
    "sequence_parallel",
    "ulysses_attention",
    "usp_attention",
    "varlen_attention",
    "varlen_ring_attention",
    "zigzag_ring_attention",
]
