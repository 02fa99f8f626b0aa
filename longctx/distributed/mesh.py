"""Every process group of a run: data-parallel x sequence-parallel, and the sub-groups a layout declares.

The mesh math is pure (``Mesh.from_world``): tests check it without a process group. Ranks of one
sequence-parallel group are contiguous (``rank = dp_rank * sp + sp_rank``) so that, on a node, the
ring traffic stays on the fastest links. ``build_groups`` then creates the ``torch.distributed``
groups, and ``build_layout_groups`` the sub-groups of each SP group that the layout's row declares
(usp: Ulysses x ring); every rank must call them (``new_group`` is collective).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch.distributed as dist

from longctx.core.errors import LongctxError

if TYPE_CHECKING:  # the type only: the mesh math stays importable without torch (the registry's rows import kernels)
    from longctx.distributed.layouts.base import Layout


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
    ``sub``: the sub-groups of ``sp`` that the layout's kernel needs, by keyword (:func:`build_layout_groups`)."""

    mesh: Mesh
    sp: Any = None
    dp: Any = None
    world: Any = None
    sub: dict[str, Any] = field(default_factory=dict)


def env_world() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from the torchrun / accelerate environment (1 process if unset)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def build_groups(mesh: Mesh) -> Groups:
    """Create the SP and DP groups (collective: every rank calls it with the same mesh shape)."""
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


def build_layout_groups(groups: Groups, layout: Layout, degree: int) -> dict[str, Any]:
    """Create the sub-groups ``layout`` declares (``Layout.split``) inside every SP group (collective:
    every rank calls it with the same row and degree); returns this rank's, by the kernel's keyword
    (usp: ``ulysses_group``, ``ring_group``). Empty when the row declares none or there is no SP group."""
    split = layout.split
    if split is None or groups.sp is None:
        return {}
    mine: dict[str, Any] = {}
    for sp_ranks in groups.mesh.all_sp_groups():
        for name, partition in zip(split.names, split.ranks(sp_ranks, degree), strict=True):
            for ranks in partition:
                g = dist.new_group(ranks)
                if groups.mesh.rank in ranks:
                    mine[name] = g
    return mine
