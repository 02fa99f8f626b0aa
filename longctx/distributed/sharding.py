"""Sequence-parallel index math: which tokens of a pack each rank holds, and back again.

Pure functions, no process group: the trainer, the tests and the benchmarks call them on whole
packs (after labels were shifted to next-token targets) and the attention functions in
``longctx.attention`` consume the result.

What differs per layout (which tokens rank ``r`` of ``W`` holds, the length unit) is declared by
its row in :mod:`longctx.distributed.layouts` (``zigzag``: chunks ``r`` and ``2W-1-r`` of ``2W``;
``varlen``: the ``r``-th contiguous slice); everything here is generic over those rows.

Padding rule: a pack whose length is not a multiple of the layout unit (``Layout.unit(W)``: ``2W``
for zigzag, ``W`` for varlen) is padded at the END with ``pad`` tokens: ``input_ids`` = ``pad_token_id``,
``labels`` = -100, ``loss_weights`` = 0, ``position_ids`` = 0, 1, 2, ... (a fresh segment). The
padding is its own segment in ``cu_seqlens`` and lies after every real token, so causal attention
never lets a real row see it, and it carries no loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from longctx.attention.boundaries import (
    cu_seqlens_from_lengths,
    cu_seqlens_from_position_ids,
    position_ids_from_cu_seqlens,
)
from longctx.distributed.layouts import Layout, get_layout

# value used to pad each known column; other columns pad with 0
PAD_VALUES: dict[str, float] = {"labels": -100, "loss_weights": 0.0, "input_ids": 0}


def _check_layout(layout: str, world_size: int, rank: int | None = None) -> Layout:
    row = get_layout(layout)
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if rank is not None and not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside [0, {world_size})")
    return row


def layout_unit(layout: str, world_size: int) -> int:
    """The pack length must be a multiple of this: ``2*world_size`` (zigzag) or ``world_size`` (varlen)."""
    return _check_layout(layout, world_size).unit(world_size)


def padded_length(length: int, layout: str, world_size: int) -> int:
    """``length`` rounded up to the layout unit."""
    unit = layout_unit(layout, world_size)
    return -(-length // unit) * unit


def local_indices(total_len: int, layout: str, rank: int, world_size: int) -> torch.Tensor:
    """Global token indices (int64, local order) held by ``rank``; ``total_len`` must be padded already."""
    row = _check_layout(layout, world_size, rank)
    unit = row.unit(world_size)
    if total_len % unit:
        raise ValueError(f"length {total_len} is not a multiple of the {layout} unit {unit}; pad it first")
    return torch.cat([torch.arange(a, b) for a, b in row.local_spans(total_len, rank, world_size)])


def pad_to_unit(tensors: dict[str, torch.Tensor], unit: int, pad_token_id: int = 0) -> tuple[dict[str, torch.Tensor], int]:
    """Pad every ``[..., T]`` tensor on its last dim to a multiple of ``unit``; returns (padded, n_pad).

    Positions of the padding restart at 0 (its own segment); see the module docstring for values.
    """
    lengths = {t.shape[-1] for t in tensors.values()}
    if len(lengths) != 1:
        raise ValueError(f"all tensors must share the last (sequence) dim, got lengths {sorted(lengths)}")
    t_len = lengths.pop()
    n_pad = (-t_len) % unit
    if n_pad == 0:
        return dict(tensors), 0
    out = {}
    for name, t in tensors.items():
        if name == "position_ids":
            tail = torch.arange(n_pad, dtype=t.dtype, device=t.device).expand(*t.shape[:-1], n_pad)
        else:
            value = pad_token_id if name == "input_ids" else PAD_VALUES.get(name, 0)
            tail = torch.full((*t.shape[:-1], n_pad), value, dtype=t.dtype, device=t.device)
        out[name] = torch.cat([t, tail], dim=-1)
    return out, n_pad


def shard_for_layout(
    tensors: dict[str, torch.Tensor],
    layout: str,
    rank: int,
    world_size: int,
    seq_lens: Sequence[int] | None = None,
    pad_token_id: int = 0,
) -> dict[str, torch.Tensor]:
    """The local shard of a pack for ``rank``: pad to the layout unit, then select this rank's tokens.

    ``tensors``: name -> ``[T]`` or ``[B, T]`` tensors sharing the sequence (last) dim, e.g.
    ``input_ids``, ``labels`` (already shifted next-token targets), ``position_ids``,
    ``loss_weights``. ``seq_lens``: the real sequence lengths of the pack (``B == 1``); when given,
    ``position_ids`` are derived from it if absent; when not, boundaries come from
    ``position_ids`` restarts (or the whole row is one sequence).

    For ``[B, T]`` input without ``seq_lens``, ``cu_seqlens`` is computed from row 0's
    ``position_ids`` only (the other rows' boundaries are ignored): rows with different document
    boundaries must be sharded one row at a time (call this once per ``[T]`` row).

    Returns the same names sharded (``position_ids`` always present: the GLOBAL positions of the
    local tokens, which is what RoPE needs), plus

    * ``"cu_seqlens"``: int32 GLOBAL boundaries of the padded pack (padding = last segment); give
      it to ``sequence_parallel(..., cu_seqlens=...)`` for the varlen layout;
    * ``"indices"``: int64 global token index of every local token (what :func:`unshard` inverts).
    """
    _check_layout(layout, world_size, rank)
    if not tensors:
        raise ValueError("shard_for_layout: no tensors given")
    tensors = dict(tensors)
    t_len = next(iter(tensors.values())).shape[-1]
    ref = next(iter(tensors.values()))
    if "position_ids" not in tensors:
        if seq_lens is not None:
            pos = position_ids_from_cu_seqlens(cu_seqlens_from_lengths(seq_lens, t_len))
        else:
            pos = torch.arange(t_len)
        tensors["position_ids"] = pos.to(ref.device).expand(*ref.shape[:-1], t_len).contiguous()
    padded, n_pad = pad_to_unit(tensors, layout_unit(layout, world_size), pad_token_id)
    total = t_len + n_pad
    if seq_lens is not None:
        cu = cu_seqlens_from_lengths(seq_lens, t_len)
        if n_pad:
            cu = torch.cat([cu, torch.tensor([total], dtype=torch.int32)])
    else:
        cu = cu_seqlens_from_position_ids(padded["position_ids"].reshape(-1, total)[0])
    idx = local_indices(total, layout, rank, world_size)
    out = {name: t.index_select(-1, idx.to(t.device)).contiguous() for name, t in padded.items()}
    out["cu_seqlens"] = cu
    out["indices"] = idx
    return out


def unshard(shards: Sequence[torch.Tensor], layout: str, total_len: int | None = None, dim: int = -1) -> torch.Tensor:
    """Inverse of :func:`shard_for_layout`: per-rank local tensors (rank order) -> the global tensor.

    ``total_len`` (the unpadded length) strips the padding; ``dim`` is the sequence dim.
    """
    world_size = len(shards)
    cat = torch.cat(list(shards), dim=dim)
    padded = cat.shape[dim]
    order = torch.cat([local_indices(padded, layout, r, world_size) for r in range(world_size)])
    inv = torch.empty_like(order)
    inv[order] = torch.arange(padded)
    out = cat.index_select(dim, inv.to(cat.device))
    if total_len is not None:
        out = out.narrow(dim, 0, total_len)
    return out
