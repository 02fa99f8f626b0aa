"""Boundaries of packed sequences: ``cu_seqlens`` from lengths or from ``position_ids`` restarts, and back.

Pure index math on the host, shared by the single-process attention glue (``longctx_varlen``), the
layouts (a contiguous layout gathers the GLOBAL boundaries from the ranks' positions), the sharding
of a pack (:mod:`longctx.distributed.sharding`) and the training step. It lives below both the
kernels' users and the layouts, so a layout row can use it without an import cycle through the registry.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def cu_seqlens_from_lengths(seq_lens: Sequence[int], total_len: int | None = None) -> torch.Tensor:
    """Cumulative lengths ``[0, l0, l0+l1, ...]`` (int32); a tail up to ``total_len`` becomes one more segment."""
    lens = [int(x) for x in seq_lens]
    if any(x <= 0 for x in lens):
        raise ValueError(f"seq_lens must be positive, got {lens}")
    s = sum(lens)
    if total_len is not None:
        if total_len < s:
            raise ValueError(f"seq_lens sum to {s} > pack length {total_len}")
        if total_len > s:
            lens.append(total_len - s)
    return torch.tensor([0] + lens, dtype=torch.int64).cumsum(0).to(torch.int32)


def cu_seqlens_from_position_ids(position_ids: torch.Tensor) -> torch.Tensor:
    """Boundaries where a 1-D position sequence does not continue by +1 (a restart), as int32 cu_seqlens."""
    pos = position_ids.reshape(-1)
    starts = torch.nonzero(pos[1:] != pos[:-1] + 1).flatten() + 1
    n = torch.tensor([pos.numel()], device=pos.device)
    return torch.cat([torch.zeros(1, dtype=starts.dtype, device=pos.device), starts, n]).to(torch.int32)


def flat_cu_seqlens(position_ids: torch.Tensor) -> torch.Tensor:
    """int32 boundaries of a ``[B, T]`` batch flattened to one row: each row's restarts, rows end to end."""
    b, t = position_ids.shape
    rows = [cu_seqlens_from_position_ids(position_ids[i]).to(torch.int64) + i * t for i in range(b)]
    return torch.cat([rows[0]] + [r[1:] for r in rows[1:]]).to(torch.int32)


def position_ids_from_cu_seqlens(cu_seqlens: torch.Tensor) -> torch.Tensor:
    """Positions restarting at 0 at every segment start (int64, 1-D)."""
    cu = cu_seqlens.to(torch.int64)
    lens = cu[1:] - cu[:-1]
    total = int(cu[-1])
    starts = torch.repeat_interleave(cu[:-1], lens)
    return torch.arange(total) - starts
