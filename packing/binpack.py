"""Pack-time grouping of sequence lengths: bin packing into fixed-capacity packs, and batching.

Every function maps lengths to groups of indices (lists of index arrays); none touches tokens.
Bin packing (fixed-capacity packs):

* :func:`best_fit_decreasing` — ours. Sort by length (longest first); put each sequence into the
  open pack with the *least* room that still fits it, else open a new pack. Remaining capacities
  are small integers, so open packs are kept in buckets by remaining room and a two-level bitmask
  finds "the smallest non-empty bucket >= s" in a few integer operations: O(n log n) for the sort
  and O(1)-ish per sequence, ~1 M sequences in a few seconds of plain Python. Sequences longer
  than half the capacity can never share with each other, so they open their packs in one
  vectorised step.
* :func:`greedy_fill` — LongAlign's baseline: walk the data in order, append to the current pack
  while it fits, else start a new pack.
* :func:`first_fit` — in order, each sequence into the earliest pack that still has room (small
  synthetic pack sets: tests, GPU checks).

Batching (rows padded to the longest of their batch):

* :func:`sorted_batches` — LongAlign's sorted batching: sort by length, cut into batches (a fixed
  size or a token budget), shuffle the batches.
* :func:`pad_to_longest` — naive batching: groups of ``batch_size`` sequences in input order.
* :func:`batches_in_order` — the cut both use: consecutive batches of a given order.

All functions are deterministic: ties are broken by input index.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_LOW = 256  # bucket block size of the two-level bitmask


class _Buckets:
    """Open packs bucketed by remaining room 0..capacity, with a fast 'smallest room >= s' query."""

    def __init__(self, capacity: int):
        self.n_blocks = capacity // _LOW + 1
        self.low = [0] * self.n_blocks  # bit r%256 of low[r//256]: bucket r non-empty
        self.top = 0  # bit b: low[b] != 0
        self.buckets: dict[int, list[int]] = {}

    def push(self, room: int, pack: int) -> None:
        lst = self.buckets.get(room)
        if lst:
            lst.append(pack)
            return
        self.buckets[room] = [pack]
        b = room >> 8
        if not self.low[b]:
            self.top |= 1 << b
        self.low[b] |= 1 << (room & 255)

    def pop_at_least(self, s: int) -> tuple[int, int] | None:
        """Remove and return (room, pack) with the smallest room >= s (latest pack on ties), or None."""
        b = s >> 8
        m = self.low[b] >> (s & 255)
        if m:
            room = s + ((m & -m).bit_length() - 1)
        else:
            t = self.top >> (b + 1)
            if not t:
                return None
            b = b + 1 + ((t & -t).bit_length() - 1)
            m = self.low[b]
            room = (b << 8) + ((m & -m).bit_length() - 1)
        lst = self.buckets[room]
        pack = lst.pop()
        if not lst:
            del self.buckets[room]
            b = room >> 8
            self.low[b] &= ~(1 << (room & 255))
            if not self.low[b]:
                self.top &= ~(1 << b)
        return room, pack


def _check(lengths: np.ndarray, capacity: int) -> np.ndarray:
    lengths = np.asarray(lengths, dtype=np.int64)
    if capacity <= 0:
        raise ValueError(f"capacity must be positive, got {capacity}")
    if lengths.size and (lengths.min() <= 0 or lengths.max() > capacity):
        raise ValueError(f"lengths must be in 1..{capacity}; got min {lengths.min()}, max {lengths.max()}")
    return lengths


def _group(assign: np.ndarray, order: np.ndarray, n_packs: int) -> list[np.ndarray]:
    """Item indices per pack, in placement order."""
    packs_in_order = assign[order]
    by_pack = np.argsort(packs_in_order, kind="stable")
    bounds = np.searchsorted(packs_in_order[by_pack], np.arange(n_packs + 1))
    items = order[by_pack]
    return [items[bounds[i] : bounds[i + 1]] for i in range(n_packs)]


def best_fit_decreasing(lengths: Sequence[int] | np.ndarray, capacity: int) -> list[np.ndarray]:
    """Pack ``lengths`` into bins of ``capacity`` by best-fit-decreasing; returns item indices per pack.

    Every index appears in exactly one pack; packs are ordered by creation (longest first item).
    """
    lengths = _check(lengths, capacity)
    n = lengths.shape[0]
    order = np.argsort(-lengths, kind="stable")
    assign = np.empty(n, dtype=np.int64)
    sorted_len = lengths[order]
    # Items longer than capacity/2 never share a pack with each other: one new pack each.
    n_big = int((sorted_len > capacity // 2).sum())
    assign[order[:n_big]] = np.arange(n_big)
    buckets = _Buckets(capacity)
    for p, room in enumerate((capacity - sorted_len[:n_big]).tolist()):
        if room:
            buckets.push(room, p)
    n_packs = n_big
    pop, push = buckets.pop_at_least, buckets.push
    rest = sorted_len[n_big:].tolist()
    rest_idx = order[n_big:]
    out = np.empty(len(rest), dtype=np.int64)
    for k, s in enumerate(rest):
        hit = pop(s)
        if hit is None:
            room, pack = capacity, n_packs
            n_packs += 1
        else:
            room, pack = hit
        out[k] = pack
        if room - s:
            push(room - s, pack)
    assign[rest_idx] = out
    return _group(assign, order, n_packs)


def greedy_fill(lengths: Sequence[int] | np.ndarray, capacity: int) -> list[np.ndarray]:
    """LongAlign's in-order fill: append to the current pack while it fits, else start a new one."""
    lengths = _check(lengths, capacity)
    assign = np.empty(lengths.shape[0], dtype=np.int64)
    pack, used = 0, 0
    for i, s in enumerate(lengths.tolist()):
        if used + s > capacity:
            pack += 1
            used = 0
        assign[i] = pack
        used += s
    n_packs = pack + 1 if lengths.size else 0
    return _group(assign, np.arange(lengths.shape[0]), n_packs)


