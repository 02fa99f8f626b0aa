"""Traced vs planned peak memory of one trainer step on the simulated GPU (tests/sim), side by side.

    python benchmarks/sim_gpu_model.py --seq-lens 32k --layers 4,8              # ~5 min on 2 cores
    python benchmarks/sim_gpu_model.py --seq-lens 32k,128k,512k --layers 4,8 --out rows.jsonl   # the docs table

Each trace runs one real ``train_step`` (Llama-3-8B widths unless --small; gradient checkpointing, tiled
MLP except under FSDP (which the trainer refuses), the trainer's dtype policy) as rank 0 on fake CUDA tensors in a child process: MemTracker's peak
beside ``longctx plan``'s prediction (the phase sum, without the allocator margin and CUDA-context
overhead). Tracing a full 32-layer model at 128K+ takes tens of minutes here, so the full-depth column
is EXTRAPOLATED: every memory term is affine in the layer count, so two depths (``--layers 4,8``) give
the line, read at 32 — and ``--layers 4,8,32`` checks that reading against a direct trace.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from sim.harness import run_case  # noqa: E402

SMALL = {"hidden_size": 1024, "num_layers": 4, "num_heads": 8, "num_kv_heads": 8, "head_dim": 128,
         "intermediate_size": 4096, "vocab_size": 8192}
RUNS = {"1gpu": ("1 GPU, varlen, tiled MLP", {}),
        "1gpu-offload": ("1 GPU, varlen, tiled MLP, checkpoint offload", {"offload": True}),
        "fsdp-zigzag": ("FSDP2 x SP 8, zigzag", {"sp": 8, "layout": "zigzag", "fsdp": True}),
        "fsdp-ulysses": ("FSDP2 x SP 8, ulysses", {"sp": 8, "layout": "ulysses", "fsdp": True})}


def _tokens(text: str) -> int:
    return int(text[:-1]) * 1024 if text.lower().endswith("k") else int(text)


def planned_full(run: str, seq_len: int, layers: int) -> float:
    """The planner at full depth (no trace needed): the same RunShape the case builds."""
    import dataclasses

    from longctx.plan import plan_run
    from longctx.plan.options import run_from_train_config
    from longctx.plan.shapes import PRESETS
    from longctx.train.config import RunConfig

    kw = RUNS[run][1]
    shape = dataclasses.replace(PRESETS["llama-3-8b"], num_layers=layers)
    cfg = RunConfig()
    cfg.parallel.sp_degree, cfg.parallel.layout, cfg.parallel.fsdp = kw.get("sp", 1), kw.get("layout", "varlen"), kw.get("fsdp", False)
    cfg.model.gradient_checkpointing, cfg.model.checkpoint_offload = True, kw.get("offload", False)
    cfg.train.tiled_mlp, cfg.train.mlp_tiles = not kw.get("fsdp", False), 0  # refused with FSDP
    run_shape = run_from_train_config(cfg, shape, seq_len, kw.get("sp", 1), "cuda", 80.0, layout=cfg.parallel.layout)
    return max(plan_run(shape, run_shape).phase_bytes.values()) / 2**30


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", default="4,8", help="depths to trace (two or more: the full-depth column is their line at --full)")
    p.add_argument("--full", type=int, default=32, help="the model's real depth (Llama-3-8B: 32)")
    p.add_argument("--seq-lens", default="32k")
    p.add_argument("--runs", default=",".join(RUNS), help=f"any of {', '.join(RUNS)}")
    p.add_argument("--small", action="store_true", help="a 1024-wide model instead of the 8B widths (no extrapolation)")
    p.add_argument("--out", type=Path, help="append one JSON line per trace")
    a = p.parse_args(argv)
    depths = [int(x) for x in a.layers.split(",")]
    print(f"{'run':<46} {'T':>6} {'L':>3} {'traced GiB':>11} {'planned GiB':>12} {'plan/trace':>10} {'s':>5}", flush=True)
    for seq in (_tokens(s) for s in a.seq_lens.split(",")):
        for run in a.runs.split(","):
            name, kw = RUNS[run]
            points = []
            for layers in depths:
                t0 = time.perf_counter()
                r = run_case("sim.cases:traced_peak", timeout=7200, layers=layers, seq_len=seq,
                             shape=SMALL if a.small else None, **kw)
                points.append((layers, r["traced_gib"]))
                row = {"run": run, "seq_len": seq, "layers": layers, "traced_gib": r["traced_gib"],
                       "planned_gib": r["planned_gib"], "seconds": time.perf_counter() - t0}
                print(f"{name:<46} {seq // 1024:>5}K {layers:>3} {r['traced_gib']:>11.2f} {r['planned_gib']:>12.2f} "
                      f"{r['planned_gib'] / r['traced_gib']:>10.3f} {row['seconds']:>5.0f}", flush=True)
                if a.out:
                    with a.out.open("a") as f:
                        f.write(json.dumps(row) + "\n")
            if not a.small and len(points) >= 2 and a.full not in depths:
                (l0, m0), (l1, m1) = points[0], points[-1]
                traced = m0 + (m1 - m0) * (a.full - l0) / (l1 - l0)
                planned = planned_full(run, seq, a.full)
                print(f"{name:<46} {seq // 1024:>5}K {a.full:>3} {traced:>11.2f} {planned:>12.2f} {planned / traced:>10.3f}"
                      f"   (traced: line through L={l0},{l1})", flush=True)
                if a.out:
                    with a.out.open("a") as f:
                        f.write(json.dumps({"run": run, "seq_len": seq, "layers": a.full, "traced_gib": traced,
                                            "planned_gib": planned, "extrapolated_from": [l0, l1]}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
