"""The block plans of the ring variants cover exactly the visible (query, key) pairs: pure index checks."""

import pytest
import torch

from longctx.attention.ring.varlen import local_varlen_blocks
from longctx.attention.ring.zigzag import zigzag_blocks
from longctx.distributed.sharding import local_indices


def _coverage(blocks, rows, cols, q_index, k_index) -> torch.Tensor:
    """How many times each (global query, global key) pair is computed by ``blocks``."""
    cover = torch.zeros(rows, cols, dtype=torch.long)
    for b in blocks:
        for i in range(b.q0, b.q1):
            for j in range(b.k0, b.k1):
                if not b.causal or (j - b.k0) <= (i - b.q0):
                    cover[q_index[i], k_index[j]] += 1
    return cover


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_zigzag_plan_covers_causal_mask_exactly_once(world):
    """Over all ring hops, rank r computes every causal pair of its rows once and nothing else."""
    total = 4 * world
    causal = torch.ones(total, total, dtype=torch.long).tril()
    for rank in range(world):
        q_idx = local_indices(total, "zigzag", rank, world)
        cover = torch.zeros(total, total, dtype=torch.long)
        for src in range(world):
            k_idx = local_indices(total, "zigzag", src, world)
            cover += _coverage(zigzag_blocks(rank, src, len(q_idx)), total, total, q_idx, k_idx)
        assert torch.equal(cover[q_idx], causal[q_idx])
        others = torch.ones(total, dtype=torch.bool)
        others[q_idx] = False
        assert cover[others].sum() == 0


@pytest.mark.parametrize("world", [2, 3, 4])
def test_varlen_plan_covers_block_diagonal_causal_mask_exactly_once(world):
    """With documents crossing rank boundaries, the local blocks hit exactly the same-document causal pairs."""
    g = torch.Generator().manual_seed(world)
    total = 6 * world
    cuts = sorted(set(torch.randint(1, total, (world + 1,), generator=g).tolist()))
    cu = torch.tensor([0, *cuts, total])
    seg = torch.repeat_interleave(torch.arange(len(cu) - 1), cu[1:] - cu[:-1])
    allowed = ((seg[:, None] == seg[None, :]) & torch.ones(total, total, dtype=torch.bool).tril()).long()
    n = total // world
    for rank in range(world):
        q_idx = torch.arange(rank * n, (rank + 1) * n)
        cover = _coverage(local_varlen_blocks(cu, rank * n, (rank + 1) * n), total, total, q_idx, torch.arange(total))
        assert torch.equal(cover[q_idx], allowed[q_idx]), (rank, cu.tolist())
