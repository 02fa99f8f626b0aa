"""Data-parallel x sequence-parallel process groups, from the world size.

The mesh math is pure (``Mesh.from_world``): tests check it without a process group. Ranks of one
sequence-parallel group are contiguous (``rank = dp_rank * sp + sp_rank``) so that, on a node, the
ring traffic stays on the fastest links. ``build_groups`` then creates the ``torch.distributed``
groups; every rank must call it (``new_group`` is collective).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from longctx.core.errors import LongctxError


@dataclass(frozen=True)
class Mesh:
    """Where one rank sits in the DP x SP grid."""

    world_size: int
    sp_degree: int
    rank: int

    @classmethod
    def from_world(cls, world_size: int, sp_degree: int, rank: int = 0) -> "Mesh":
        """Check the degrees and build the mesh; raises naming ``parallel.sp_degree`` on a bad product."""
        if world_size < 1:
            raise LongctxError(f"world size must be >= 1, got {world_size}")
        if sp_degree < 1 or world_size % sp_degree:
            raise LongctxError(f"parallel.sp_degree: {sp_degree} does not divide the world size {world_size}")
        if not 0 <= rank < world_size:
            raise LongctxError(f"rank {rank} is outside the world of {world_size}")
        return cls(world_size, sp_degree, rank)

    @property
    def dp_degree(self) -> int:
        return self.world_size // self.sp_degree

    @property
    def dp_rank(self) -> int:
        return self.rank // self.sp_degree

    @property
    def sp_rank(self) -> int:
        return self.rank % self.sp_degree

    def sp_group_ranks(self, dp_rank: int | None = None) -> list[int]:
        """Ranks that share the packs of data-parallel replica ``dp_rank`` (default: this rank's)."""
        d = self.dp_rank if dp_rank is None else dp_rank
        return [d * self.sp_degree + s for s in range(self.sp_degree)]

    def dp_group_ranks(self, sp_rank: int | None = None) -> list[int]:
        """Ranks holding the same shard position ``sp_rank`` of different packs."""
        s = self.sp_rank if sp_rank is None else sp_rank
        return [d * self.sp_degree + s for d in range(self.dp_degree)]

    def all_sp_groups(self) -> list[list[int]]:
        return [self.sp_group_ranks(d) for d in range(self.dp_degree)]

    def all_dp_groups(self) -> list[list[int]]:
        return [self.dp_group_ranks(s) for s in range(self.sp_degree)]


@dataclass
class Groups:
    """The process groups of one rank (``None`` entries mean 'single rank, no communication');
    ``ulysses`` / ``ring``: the sub-groups of ``sp`` for the usp layout (:func:`build_usp_groups`)."""

    mesh: Mesh
    sp: Any = None
    dp: Any = None
    world: Any = None
    ulysses: Any = None
    ring: Any = None


def env_world() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from the torchrun / accelerate environment (1 process if unset)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def build_groups(mesh: Mesh) -> Groups:
    """Create the SP and DP groups (collective: every rank calls it with the same mesh shape)."""
    import torch.distributed as dist

    if mesh.world_size == 1 or not dist.is_initialized():
        return Groups(mesh)
    sp = dp = None
    for ranks in mesh.all_sp_groups():
        g = dist.new_group(ranks)
        if mesh.rank in ranks:
            sp = g
    for ranks in mesh.all_dp_groups():
        g = dist.new_group(ranks)
        if mesh.rank in ranks:
            dp = g
    return Groups(mesh, sp=sp if mesh.sp_degree > 1 else None, dp=dp if mesh.dp_degree > 1 else None,
                  world=dist.group.WORLD)


def usp_group_ranks(sp_ranks: list[int], ulysses_degree: int) -> tuple[list[list[int]], list[list[int]]]:
    """The USP sub-groups of one SP group: (Ulysses groups, ring groups), as global ranks.

    SP rank ``p = ring_rank * U + ulysses_rank``: each Ulysses group is ``U`` consecutive SP ranks
    (their contiguous slices form one contiguous ``1/R`` of the pack; the all-to-all stays on the
    fastest links), each ring group takes every ``U``-th SP rank.
    """
    sp = len(sp_ranks)
    if ulysses_degree < 1 or sp % ulysses_degree:
        raise LongctxError(f"parallel.ulysses_degree: {ulysses_degree} does not divide parallel.sp_degree {sp}")
    u = ulysses_degree
    ulysses = [sp_ranks[j * u:(j + 1) * u] for j in range(sp // u)]
    ring = [sp_ranks[i::u] for i in range(u)]
    return ulysses, ring


def build_usp_groups(mesh: Mesh, ulysses_degree: int) -> tuple[Any, Any]:
    """Create every SP group's Ulysses and ring sub-groups (collective: every rank calls it);
    returns this rank's (ulysses, ring) groups."""
    import torch.distributed as dist

    mine: list[Any] = [None, None]
    for sp_ranks in mesh.all_sp_groups():
        for i, groups in enumerate(usp_group_ranks(sp_ranks, ulysses_degree)):
            for ranks in groups:
                g = dist.new_group(ranks)
                if mesh.rank in ranks:
                    mine[i] = g
    return mine[0], mine[1]
