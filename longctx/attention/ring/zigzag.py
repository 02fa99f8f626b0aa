"""Zigzag ring attention: exact causal attention of one sequence split over W ranks.

Rank r holds chunks (r, 2W-1-r) of 2W equal chunks (``longctx.distributed.layouts.zigzag``), so every
rank does the same causal work. K/V travel the ring (W-1 hops); at hop i rank r holds the K/V of
rank s = r-i and computes only the visible part:

* s == r: causal on the local 2c x 2c block (the local order is increasing in global position);
* s <  r: all local queries see the first K/V chunk (chunk s) in full;
* s >  r: only the second query chunk (2W-1-r) sees both K/V chunks, in full.

Backward: K/V travel the ring again and dK/dV accumulators travel one hop behind them, arriving
home after W hops. Each block's gradients use the final out/lse (the flash backward identity).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from longctx.attention import cuda
from longctx.attention.blocks import (
    Block,
    acc_dtype,
    default_scale,
    new_accumulators,
    run_blocks_backward,
    run_blocks_forward,
)
from longctx.attention.ring.comm import RingComm

_KV_TAG, _DKV_TAG = 0, 1


def zigzag_blocks(rank: int, src: int, n_local: int) -> list[Block]:
    """Blocks of local queries (2 chunks of c) against the K/V that rank ``src`` holds."""
    c = n_local // 2
    if src == rank:
        return [Block(0, 2 * c, 0, 2 * c, True)]
    if src < rank:
        return [Block(0, 2 * c, 0, c, False)]
    return [Block(c, 2 * c, 0, 2 * c, False)]


class _ZigzagRing(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, group, scale, kernel):
        comm = RingComm(group)
        rank, w, n = comm.rank, comm.world_size, q.shape[2]
        acc = new_accumulators(q, v)
        k_cur, v_cur = k, v
        for step in range(w):
            if step + 1 < w:
                nxt = comm.send_recv([k_cur, v_cur], _KV_TAG)
            run_blocks_forward(q, k_cur, v_cur, zigzag_blocks(rank, (rank - step) % w, n), scale, kernel, acc)
            if step + 1 < w:
                comm.wait()
                k_cur, v_cur = nxt
        out, lse = acc
        out = out.to(q.dtype)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.group, ctx.scale, ctx.kernel = group, scale, kernel
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse = ctx.saved_tensors
        kv_comm, dkv_comm = RingComm(ctx.group), RingComm(ctx.group)
        rank, w, n = kv_comm.rank, kv_comm.world_size, q.shape[2]
        dt = acc_dtype(q.dtype)
        dq = torch.zeros_like(q, dtype=dt)
        k_cur, v_cur = k, v
        dk_buf = dv_buf = None
        for step in range(w):
            if step + 1 < w:
                nxt = kv_comm.send_recv([k_cur, v_cur], _KV_TAG)
            dk_blk, dv_blk = torch.zeros_like(k, dtype=dt), torch.zeros_like(v, dtype=dt)
            blocks = zigzag_blocks(rank, (rank - step) % w, n)
            run_blocks_backward(dout, q, k_cur, v_cur, out, lse, blocks, ctx.scale, ctx.kernel, (dq, dk_blk, dv_blk))
            if w == 1:
                dk_buf, dv_buf = dk_blk, dv_blk
                break
            if step > 0:  # the partial sums for this K/V from the ranks it already visited
                dkv_comm.wait()
                dk_blk += dk_buf
                dv_blk += dv_buf
            dk_buf, dv_buf = dkv_comm.send_recv([dk_blk, dv_blk], _DKV_TAG)
            if step + 1 < w:
                kv_comm.wait()
                k_cur, v_cur = nxt
        dkv_comm.wait()  # after W hops the buffers hold the full gradient of our own K/V
        return dq.to(q.dtype), dk_buf.to(k.dtype), dv_buf.to(v.dtype), None, None, None


def zigzag_ring_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    group: dist.ProcessGroup | None = None,
    scale: float | None = None,
    kernel: str | None = None,
) -> torch.Tensor:
    """Causal attention of this rank's zigzag shard ``[B, H, 2c, D]`` against the whole sequence.

    Every rank of ``group`` calls it with its own shard (``shard_for_layout(..., "zigzag")``); the
    output is this rank's shard of full causal attention. K/V may have fewer heads (GQA).
    """
    if q.shape[2] % 2:
        raise ValueError(f"zigzag shard length must be even (two chunks), got {q.shape[2]}")
    group = group if group is not None else dist.group.WORLD
    scale = default_scale(q, scale)
    if q.is_cuda and kernel is None:
        if cuda.has_ring_flash_attn():
            return cuda.zigzag_ring(q, k, v, scale, group)
    return _ZigzagRing.apply(q, k, v, group, scale, kernel)
