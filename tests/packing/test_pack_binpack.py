"""packing.binpack: every sequence lands in exactly one pack, within capacity, best-fit, deterministic; sorted batching."""

import numpy as np
import pytest

from packing.binpack import (batches_in_order, best_fit_decreasing, first_fit, greedy_fill, pad_to_longest, packing_efficiency,
                             padded_efficiency, sorted_batches)


def _lengths(seed, n=400, cap=1000):
    rng = np.random.default_rng(seed)
    return np.where(rng.random(n) < 0.4, rng.integers(cap // 8, cap + 1, n), rng.integers(1, cap // 8, n))


def _naive_bfd_loads(lengths, cap):
    """Textbook O(n * packs) best-fit-decreasing: the reference."""
    loads = []
    for s in sorted(lengths.tolist(), reverse=True):
        fits = [i for i, used in enumerate(loads) if used + s <= cap]
        if fits:
            best = min(fits, key=lambda i: cap - loads[i])
            loads[best] += s
        else:
            loads.append(s)
    return sorted(loads)


@pytest.mark.parametrize("strategy", [best_fit_decreasing, greedy_fill])
@pytest.mark.parametrize("seed", [0, 1])
def test_every_sequence_in_exactly_one_pack_within_capacity(strategy, seed):
    """Packs partition the indices, and no pack holds more than the capacity."""
    lengths = _lengths(seed)
    packs = strategy(lengths, 1000)
    flat = np.concatenate(packs)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    assert max(int(lengths[p].sum()) for p in packs) <= 1000


@pytest.mark.parametrize("cap", [1000, 4096])
def test_bfd_pack_loads_equal_textbook_best_fit_decreasing(cap):
    """The bucketed implementation makes the same choices (same multiset of pack loads) as the textbook loop."""
    lengths = _lengths(3, n=300, cap=cap)
    ours = sorted(int(lengths[p].sum()) for p in best_fit_decreasing(lengths, cap))
    assert ours == _naive_bfd_loads(lengths, cap)


def test_bfd_uses_no_more_packs_than_greedy_on_mixed_lengths():
    """On a long+short mix, best-fit-decreasing is at least as efficient as in-order greedy fill."""
    lengths = _lengths(4, n=2000)
    bfd, greedy = best_fit_decreasing(lengths, 1000), greedy_fill(lengths, 1000)
    assert len(bfd) <= len(greedy)
    assert packing_efficiency(lengths, bfd, 1000) > packing_efficiency(lengths, greedy, 1000)


def test_greedy_fill_keeps_input_order():
    """Greedy fill walks the data in order: concatenated packs are 0..n-1 and a pack closes only when full."""
    lengths = np.array([6, 3, 2, 5, 5, 1, 9])
    packs = greedy_fill(lengths, 10)
    assert [p.tolist() for p in packs] == [[0, 1], [2, 3], [4, 5], [6]]


def test_bfd_is_deterministic():
    """The same input gives the same packs, item for item."""
    lengths = _lengths(5)
    a, b = best_fit_decreasing(lengths, 1000), best_fit_decreasing(lengths.copy(), 1000)
    assert [x.tolist() for x in a] == [x.tolist() for x in b]


def test_packers_reject_lengths_above_capacity():
    """A sequence longer than the pack is the caller's bug (the overlong policy runs first)."""
    with pytest.raises(ValueError, match="lengths must be in"):
        best_fit_decreasing(np.array([3, 11]), 10)


def test_padded_efficiency_counts_padding_to_longest_per_batch():
    """Two batches [2, 4] and [8]: slots 2*4 + 8 = 16, real tokens 14."""
    lengths = np.array([2, 4, 8])
    assert padded_efficiency(lengths, pad_to_longest(lengths, 2)) == pytest.approx(14 / 16)


def test_sorted_batches_group_similar_lengths_and_shuffle_groups_by_seed():
    """Each group holds consecutive lengths of the sorted order; the group order depends on the seed only."""
    lengths = np.random.default_rng(0).integers(1, 1000, 64)
    a = sorted_batches(lengths, 8, seed=1)
    assert sorted(np.concatenate(a).tolist()) == list(range(64))
    order = np.sort(lengths)[::-1]
    groups = sorted(sorted(lengths[g].tolist(), reverse=True) for g in a)
    assert groups == sorted(order[i:i + 8].tolist() for i in range(0, 64, 8))
    assert [g.tolist() for g in a] == [g.tolist() for g in sorted_batches(lengths, 8, seed=1)]
    assert [g.tolist() for g in a] != [g.tolist() for g in sorted_batches(lengths, 8, seed=2)]


def test_sorted_batches_with_a_token_budget_cut_the_longest_first_order():
    """max_tokens: a batch grows while rows x longest <= budget; shuffle=False keeps the longest-first order."""
    lengths = np.array([5, 9, 3, 9, 1])
    got = sorted_batches(lengths, max_tokens=18, shuffle=False)
    assert [g.tolist() for g in got] == [[1, 3], [0, 2, 4]]  # 9+9 -> 2x9=18; then 5,3,1 -> 3x5=15


def test_sorted_batches_shuffle_only_reorders_the_batches():
    """The shuffled batches are the unshuffled ones in a seeded order (what `longctx pack --mode sorted` writes)."""
    lengths = np.random.default_rng(3).integers(1, 500, 50)
    plain = [g.tolist() for g in sorted_batches(lengths, 4, shuffle=False)]
    shuffled = [g.tolist() for g in sorted_batches(lengths, 4, seed=7)]
    assert sorted(shuffled) == sorted(plain) and shuffled != plain


def test_batches_in_order_gives_an_over_budget_sequence_its_own_batch():
    """A sequence longer than max_tokens is not dropped: it forms a batch alone."""
    got = batches_in_order([4, 50, 4, 4], [0, 1, 2, 3], max_tokens=10)
    assert [g.tolist() for g in got] == [[0], [1], [2, 3]]


def test_batches_in_order_needs_exactly_one_limit():
    """batch_size and max_tokens are alternatives: neither or both is a caller bug."""
    for kw in ({}, {"batch_size": 2, "max_tokens": 10}):
        with pytest.raises(ValueError, match="exactly one"):
            batches_in_order([1, 2], [0, 1], **kw)


def _naive_first_fit(lengths, cap):
    """The hand-written first-fit loop the test helpers and the GPU check used: the reference."""
    groups = []
    for i, s in enumerate(lengths):
        for g in groups:
            if sum(lengths[j] for j in g) + s <= cap:
                g.append(i)
                break
        else:
            groups.append([i])
    return groups


@pytest.mark.parametrize("seed", [0, 1])
def test_first_fit_puts_each_sequence_in_the_earliest_pack_with_room(seed):
    """first_fit equals the textbook in-order first fit, pack for pack and item for item."""
    lengths = _lengths(seed, n=200).tolist()
    assert [g.tolist() for g in first_fit(lengths, 1000)] == _naive_first_fit(lengths, 1000)
