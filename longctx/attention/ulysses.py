"""Ulysses (all-to-all) sequence parallelism and the Ulysses x ring hybrid (USP), for packed sequences.

Ulysses (DeepSpeed-Ulysses, arXiv 2309.14509): rank ``r`` of ``P`` holds the contiguous slice
``[r*n, (r+1)*n)`` of a pack with ALL heads. One all-to-all (q, k, v together) trades the sequence
shard for a head shard: afterwards rank ``r`` holds the WHOLE pack for heads ``[r*H/P, (r+1)*H/P)``, runs
plain single-process packed attention on it (:func:`longctx.attention.varlen.varlen_attention`,
the pack's GLOBAL ``cu_seqlens``: after the exchange every document is whole), and one all-to-all
brings the output back to the sequence shard. The backward of an all-to-all is the reverse
all-to-all (:class:`_AllToAll`), so autograd does the rest. Exact.

GQA: ``P`` must divide the query heads. K/V heads are split when ``P`` divides them; otherwise
they are replicated (``repeat_interleave``) to ``lcm(Hkv, P)`` heads, the fewest copies that ``P``
divides and that keep every local query head next to its own K/V head (``Hkv | P`` is the usual
case: degree above the KV heads).

USP (arXiv 2405.07719, yunchang's ``LongContextAttention``): ``P = U x R`` ranks; SP rank
``p = ring_rank * U + ulysses_rank`` ("Ulysses inside": the ``U`` ranks of a Ulysses group are
contiguous, the bandwidth-hungry all-to-all stays on the fastest links). The all-to-all inside
each Ulysses group gathers that group's ``U`` contiguous slices, i.e. ring rank ``j`` then holds
the ``j``-th contiguous ``1/R`` of the pack for ``H/U`` heads, and the varlen ring
(:func:`longctx.attention.ring.varlen.varlen_ring_attention`) runs across the ring group.

gloo (CPU) and NCCL (CUDA) both implement ``all_to_all_single``, the one collective used here.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

from longctx.attention.ring.varlen import varlen_ring_attention
from longctx.attention.varlen import varlen_attention


def _all_to_all(x: torch.Tensor, group) -> torch.Tensor:
    """``out[s] = x[me]`` of rank ``s``: dim 0 (size = group size) is exchanged."""
    x = x.contiguous()
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)  # contiguous (empty_like keeps a view's strides)
    dist.all_to_all_single(out, x, group=group)
    return out


def seq_to_heads_local(x: torch.Tensor, group) -> torch.Tensor:
    """``[B, H, n, D]`` (local slice, all heads) -> ``[B, H/P, P*n, D]`` (whole sequence, local heads)."""
    p = dist.get_world_size(group)
    b, h, n, d = x.shape
    send = x.reshape(b, p, h // p, n, d).transpose(0, 1)  # [P, B, H/P, n, D]: block j goes to rank j
    recv = _all_to_all(send, group)  # recv[s]: rank s's slice of our heads
    return recv.permute(1, 2, 0, 3, 4).reshape(b, h // p, p * n, d)


def heads_to_seq_local(x: torch.Tensor, group) -> torch.Tensor:
    """``[B, h, P*n, D]`` (whole sequence, local heads) -> ``[B, P*h, n, D]`` (local slice, all heads)."""
    p = dist.get_world_size(group)
    b, h, t, d = x.shape
    send = x.reshape(b, h, p, t // p, d).permute(2, 0, 1, 3, 4)  # [P, B, h, n, D]: slice j goes to rank j
    recv = _all_to_all(send, group)  # recv[s]: rank s's heads of our slice
    return recv.transpose(0, 1).reshape(b, p * h, t // p, d)


class _AllToAll(torch.autograd.Function):
    """Sequence shard -> head shard (``to_heads``) or back; the backward is the other direction."""

    @staticmethod
    def forward(ctx, x, group, to_heads):
        ctx.group, ctx.to_heads = group, to_heads
        return (seq_to_heads_local if to_heads else heads_to_seq_local)(x, group)

    @staticmethod
    def backward(ctx, grad):
        return (heads_to_seq_local if ctx.to_heads else seq_to_heads_local)(grad, ctx.group), None, None


def seq_to_heads(x: torch.Tensor, group) -> torch.Tensor:
    """Differentiable sequence-shard -> head-shard all-to-all (backward: the reverse all-to-all)."""
    return _AllToAll.apply(x, group, True)


def heads_to_seq(x: torch.Tensor, group) -> torch.Tensor:
    """Differentiable head-shard -> sequence-shard all-to-all (backward: the reverse all-to-all)."""
    return _AllToAll.apply(x, group, False)


def kv_replication(degree: int, num_heads: int, num_kv_heads: int) -> int:
    """How many copies of each K/V head Ulysses of ``degree`` needs: 1 when it divides the KV heads,
    else ``lcm(Hkv, degree) / Hkv``. ``ValueError`` when the degree does not divide the query heads."""
    if num_heads % degree:
        raise ValueError(f"Ulysses degree {degree} must divide the {num_heads} attention heads")
    if num_heads % num_kv_heads:
        raise ValueError(f"{num_heads} attention heads are not a multiple of the {num_kv_heads} KV heads")
    return math.lcm(num_kv_heads, degree) // num_kv_heads


def _ulysses_scatter(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, group) -> tuple[torch.Tensor, ...]:
    """q, k, v from the sequence shard to the head shard of ``group`` (K/V replicated as needed)."""
    p = dist.get_world_size(group)
    reps = kv_replication(p, q.shape[1], k.shape[1])
    if reps > 1:
        k, v = k.repeat_interleave(reps, dim=1), v.repeat_interleave(reps, dim=1)
    # ONE all-to-all for the three: head block j of the concatenation = (q, k, v head blocks j)
    b, n, d = q.shape[0], q.shape[2], q.shape[3]
    sizes = [x.shape[1] // p for x in (q, k, v)]
    qkv = torch.cat([x.reshape(b, p, h, n, d) for x, h in zip((q, k, v), sizes)], dim=2)
    return seq_to_heads(qkv.reshape(b, p * sum(sizes), n, d), group).split(sizes, dim=1)


def ulysses_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    group: dist.ProcessGroup | None = None,
    scale: float | None = None,
    kernel: str | None = None,
) -> torch.Tensor:
    """Causal per-document attention of this rank's contiguous shard ``[1, H, n, D]`` (Ulysses).

    ``cu_seqlens``: GLOBAL boundaries of the whole (padded) pack of ``n * P`` tokens, the same on
    every rank (as for :func:`varlen_ring_attention`). K/V may have fewer heads (GQA, see the
    module docstring). ``kernel`` is passed to :func:`varlen_attention`.
    """
    if q.shape[0] != 1:
        raise ValueError(f"ulysses_attention takes one pack per rank (batch 1), got batch {q.shape[0]}")
    group = group if group is not None else dist.group.WORLD
    qh, kh, vh = _ulysses_scatter(q, k, v, group)
    out = varlen_attention(qh, kh, vh, cu_seqlens=cu_seqlens.to(torch.int32), scale=scale, kernel=kernel)
    return heads_to_seq(out, group)


def usp_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    ulysses_group: dist.ProcessGroup,
    ring_group: dist.ProcessGroup,
    group: dist.ProcessGroup | None = None,
    scale: float | None = None,
    kernel: str | None = None,
) -> torch.Tensor:
    """Causal per-document attention of this rank's contiguous shard ``[1, H, n, D]`` (USP).

    ``group``: the whole SP group (``U * R`` ranks, checked against the two sub-groups: SP rank
    ``= ring_rank * U + ulysses_rank``, :func:`longctx.distributed.layouts.usp.usp_group_ranks`);
    ``cu_seqlens``: GLOBAL boundaries of the whole padded pack. Ulysses all-to-all inside
    ``ulysses_group``, varlen ring attention across ``ring_group``, all-to-all back.
    """
    if q.shape[0] != 1:
        raise ValueError(f"usp_attention takes one pack per rank (batch 1), got batch {q.shape[0]}")
    group = group if group is not None else dist.group.WORLD
    u, r = dist.get_world_size(ulysses_group), dist.get_world_size(ring_group)
    expected = dist.get_rank(ring_group) * u + dist.get_rank(ulysses_group)
    if u * r != dist.get_world_size(group) or dist.get_rank(group) != expected:
        raise ValueError(f"usp_attention: SP rank {dist.get_rank(group)} of {dist.get_world_size(group)} is not "
                         f"ring rank x {u} + Ulysses rank ({expected} of {u}x{r}); build the groups with "
                         "longctx.distributed.layouts.usp.usp_group_ranks")
    if u == 1:
        return varlen_ring_attention(q, k, v, cu_seqlens, group=ring_group, scale=scale, kernel=kernel)
    if r == 1:
        return ulysses_attention(q, k, v, cu_seqlens, group=ulysses_group, scale=scale, kernel=kernel)
    qh, kh, vh = _ulysses_scatter(q, k, v, ulysses_group)
    out = varlen_ring_attention(qh, kh, vh, cu_seqlens, group=ring_group, scale=scale, kernel=kernel)
    return heads_to_seq(out, ulysses_group)
