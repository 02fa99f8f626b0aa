"""Attention benchmarks on CPU: ring attention per-rank memory/time, and varlen vs a dense mask.

    python benchmarks/bench_attention.py                      # 4K tokens (the shared 2-core default)
    python benchmarks/bench_attention.py --length 32768       # the full-size run, on a real machine
    python benchmarks/bench_attention.py --json out.json      # also write the numbers
    python benchmarks/bench_attention.py --part packed        # only part 2 (varlen vs dense)

Part 1, one sequence of ``--length`` tokens, forward + backward (float32, GQA):
  * single-process full causal attention (SDPA -> the CPU flash kernel, what ``sdpa`` runs), and
  * zigzag ring attention on 1, 2 and 4 gloo ranks (each rank holds length / W tokens).
Part 2, a pack of ``--length`` tokens made of documents of ``--doc-len`` tokens, and a pack of
random short documents (1..64 tokens, seed 0):
  * ``varlen_attention`` default path (SDPA per group of documents: equal lengths batched, short
    documents bucketed; autograd backward),
  * ``varlen_attention(kernel="flash")`` (the block-plan path with the hand-written backward: the
    default before SDPA grouping), against
  * SDPA with a dense ``[T, T]`` block-diagonal causal mask (what a masked packed batch costs).

Every configuration runs in a fresh process (run_local), so peak memory is not hidden by memory
freed earlier. Peak memory = the highest RSS sampled every millisecond during the step, minus the
RSS before the inputs were made. Time = median wall time of ``--repeats`` steps after one warm-up.
On a shared 2-core machine 4 ranks oversubscribe the cores: their times measure correctness of
scaling, not speed-up; the memory column is the point.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from longctx.distributed.launch import run_local  # noqa: E402
from longctx.core.io import atomic_write_json  # noqa: E402


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


class PeakRSS:
    """Highest resident set size while the block runs (background sampler; torch ops release the GIL)."""

    def __enter__(self):
        self.base = self.peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(0.001)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())

    @property
    def delta_mib(self) -> float:
        return (self.peak - self.base) / 2**20


def _step(fn, tensors, repeats: int) -> float:
    times = []
    for i in range(repeats + 1):
        for t in tensors:
            t.grad = None
        t0 = time.perf_counter()
        out = fn(*tensors)
        out.backward(torch.ones_like(out))
        if i:  # the first step is a warm-up
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_one(rank: int, world: int, mode: str, length: int, heads: int, kv_heads: int, dim: int,
              doc_len: int, repeats: int) -> dict:
    """Run on each rank of a fresh job: returns this rank's step time and peak memory."""
    import torch.nn.functional as F

    from longctx.attention import varlen_attention, zigzag_ring_attention

    torch.manual_seed(rank)
    with PeakRSS() as mem:
        n = length // world
        q = torch.randn(1, heads, n, dim, requires_grad=True)
        k = torch.randn(1, kv_heads, n, dim, requires_grad=True)
        v = torch.randn(1, kv_heads, n, dim, requires_grad=True)
        mode, _, docs = mode.partition(":")
        cu = torch.arange(0, length + 1, doc_len, dtype=torch.int32)
        if docs == "short":
            ends = torch.randint(1, 65, (length,), generator=torch.Generator().manual_seed(0)).cumsum(0)
            cu = torch.cat([torch.zeros(1, dtype=torch.int64), ends[ends < length], torch.tensor([length])]).to(torch.int32)
        if mode == "sdpa_full":
            fn = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)  # noqa: E731
        elif mode == "ring":
            fn = zigzag_ring_attention
        elif mode == "varlen":
            fn = lambda q, k, v: varlen_attention(q, k, v, cu)  # noqa: E731
        elif mode == "varlen_blocks":
            fn = lambda q, k, v: varlen_attention(q, k, v, cu, kernel="flash")  # noqa: E731
        elif mode == "dense_mask":
            seg = torch.repeat_interleave(torch.arange(len(cu) - 1), cu[1:] - cu[:-1])
            mask = (seg[:, None] == seg[None, :]).tril()[None, None]
            fn = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)  # noqa: E731
        else:
            raise ValueError(mode)
        seconds = _step(fn, (q, k, v), repeats)
    return {"mode": mode, "world": world, "rank": rank, "seconds": seconds, "peak_mib": mem.delta_mib,
            "documents": len(cu) - 1}


