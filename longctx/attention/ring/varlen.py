"""Varlen ring attention (the "llama3" all-gather-K/V scheme) for packed sequences over W ranks.

Rank r holds the contiguous token slice ``[r*n, (r+1)*n)`` of a pack whose documents may cross
rank boundaries. Forward all-gathers K/V (memory: the pack's K/V, linear in T), then each local
query run of a document attends its document's earlier keys (one full block) and its own run
(one causal block); results merge by lse. Backward re-gathers K/V (nothing global is saved),
computes dK/dV for the whole pack and sums them across ranks (all_reduce; gloo has no
reduce_scatter), keeping this rank's slice. Exact, like the zigzag scheme; its advantage is that
boundaries can fall anywhere.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from longctx.attention import cuda
from longctx.attention.blocks import Block, default_scale, run_blocks_backward, run_blocks_forward
from longctx.attention.varlen import check_cu_seqlens


def local_varlen_blocks(cu_seqlens: torch.Tensor, start: int, end: int) -> list[Block]:
    """Blocks for local queries ``[start, end)`` (query index local, key index global)."""
    cu = [int(x) for x in cu_seqlens.tolist()]
    blocks = []
    for s, e in zip(cu[:-1], cu[1:]):
        qs, qe = max(s, start), min(e, end)
        if qs >= qe:
            continue
        if qs > s:  # the document started on an earlier rank: its earlier keys are all visible
            blocks.append(Block(qs - start, qe - start, s, qs, False))
        blocks.append(Block(qs - start, qe - start, qs, qe, True))
    return blocks


def _all_gather_seq(x: torch.Tensor, group) -> torch.Tensor:
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, x.contiguous(), group=group)
    return torch.cat(parts, dim=2)


class _VarlenRing(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, cu_seqlens, group, scale, kernel):
        n, rank = q.shape[2], dist.get_rank(group)
        blocks = local_varlen_blocks(cu_seqlens, rank * n, (rank + 1) * n)
        k_all, v_all = _all_gather_seq(k, group), _all_gather_seq(v, group)
        out, lse = run_blocks_forward(q, k_all, v_all, blocks, scale, kernel)
        out = out.to(q.dtype)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.blocks, ctx.group, ctx.scale, ctx.kernel = blocks, group, scale, kernel
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse = ctx.saved_tensors
        n, rank = q.shape[2], dist.get_rank(ctx.group)
        k_all, v_all = _all_gather_seq(k, ctx.group), _all_gather_seq(v, ctx.group)
        dq, dk_all, dv_all = run_blocks_backward(dout, q, k_all, v_all, out, lse, ctx.blocks, ctx.scale, ctx.kernel)
        dkv = torch.stack([dk_all, dv_all])
        dist.all_reduce(dkv, group=ctx.group)
        dk, dv = dkv[0, :, :, rank * n:(rank + 1) * n], dkv[1, :, :, rank * n:(rank + 1) * n]
        return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), None, None, None, None


def varlen_ring_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    group: dist.ProcessGroup | None = None,
    scale: float | None = None,
    kernel: str | None = None,
) -> torch.Tensor:
    """Causal per-document attention of this rank's contiguous shard ``[1, H, n, D]``.

    ``cu_seqlens``: GLOBAL boundaries of the whole (padded) pack of ``n * W`` tokens, the same on
    every rank (``shard_for_layout(...)["cu_seqlens"]``). K/V may have fewer heads (GQA).
    """
    if q.shape[0] != 1:
        raise ValueError(f"varlen_ring_attention takes one pack per rank (batch 1), got batch {q.shape[0]}")
    group = group if group is not None else dist.group.WORLD
    check_cu_seqlens(cu_seqlens.cpu(), q.shape[2] * dist.get_world_size(group))
    scale = default_scale(q, scale)
    if q.is_cuda and kernel is None:
        if cuda.has_ring_flash_attn():
            return cuda.llama3_varlen_ring(q, k, v, cu_seqlens, scale, group)
    return _VarlenRing.apply(q, k, v, cu_seqlens.cpu(), group, scale, kernel)