def first_fit(lengths: Sequence[int] | np.ndarray, capacity: int) -> list[np.ndarray]:
    """In-order first fit: each sequence goes into the earliest-opened pack it fits in, else a new pack.

    Unlike :func:`greedy_fill`, earlier packs stay open, so short sequences fill gaps left behind.
    O(n x packs): meant for small pack sets; :func:`best_fit_decreasing` is the one for real data.
    """
    lengths = _check(lengths, capacity)
    assign = np.empty(lengths.shape[0], dtype=np.int64)
    rooms = np.empty(lengths.shape[0], dtype=np.int64)
    n_packs = 0
    for i, s in enumerate(lengths.tolist()):
        fits = np.flatnonzero(rooms[:n_packs] >= s)
        pack = int(fits[0]) if fits.size else n_packs
        if pack == n_packs:
            rooms[pack] = capacity
            n_packs += 1
        rooms[pack] -= s
        assign[i] = pack
    return _group(assign, np.arange(lengths.shape[0]), n_packs)


def batches_in_order(lengths: Sequence[int] | np.ndarray, order: Sequence[int] | np.ndarray, *,
                     batch_size: int = 0, max_tokens: int = 0) -> list[np.ndarray]:
    """Cut ``order`` (indices into ``lengths``) into consecutive batches.

    Exactly one limit: ``batch_size`` sequences per batch, or ``max_tokens``: a batch grows while
    (its rows + 1) x its longest row stays within the budget (the padded size of the batch); a
    sequence longer than the budget gets a batch of its own.
    """
    if (batch_size > 0) == (max_tokens > 0):
        raise ValueError(f"give exactly one of batch_size and max_tokens (> 0), got {batch_size} and {max_tokens}")
    order = np.asarray(order, dtype=np.int64)
    if batch_size:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    lengths = np.asarray(lengths, dtype=np.int64)
    bounds = [0]
    longest = 0
    for k, n in enumerate(lengths[order].tolist()):
        if k > bounds[-1] and max(longest, n) * (k - bounds[-1] + 1) > max_tokens:
            bounds.append(k)
            longest = 0
        longest = max(longest, n)
    bounds.append(len(order))
    return [order[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]


def sorted_batches(lengths: Sequence[int] | np.ndarray, batch_size: int = 0, seed: int = 0, *, max_tokens: int = 0,
                   shuffle: bool = True) -> list[np.ndarray]:
    """LongAlign's sorted batching: sort by length (longest first), cut into batches, shuffle the batches.

    Sequences of similar length share a batch (little padding). Batches hold ``batch_size``
    sequences or fit a ``max_tokens`` padded budget (see :func:`batches_in_order`). Shuffling the
    batches (seeded, deterministic) keeps the training order from running long-to-short; the
    trainer, which reshuffles its units every epoch itself, passes ``shuffle=False``.
    Returns a list of index arrays into ``lengths``; ties keep input order.
    """
    if batch_size < 0 or (batch_size == 0 and max_tokens <= 0):
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    lengths = np.asarray(lengths)
    order = np.argsort(-lengths, kind="stable")
    groups = batches_in_order(lengths, order, batch_size=batch_size, max_tokens=max_tokens)
    if not shuffle:
        return groups
    perm = np.random.default_rng(seed).permutation(len(groups))
    return [groups[i] for i in perm]


def pad_to_longest(lengths: Sequence[int] | np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Naive batching in input order: consecutive groups of ``batch_size`` (each padded to its longest)."""
    return batches_in_order(lengths, np.arange(len(lengths)), batch_size=batch_size)


def packing_efficiency(lengths: Sequence[int] | np.ndarray, packs: list[np.ndarray], capacity: int) -> float:
    """Real tokens / token slots for fixed-capacity packs."""
    slots = len(packs) * capacity
    return float(np.asarray(lengths, dtype=np.int64).sum() / slots) if slots else 1.0


def padded_efficiency(lengths: Sequence[int] | np.ndarray, batches: list[np.ndarray]) -> float:
    """Real tokens / token slots when each batch is padded to its longest sequence."""
    lengths = np.asarray(lengths, dtype=np.int64)
    slots = sum(int(lengths[b].max()) * len(b) for b in batches if len(b))
    return float(lengths.sum() / slots) if slots else 1.0


STRATEGIES = {"bfd": best_fit_decreasing, "greedy": greedy_fill}