PACKED_MODES = ("varlen", "varlen_blocks", "dense_mask")


def run(length: int, heads: int, kv_heads: int, dim: int, doc_len: int, repeats: int, worlds=(1, 2, 4),
        part: str = "all") -> dict:
    shape = (length, heads, kv_heads, dim, doc_len, repeats)
    ring = {}
    if part in ("all", "ring"):
        ring["sdpa_full"] = run_local(bench_one, 1, "sdpa_full", *shape, timeout=1800)[0]
        for w in worlds:
            per_rank = run_local(bench_one, w, "ring", *shape, timeout=1800)
            ring[f"ring_W{w}"] = {"seconds": max(r["seconds"] for r in per_rank),
                                  "peak_mib": max(r["peak_mib"] for r in per_rank)}
    packed = {}
    if part in ("all", "packed"):
        packed = {f"{m}:{docs}": run_local(bench_one, 1, f"{m}:{docs}", *shape, timeout=1800)[0]
                  for docs in ("equal", "short") for m in PACKED_MODES}
    return {"shape": dict(zip(("length", "heads", "kv_heads", "dim", "doc_len", "repeats"), shape)),
            "ring": ring, "packed": packed}


def report(res: dict) -> str:
    s = res["shape"]
    lines = [f"# length {s['length']}, heads {s['heads']} (kv {s['kv_heads']}), head_dim {s['dim']}, float32, "
             f"forward+backward, CPU; median of {s['repeats']}"]
    if res["ring"]:
        lines += ["", "## one sequence: per-rank peak memory and step time", "",
                  "| config | step s | peak MiB / rank | time vs full | memory vs full |", "|---|---|---|---|---|"]
        base = res["ring"]["sdpa_full"]
        for name, r in res["ring"].items():
            lines.append(f"| {name} | {r['seconds']:.3f} | {r['peak_mib']:.1f} | {r['seconds'] / base['seconds']:.2f}x "
                         f"| {r['peak_mib'] / max(base['peak_mib'], 1e-9):.2f}x |")
    labels = {"dense_mask": "dense block-diagonal mask (SDPA)", "varlen_blocks": "varlen, block path (kernel='flash')",
              "varlen": "varlen, default (grouped SDPA)"}
    for docs, title in (("equal", f"documents of {s['doc_len']}"), ("short", "random documents of 1..64")):
        if f"varlen:{docs}" not in res["packed"]:
            continue
        d = res["packed"][f"dense_mask:{docs}"]
        lines += ["", f"## pack of {s['length']} tokens in {d['documents']} {title}", "",
                  "| config | step s | peak MiB | dense / this (time) |", "|---|---|---|---|"]
        for m in ("dense_mask", "varlen_blocks", "varlen"):
            r = res["packed"][f"{m}:{docs}"]
            lines.append(f"| {labels[m]} | {r['seconds']:.4f} | {r['peak_mib']:.1f} | {d['seconds'] / r['seconds']:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--length", type=int, default=4096, help="total tokens (divisible by 8 and by --doc-len)")
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--doc-len", type=int, default=512, help="document length in the packed comparison")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--part", choices=("all", "ring", "packed"), default="all", help="which comparison to run")
    a = p.parse_args(argv)
    if a.length % 8 or a.length % a.doc_len:
        p.error("--length must be divisible by 8 (zigzag on 4 ranks) and by --doc-len")
    res = run(a.length, a.heads, a.kv_heads, a.dim, a.doc_len, a.repeats, part=a.part)
    print(report(res))
    if a.json:
        atomic_write_json(a.json, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
