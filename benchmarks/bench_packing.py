"""Packing efficiency and speed: best-fit-decreasing (ours) vs LongAlign's greedy fill vs padding.

A synthetic length distribution shaped like LongAlign-10k mixed with short chat SFT data: 60 % long
sequences (log-uniform 8K-64K tokens) and 40 % short ones (log-normal, median ~700, 32..8K),
in random order; pack length 64K. Only lengths are packed (tokens play no role in the choice).

    python benchmarks/bench_packing.py                 # 10k and 1M sequences
    python benchmarks/bench_packing.py --sizes 10000   # quick

Columns: efficiency = real tokens / token slots; slots ratio = slots of a baseline / our slots
(how many times more tokens a trainer would push through the model; LongAlign reports packing
roughly halving training time against naive batching).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from packing.binpack import (best_fit_decreasing, greedy_fill, pad_to_longest, packing_efficiency, padded_efficiency,
                             sorted_batches)


def longalign_like_lengths(n: int, pack_length: int = 65536, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    long = np.exp(rng.uniform(np.log(8192), np.log(pack_length), n)).astype(np.int64)
    short = np.clip(rng.lognormal(np.log(700), 1.0, n), 32, 8191).astype(np.int64)
    return np.where(rng.random(n) < 0.6, long, short).clip(1, pack_length)


def _timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def run(n: int, pack_length: int, batch_size: int, seed: int) -> None:
    lengths = longalign_like_lengths(n, pack_length, seed)
    rows = []
    packs, dt = _timed(best_fit_decreasing, lengths, pack_length)
    rows.append(("best-fit-decreasing (ours)", len(packs), len(packs) * pack_length, packing_efficiency(lengths, packs, pack_length), dt))
    packs, dt = _timed(greedy_fill, lengths, pack_length)
    rows.append(("LongAlign greedy in-order fill", len(packs), len(packs) * pack_length, packing_efficiency(lengths, packs, pack_length), dt))
    batches, dt = _timed(pad_to_longest, lengths, batch_size)
    slots = sum(int(lengths[b].max()) * len(b) for b in batches)
    rows.append((f"pad to longest, batch {batch_size}", len(batches), slots, padded_efficiency(lengths, batches), dt))
    batches, dt = _timed(sorted_batches, lengths, batch_size, seed)
    slots = sum(int(lengths[b].max()) * len(b) for b in batches)
    rows.append((f"sorted batching, batch {batch_size}", len(batches), slots, padded_efficiency(lengths, batches), dt))

    ours_slots, ours_time = rows[0][2], rows[0][4]
    print(f"\n{n:,} sequences, {lengths.sum():,} tokens, pack length {pack_length:,} "
          f"(long >= 8K: {np.mean(lengths >= 8192):.0%}, median {int(np.median(lengths)):,})")
    print(f"{'method':<34}{'packs/batches':>14}{'efficiency':>12}{'slots/ours':>12}{'time s':>10}{'time/ours':>11}")
    for name, count, slots, eff, dt in rows:
        print(f"{name:<34}{count:>14,}{eff:>12.2%}{slots / ours_slots:>12.3f}{dt:>10.3f}{dt / ours_time:>11.2f}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    p.add_argument("--pack-length", type=int, default=65536)
    p.add_argument("--batch-size", type=int, default=8, help="sequences per batch for the padding baselines")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    for n in a.sizes:
        run(n, a.pack_length, a.batch_size, a.seed)


if __name__ == "__main__":
    main()
