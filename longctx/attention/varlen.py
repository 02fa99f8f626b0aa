"""Packed (varlen) causal attention in one process: each sequence attends only to itself.

Default path (``kernel=None``, no flash-attn): ``F.scaled_dot_product_attention(is_causal=True,
enable_gqa=True)`` per *group* of documents, autograd doing the backward (``varlen_plan``).
Documents of equal length share one batched call; short documents are right-padded into one
batched call per length bucket (exact: under a causal mask a real query never sees the padding
after it). On CPU SDPA runs its flash kernel for float32 and float64 alike, and with
``enable_gqa`` it passes the fewer K/V heads straight to that kernel (no ``repeat_interleave``).
Memory grows with the sum of squared (bucketed) document lengths at most, never with the pack
length squared. ``kernel="flash" | "torch"`` runs the block-plan path that the ring variants share
(``blocks.py``: one block per document, lse merge, hand-written backward) -- the reference twin.
On CUDA with flash-attn installed this delegates to ``flash_attn_varlen_func``
(``longctx.attention.cuda``). ``kernel="flex"``: one FlexAttention call with a document mask
(``flex.py``; compiled on CUDA, forward-only on CPU), the alternative the GPU benchmark measures.
"""

from __future__ import annotations

import torch

from longctx.attention import cuda
from longctx.attention.blocks import Block, default_scale, run_blocks_backward, run_blocks_forward
from longctx.attention.flex import flex_varlen
from longctx.attention.varlen_plan import sdpa_varlen


def segment_blocks(cu_seqlens: torch.Tensor) -> list[Block]:
    """One causal diagonal block per non-empty segment of ``cu_seqlens``."""
    cu = [int(x) for x in cu_seqlens.tolist()]
    return [Block(s, e, s, e, True) for s, e in zip(cu[:-1], cu[1:]) if e > s]


def check_cu_seqlens(cu_seqlens: torch.Tensor, total: int) -> None:
    cu = cu_seqlens.tolist()
    if not cu or cu[0] != 0 or cu[-1] != total or any(b < a for a, b in zip(cu[:-1], cu[1:])):
        raise ValueError(f"cu_seqlens must rise from 0 to the sequence length {total}, got {cu}")


class _VarlenAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, cu_seqlens, scale, kernel):
        blocks = segment_blocks(cu_seqlens)
        out, lse = run_blocks_forward(q, k, v, blocks, scale, kernel)
        out = out.to(q.dtype)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.blocks, ctx.scale, ctx.kernel = blocks, scale, kernel
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = run_blocks_backward(dout, q, k, v, out, lse, ctx.blocks, ctx.scale, ctx.kernel)
        return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), None, None, None


def varlen_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    scale: float | None = None,
    kernel: str | None = None,
) -> torch.Tensor:
    """Causal attention within each segment ``[cu[i], cu[i+1])`` of a ``[1, H, T, D]`` pack.

    ``k``/``v`` may have fewer heads (GQA). ``kernel``: None (auto: flash-attn on CUDA when
    installed, else batched per-document SDPA), ``"flex"`` (FlexAttention, document mask), or a
    block kernel of ``blocks.KERNELS`` (the block-plan path).
    """
    if q.shape[0] != 1:
        raise ValueError(f"varlen_attention takes one flattened pack (batch 1), got batch {q.shape[0]}")
    check_cu_seqlens(cu_seqlens, q.shape[2])
    scale = default_scale(q, scale)
    if q.is_cuda and kernel is None:
        if cuda.has_flash_attn():
            return cuda.flash_varlen(q, k, v, cu_seqlens, scale)
    if kernel == "flex":
        return flex_varlen(q, k, v, cu_seqlens, scale)
    if kernel is None:
        return sdpa_varlen(q, k, v, cu_seqlens.cpu(), scale)
    return _VarlenAttention.apply(q, k, v, cu_seqlens.cpu(), scale, kernel)
