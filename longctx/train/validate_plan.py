"""Check the planner against measured CPU training steps: ``python -m longctx.train.validate_plan``.

For each small Llama configuration it prints the planner's prediction, the exact live-tensor peak
(:class:`longctx.train.measure.LiveTensorBytes`) and, as an independent cross-check, the growth of the
process's peak RSS in a fresh subprocess (glibc told to serve every large block with mmap, so that
freed tensors leave the resident set at once: ``MALLOC_MMAP_THRESHOLD_=65536``, ``MALLOC_ARENA_MAX=1``).
The RSS growth is measured from after a 16-token warm-up step (libraries and thread pools loaded) to
the high-water mark of the measured run, which builds its own model and optimizer: so it is compared
with the whole live peak (model states included).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from longctx.models.tiny import tiny_config
from longctx.plan.planner import plan_run
from longctx.plan.shapes import RunShape, shape_from_config

# (hidden, layers, intermediate, vocab, seq_len, loss_chunk, checkpointing, mlp_tiles, checkpoint_offload):
# mlp_tiles 1 = plain MLP, 0 = train.tiled_mlp with ALST's ceil(T/H) tiles; offload is model.checkpoint_offload
# (on CPU the host is the device: predicted and measured as no saving).
SWEEP = [
    (128, 2, 512, 2048, 1024, 0, False, 1, False),
    (128, 2, 512, 2048, 1024, 0, True, 1, False),
    (128, 2, 512, 2048, 1024, 256, False, 1, False),
    (64, 4, 256, 512, 2048, 512, True, 1, False),
    (256, 2, 768, 4096, 2048, 0, False, 1, False),
    (256, 2, 768, 4096, 2048, 512, True, 1, False),
    (128, 4, 512, 512, 4096, 1024, True, 1, False),
    (64, 2, 1024, 512, 4096, 256, False, 0, False),
    (64, 2, 1024, 512, 4096, 256, True, 0, False),
    (64, 4, 256, 512, 4096, 256, True, 1, True),
    (64, 2, 1024, 512, 4096, 256, True, 0, True),
]

_CHILD = r"""
import json, resource, sys, torch
from longctx.models.tiny import tiny_config
from longctx.train.measure import measure_train_step
h, layers, inter, vocab, seq, chunk, ckpt, tiles, off = json.loads(sys.argv[1])
cfg = tiny_config("llama", hidden_size=h, num_layers=layers, num_heads=4, num_kv_heads=4, intermediate_size=inter,
                  vocab_size=vocab, tie_word_embeddings=False)
measure_train_step(cfg, 16, loss_chunk=min(chunk, 16) if chunk else 0, checkpointing=ckpt, mlp_tiles=tiles,
                   checkpoint_offload=off)  # warm libraries up
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()
base_rss, base_hwm = rss(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
m = measure_train_step(cfg, seq, loss_chunk=chunk, checkpointing=ckpt, mlp_tiles=tiles, checkpoint_offload=off)
hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"peak": m.peak_bytes, "static": m.static_bytes, "rss_growth": hwm - max(base_rss, 0),
                  "hwm_moved": hwm > base_hwm}))
"""


def cpu_run(seq: int, chunk: int, ckpt: bool, tiles: int = 1, offload: bool = False) -> RunShape:
    """The planner's CPU mode: fp32, SDPA, per-tensor AdamW, no allocator margin, no CUDA overhead."""
    return RunShape(seq_len=seq, dtype="fp32", attn_kernel="sdpa", foreach_optimizer=False, frag_margin=0.0,
                    overhead_gib=0.0, loss_chunk=chunk, checkpointing="full" if ckpt else "none", tiled_mlp=tiles,
                    checkpoint_offload=offload, device="cpu")


def validate(sweep=SWEEP) -> list[dict]:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_ARENA_MAX="1", OMP_NUM_THREADS="1")
    rows = []
    for case in sweep:
        h, layers, inter, vocab, seq, chunk, ckpt, tiles, off = case
        out = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(case)], env=env, capture_output=True,
                             text=True, check=True)
        got = json.loads(out.stdout.strip().splitlines()[-1])
        cfg = tiny_config("llama", hidden_size=h, num_layers=layers, num_heads=4, num_kv_heads=4,
                          intermediate_size=inter, vocab_size=vocab, tie_word_embeddings=False)
        pred = plan_run(shape_from_config(cfg), cpu_run(seq, chunk, ckpt, tiles, off))
        rows.append({"case": case, "predicted": pred.total_bytes, "peak_phase": pred.peak_phase, **got})
    return rows


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m longctx.train.validate_plan", description=__doc__).parse_args(argv)
    mib = 2.0**20
    print(f"{'H':>4} {'L':>2} {'I':>4} {'V':>5} {'T':>5} {'chunk':>5} {'ckpt':>4} {'tile':>4} {'off':>3} | "
          f"{'pred MiB':>8} {'live MiB':>8} "
          f"{'pred/live':>9} | {'RSS MiB':>8} {'RSS/live':>8} phase")
    for r in validate():
        h, layers, inter, vocab, seq, chunk, ckpt, tiles, off = r["case"]
        tile = "auto" if tiles == 0 else str(tiles)
        print(f"{h:>4} {layers:>2} {inter:>4} {vocab:>5} {seq:>5} {chunk:>5} {str(ckpt):>4} {tile:>4} {'y' if off else 'n':>3} | "
              f"{r['predicted'] / mib:>8.1f} "
              f"{r['peak'] / mib:>8.1f} {r['predicted'] / r['peak']:>9.3f} | {r['rss_growth'] / mib:>8.1f} "
              f"{r['rss_growth'] / r['peak']:>8.3f} {r['peak_phase']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
