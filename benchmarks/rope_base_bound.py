"""Cost of the 2405.14591 check ``sum_i cos(m theta_i) >= 0 for all m <= L`` (the inner loop of ABF's
base search): a per-position Python/numpy loop (baseline) vs. our chunked, vectorised torch version.

    python benchmarks/rope_base_bound.py            # L = 16384, d = 128 (reduced for a shared 2-core CPU)
    python benchmarks/rope_base_bound.py --length 131072
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rope_scaling.base_selection import decays_safely, lower_bound_base


def naive_decays_safely(base: float, dim: int, max_len: int) -> bool:
    theta = base ** (-np.arange(0, dim, 2, dtype=np.float64) / dim)
    for m in range(max_len + 1):
        if np.cos(m * theta).sum() < 0:
            return False
    return True


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--length", type=int, default=16384)
    p.add_argument("--dim", type=int, default=128)
    a = p.parse_args()
    base = lower_bound_base(a.length, dim=a.dim, rtol=1e-3)  # feasible: both must scan every m
    for name, fn in (("naive loop", naive_decays_safely), ("vectorised", decays_safely)):
        t = time.perf_counter()
        ok = fn(base, a.dim, a.length)
        dt = time.perf_counter() - t
        print(f"{name:<11} L={a.length} d={a.dim} base={base:.4g} feasible={ok}  {dt * 1e3:8.1f} ms")
        if name == "naive loop":
            t_naive = dt
    print(f"speed-up: {t_naive / dt:.1f}x")
    t = time.perf_counter()
    b = lower_bound_base(a.length, dim=a.dim, rtol=1e-4)
    print(f"full search (ours, ~20-60 checks): lower bound {b:.4g} in {time.perf_counter() - t:.2f} s")


if __name__ == "__main__":
    main()
