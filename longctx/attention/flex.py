"""Packed (varlen) causal attention through FlexAttention with a document mask: ``varlen_attention(kernel="flex")``.

One call over the whole pack: the mask ``same document and key <= query`` becomes a block-sparse
mask (``create_block_mask``), so blocks that cross documents are skipped and memory stays linear
in the pack length. The alternative to the default per-document-group SDPA path
(``varlen_plan``); which is faster on a GPU is what ``benchmarks/bench_gpu.py`` measures.

On CUDA the kernel is ``torch.compile(flex_attention)`` (eager flex materialises the scores) and
the block mask is built compiled too (eager builds a ``T x T`` boolean grid first). UNVERIFIED on
a GPU until ``scripts/gpu_run.py`` has run. On CPU torch runs flex eagerly and has NO backward
("FlexAttention does not support backward on CPU"): the CPU twin is forward-only (tests, inference).
"""

from __future__ import annotations

import functools
import warnings

import torch
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

from longctx.core.errors import LongctxError


def document_ids(cu_seqlens: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``[T]`` int32: the index of the document each token belongs to."""
    cu = cu_seqlens.to(device=device, dtype=torch.int64)
    return torch.repeat_interleave(torch.arange(len(cu) - 1, device=device, dtype=torch.int32), cu[1:] - cu[:-1])


def document_block_mask(cu_seqlens: torch.Tensor, device: torch.device):
    """Causal-within-document ``BlockMask`` for a pack (compiled construction on CUDA)."""
    doc = document_ids(cu_seqlens, device)
    t = int(doc.numel())

    def mask_mod(b, h, q_idx, kv_idx):
        return (doc[q_idx] == doc[kv_idx]) & (q_idx >= kv_idx)

    return create_block_mask(mask_mod, None, None, t, t, device=device, _compile=device.type == "cuda")


@functools.cache
def _compiled_flex():
    return torch.compile(flex_attention, dynamic=False)


def flex_varlen(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor, scale: float) -> torch.Tensor:
    """Causal attention within each ``cu_seqlens`` segment of a ``[1, H, T, D]`` pack (GQA: fewer K/V heads)."""
    if q.device.type == "cpu" and torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v)):
        raise LongctxError("varlen_attention kernel='flex': torch has no FlexAttention backward on CPU; "
                           "use it on CUDA, under torch.no_grad(), or pick another kernel")
    mask = document_block_mask(cu_seqlens, q.device)
    gqa = q.shape[1] != k.shape[1]
    if q.device.type == "cuda":
        return _compiled_flex()(q, k, v, block_mask=mask, scale=scale, enable_gqa=gqa)
    with warnings.catch_warnings():  # "flex_attention called without torch.compile()": intended off CUDA
        warnings.simplefilter("ignore", UserWarning)
        return flex_attention(q, k, v, block_mask=mask, scale=scale, enable_gqa=gqa)
