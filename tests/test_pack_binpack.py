"""packing.binpack: every sequence lands in exactly one pack, within capacity, best-fit, deterministic."""

import numpy as np
import pytest

from packing.binpack import best_fit_decreasing, greedy_fill, pad_to_longest, packing_efficiency, padded_efficiency


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
