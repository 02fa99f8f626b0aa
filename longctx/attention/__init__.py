"""Attention kernels for long sequences: packed (varlen) attention and exact sequence-parallel kernels.

The bottom of the machinery: kernels and their shared primitives (per-block attention with the
log-sum-exp, ``blocks.py``; the one merge helper, ``ring/merge.py``; ring communication,
``ring/comm.py``; all-to-all, ``ulysses.py``; packed boundaries, ``boundaries.py``). Nothing here
imports the layouts or transformers: a layout (``longctx.distributed.layouts.<name>``) names its
kernel by object, and the transformers glue (``attn_implementation="longctx_varlen"`` /
``"longctx_ring"``, the ``sequence_parallel`` context, ``register()``) is
:mod:`longctx.distributed.hf_attention`, above both. Tensors are ``[B, H, T, D]`` (the SDPA / HF
layout); K/V may have fewer heads (GQA), they are never expanded in memory.

Public API::

    varlen_attention(q, k, v, cu_seqlens, scale=None) -> out              # one process, packed
    zigzag_ring_attention(q, k, v, group=None, scale=None) -> out         # local zigzag shard
    varlen_ring_attention(q, k, v, cu_seqlens, group=None, scale=None) -> out  # local contiguous shard, GLOBAL cu_seqlens
    ulysses_attention(q, k, v, cu_seqlens, group=None, scale=None) -> out  # contiguous shard, all-to-all to heads
    usp_attention(q, k, v, cu_seqlens, ulysses_group, ring_group, group=None) -> out  # Ulysses x varlen ring
    full_attention_reference(q, k, v, cu_seqlens=None, scale=None) -> out # dense float64-capable oracle

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
from longctx.attention.ring.varlen import varlen_ring_attention
from longctx.attention.ring.zigzag import zigzag_ring_attention
from longctx.attention.ulysses import ulysses_attention, usp_attention
from longctx.attention.varlen import varlen_attention

__all__ = [
    "block_attention_forward",
    "full_attention_reference",
    "ulysses_attention",
    "usp_attention",
    "varlen_attention",
    "varlen_ring_attention",
    "zigzag_ring_attention",
]
