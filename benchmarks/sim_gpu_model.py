"""Traced vs planned peak memory of one trainer step on the simulated GPU (tests/sim), side by side.

    python benchmarks/sim_gpu_model.py                      # the table in docs/gpu-simulator.md (~6 min, 2 cores)
    python benchmarks/sim_gpu_model.py --layers 32 --seq-len 131072   # full depth (each trace ~10+ min)

Each row runs one real ``train_step`` (Llama-3-8B widths unless --small; checkpointing, tiled MLP, the
trainer's dtype policy) as rank 0 on fake CUDA tensors in a child process, MemTracker's peak beside
``longctx plan``'s prediction (the phase sum, without the allocator margin and CUDA-context overhead).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from sim.harness import run_case  # noqa: E402

SMALL = {"hidden_size": 1024, "num_layers": 4, "num_heads": 8, "num_kv_heads": 8, "head_dim": 128,
         "intermediate_size": 4096, "vocab_size": 8192}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=4, help="decoder layers (reduced depth; 32 = the real 8B)")
    p.add_argument("--seq-len", type=int, default=32768)
    p.add_argument("--small", action="store_true", help="a 1024-wide model instead of the 8B widths")
    a = p.parse_args(argv)
    shape = SMALL if a.small else None
    rows = [("1 GPU, varlen", {}), ("FSDP2 x SP 8, zigzag", {"sp": 8, "layout": "zigzag", "fsdp": True}),
            ("FSDP2 x SP 8, ulysses", {"sp": 8, "layout": "ulysses", "fsdp": True})]
    print(f"{'run':<24} {'traced GiB':>11} {'planned GiB':>12} {'planned/traced':>15} {'seconds':>8}")
    for name, kw in rows:
        t0 = time.perf_counter()
        r = run_case("sim.cases:traced_peak", timeout=3600, layers=a.layers, seq_len=a.seq_len, shape=shape, **kw)
        print(f"{name:<24} {r['traced_gib']:>11.2f} {r['planned_gib']:>12.2f} {r['planned_gib'] / r['traced_gib']:>15.3f} "
              f"{time.perf_counter() - t0:>8.0f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
