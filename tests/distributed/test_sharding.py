"""Sequence-parallel index math: zigzag chunk order, shard/unshard of every registry layout, the padding rule."""

import pytest
import torch

from longctx.distributed.layouts import LAYOUTS
from longctx.distributed.layouts.zigzag import zigzag_chunks
from longctx.attention.boundaries import cu_seqlens_from_position_ids
from longctx.distributed.sharding import (
    layout_unit,
    local_indices,
    padded_length,
    shard_for_layout,
    unshard,
)


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_zigzag_each_chunk_held_once_and_causal_work_balanced(world):
    """Rank r holds chunks r and 2W-1-r: every chunk exactly once, and every rank the same causal work."""
    chunks = [c for r in range(world) for c in zigzag_chunks(r, world)]
    assert sorted(chunks) == list(range(2 * world))
    work = {sum(c + 1 for c in zigzag_chunks(r, world)) for r in range(world)}  # visible chunks per query chunk
    assert len(work) == 1


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("world", [2, 3, 4])
def test_local_indices_partition_the_sequence(layout, world):
    """The ranks' local indices together are a permutation of the (padded) sequence: nothing lost or doubled."""
    total = padded_length(29, layout, world)
    idx = torch.cat([local_indices(total, layout, r, world) for r in range(world)])
    assert sorted(idx.tolist()) == list(range(total))


def test_zigzag_indices_are_increasing_within_a_rank():
    """Local zigzag order is increasing in global position (the causal diagonal block relies on it)."""
    idx = local_indices(16, "zigzag", 1, 2)
    assert idx.tolist() == [4, 5, 6, 7, 8, 9, 10, 11]
    assert local_indices(16, "zigzag", 0, 2).tolist() == [0, 1, 2, 3, 12, 13, 14, 15]


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("world", [2, 3, 4])
def test_unshard_inverts_shard_for_lengths_needing_padding(layout, world):
    """unshard(shard_for_layout(x) for every rank, total_len) == x, also when padding was added."""
    t = 4 * world + 3  # never a multiple of the unit
    pack = {
        "input_ids": torch.arange(t) + 100,
        "labels": torch.arange(t) + 1000,
        "loss_weights": torch.rand(t),
        "position_ids": torch.cat([torch.arange(5), torch.arange(t - 5)]),
    }
    shards = [shard_for_layout(pack, layout, r, world) for r in range(world)]
    assert len({s["input_ids"].numel() for s in shards}) == 1
    for name, value in pack.items():
        assert torch.equal(unshard([s[name] for s in shards], layout, total_len=t), value), name


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_padding_is_masked_and_its_own_segment(layout):
    """Padded tokens get label -100, weight 0, positions restarting at 0, and a segment of their own."""
    world, t = 2, 13
    pack = {"input_ids": torch.arange(t) + 1, "labels": torch.arange(t) + 1, "loss_weights": torch.ones(t)}
    shards = [shard_for_layout(pack, layout, r, world, seq_lens=[6, 7], pad_token_id=257) for r in range(world)]
    total = padded_length(t, layout, world)
    full = {k: unshard([s[k] for s in shards], layout) for k in ("input_ids", "labels", "loss_weights", "position_ids")}
    n_pad = total - t
    assert n_pad > 0
    assert (full["labels"][t:] == -100).all() and (full["loss_weights"][t:] == 0).all()
    assert (full["input_ids"][t:] == 257).all()
    assert full["position_ids"].tolist() == list(range(6)) + list(range(7)) + list(range(n_pad))
    assert shards[0]["cu_seqlens"].tolist() == [0, 6, 13, total]


def test_cu_seqlens_from_position_ids_finds_restarts():
    """Boundaries are where positions stop counting up by one."""
    pos = torch.tensor([0, 1, 2, 0, 1, 0, 0, 1, 2, 3])
    assert cu_seqlens_from_position_ids(pos).tolist() == [0, 3, 5, 6, 10]


def test_layout_units_and_errors():
    """Zigzag needs 2W-divisible lengths, varlen W-divisible; a wrong layout or unpadded length raises."""
    assert layout_unit("zigzag", 3) == 6 and layout_unit("varlen", 3) == 3
    with pytest.raises(ValueError, match="layout"):
        layout_unit("stripe", 2)
    with pytest.raises(ValueError, match="multiple"):
        local_indices(10, "zigzag", 0, 4)
