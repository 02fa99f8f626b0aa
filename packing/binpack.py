"""Bin packing of sequence lengths into fixed-capacity packs.

* :func:`best_fit_decreasing` — ours. Sort by length (longest first); put each sequence into the
  open pack with the *least* room that still fits it, else open a new pack. Remaining capacities
  are small integers, so open packs are kept in buckets by remaining room and a two-level bitmask
  finds "the smallest non-empty bucket >= s" in a few integer operations: O(n log n) for the sort
  and O(1)-ish per sequence, ~1 M sequences in a few seconds of plain Python. Sequences longer
  than half the capacity can never share with each other, so they open their packs in one
  vectorised step.
* :func:`greedy_fill` — LongAlign's baseline: walk the data in order, append to the current pack
  while it fits, else start a new pack.
* :func:`pad_to_longest` — naive batching: groups of ``batch_size`` sequences padded to the longest.

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


def pad_to_longest(lengths: Sequence[int] | np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Naive batching in input order: consecutive groups of ``batch_size`` (each padded to its longest)."""
    n = len(lengths)
    return [np.arange(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


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
