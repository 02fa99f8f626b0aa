"""GPU throughput and peak memory, baseline and ours side by side (bf16, one process).

    python benchmarks/bench_gpu.py                      # full sizes on CUDA (~3 min on an H200)
    python benchmarks/bench_gpu.py --quick              # smaller sizes, no 128K pack
    python benchmarks/bench_gpu.py --device cpu         # tiny sizes: exercises the code, timings mean little
    python benchmarks/bench_gpu.py --json out.json      # also write the rows (rewritten after each row)

1. ``varlen_attention`` fwd+bwd tokens/s and peak memory at 8K/32K/128K packs (documents ~4K,
   8/2 heads x 128) vs one SDPA call per document (baseline); on CUDA also ``kernel="flex"``
   (FlexAttention, document mask: ``flex_*`` keys) and the block plan on the auto-selected SDPA op
   (``blocks_*``: what the ring layouts run per rank), so one run says which is faster.
2. The chunked LM loss vs full logits at 32K tokens x 32K vocab x 1024 hidden: time and
   ``torch.cuda.max_memory_allocated`` above the inputs.
3. A small Llama training step (fwd+bwd+AdamW, bf16 autocast): ``longctx_varlen`` vs ``sdpa``
   (sdpa ignores document boundaries: a speed reference only).

Each row runs in its own try/except (an out-of-memory baseline at 128K is a result, not a crash).
Correctness is tests/gpu's job; ``scripts/gpu_run.py`` runs both on a GPU lease.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "gpu"))  # the same seeded inputs as the GPU tests

from _oracle import cu_from_lengths, doc_lengths, packed_batch, tiny_model  # noqa: E402

# bench name -> (ours label, baseline label) of its row's ``<label>_tok_s`` / ``<label>_peak_gib`` keys
PAIRS = {"varlen_attention fwd+bwd bf16": ("ours", "sdpa_per_doc"), "lm loss fwd+bwd bf16": ("chunked", "full"),
         "tiny llama train step": ("longctx_varlen", "sdpa")}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_fn(fn: Callable[[], object], device: str, warmup: int = 1, reps: int = 3) -> float:
    """Median seconds of ``fn`` after ``warmup`` calls (device synchronised around each call)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_mem(fn: Callable[[], object], device: str) -> float | None:
    """Peak CUDA memory (GiB) allocated while ``fn`` runs, above what was allocated before; None on CPU."""
    if not device.startswith("cuda"):
        fn()
        return None
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**30


def _error(err: Exception) -> str:
    return f"{type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}"


def _measure(row: dict, label: str, step: Callable[[], object], device: str, warmup: int, reps: int) -> None:
    try:
        row[f"{label}_tok_s"] = row["tokens"] / time_fn(step, device, warmup=warmup, reps=reps)
        row[f"{label}_peak_gib"] = peak_mem(step, device)
    except Exception as err:  # e.g. out of memory at 128K on the baseline
        row[f"{label}_error"] = _error(err)
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def _ratios(row: dict) -> dict:
    ours, base = PAIRS[row["bench"]]
    if f"{ours}_tok_s" in row and f"{base}_tok_s" in row:
        row["speed_ratio"] = row[f"{ours}_tok_s"] / row[f"{base}_tok_s"]
    if row.get(f"{ours}_peak_gib") and row.get(f"{base}_peak_gib"):
        row["mem_ratio_base_over_ours"] = row[f"{base}_peak_gib"] / row[f"{ours}_peak_gib"]
    return row


def _sdpa_per_doc(q, k, v, cu):
    """Baseline: one SDPA call (flash / efficient kernel on CUDA) per document of the pack."""
    import torch.nn.functional as F

    cu = cu.tolist()
    outs = [F.scaled_dot_product_attention(q[:, :, s:e], k[:, :, s:e], v[:, :, s:e], is_causal=True, enable_gqa=True)
            for s, e in zip(cu[:-1], cu[1:])]
    return torch.cat(outs, dim=2)


def _auto_block_kernel(q, k) -> str:
    """The block kernel the ring layouts would pick for these tensors (``sdpa_kernels.select_kernel``)."""
    from longctx.attention.blocks import pick_kernel

    return pick_kernel(q, None, k)


def bench_varlen(device: str, sizes: list[int], h: int = 8, hk: int = 2, d: int = 128, doc: int = 4096,
                 reps: int = 3) -> list[dict]:
    """bf16 fwd+bwd tokens/s and peak memory: varlen_attention vs a per-document SDPA loop, per pack size."""
    from longctx.attention import cuda, varlen_attention

    rows = []
    for t in sizes:
        cu = cu_from_lengths(doc_lengths(t, min(doc, t)))
        g = torch.Generator(device=device).manual_seed(0)
        xs = [torch.randn(1, n, t, d, device=device, dtype=torch.bfloat16, generator=g).requires_grad_(True)
              for n in (h, hk, hk)]
        dout = torch.randn(1, h, t, d, device=device, dtype=torch.bfloat16, generator=g)
        row = {"bench": "varlen_attention fwd+bwd bf16", "tokens": t, "docs": len(cu) - 1, "heads": f"{h}/{hk}x{d}",
               "path": "flash-attn" if device.startswith("cuda") and cuda.has_flash_attn() else "default (no flash-attn)"}
        variants = [("ours", lambda: varlen_attention(*xs, cu.to(device))), ("sdpa_per_doc", lambda: _sdpa_per_doc(*xs, cu))]
        if device.startswith("cuda"):  # the alternatives to the default path (flex: forward-only on the CPU)
            variants += [("flex", lambda: varlen_attention(*xs, cu.to(device), kernel="flex")),
                         ("blocks", lambda: varlen_attention(*xs, cu.to(device), kernel=_auto_block_kernel(xs[0], xs[1])))]
        for label, fn in variants:
            _measure(row, label, lambda fn=fn: fn().backward(dout), device, warmup=1, reps=reps)
            for x in xs:
                x.grad = None
        rows.append(_ratios(row))
    return rows


def bench_loss(device: str, t: int, vocab: int, hidden: int = 1024, chunk: int = 4096, reps: int = 3) -> dict:
    """Chunked loss vs full logits (bf16): fwd+bwd time and peak memory above the inputs."""
    from longctx.core.loss import chunked_lm_loss, full_lm_loss

    g = torch.Generator(device=device).manual_seed(0)
    h = torch.randn(t, hidden, device=device, dtype=torch.bfloat16, generator=g).requires_grad_(True)
    w = (torch.randn(vocab, hidden, device=device, dtype=torch.bfloat16, generator=g) * hidden ** -0.5).requires_grad_(True)
    y = torch.randint(0, vocab, (t,), device=device, generator=g)
    row = {"bench": "lm loss fwd+bwd bf16", "tokens": t, "vocab": vocab, "hidden": hidden, "chunk": chunk}
    for label, fn in (("chunked", lambda: chunked_lm_loss(h, w, y, chunk_size=chunk)), ("full", lambda: full_lm_loss(h, w, y))):
        _measure(row, label, lambda fn=fn: fn().backward(), device, warmup=0, reps=reps)
        h.grad = w.grad = None
    return _ratios(row)


def bench_train_step(device: str, t: int, hidden: int = 256, layers: int = 4, reps: int = 3) -> dict:
    """Tokens/s of a small Llama training step (fwd+bwd+AdamW, bf16 autocast on CUDA): longctx_varlen vs sdpa."""
    row = {"bench": "tiny llama train step", "tokens": t, "hidden": hidden, "layers": layers,
           "note": "sdpa ignores document boundaries (plain causal): a speed reference only"}
    batch = {k: x.to(device) for k, x in packed_batch(t).items()}
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else contextlib.nullcontext()
    for attn in ("longctx_varlen", "sdpa"):
        model = tiny_model(attn, hidden_size=hidden, num_layers=layers, num_heads=8, num_kv_heads=2,
                           intermediate_size=4 * hidden, max_position_embeddings=t).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step():
            with amp:
                loss = model(**batch, use_cache=False).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        _measure(row, attn, step, device, warmup=1, reps=reps)
        del model, opt
    return _ratios(row)


def plan(device: str, quick: bool) -> list[tuple[str, Callable[[], list[dict]]]]:
    """(name, zero-arg callable returning rows) for ``device``: full or quick sizes on CUDA, tiny on the CPU."""
    if device.startswith("cuda"):  # one size per entry: its row is on disk before the next (slower) size starts
        reps = 2 if quick else 3
        varlen = lambda t: ("varlen", lambda: bench_varlen(device, [t], reps=reps))  # noqa: E731
        return [varlen(8192),
                ("loss", lambda: [bench_loss(device, 8192 if quick else 32768, 32768)]),
                ("train", lambda: [bench_train_step(device, 4096 if quick else 16384)]),
                varlen(32768), *([] if quick else [varlen(131072)])]
    return [("varlen", lambda: bench_varlen(device, [256, 512], h=4, hk=2, d=32, doc=128, reps=1)),
            ("loss", lambda: [bench_loss(device, 512, 512, hidden=64, chunk=128, reps=1)]),
            ("train", lambda: [bench_train_step(device, 128, hidden=64, layers=2, reps=1)])]


def run(device: str, quick: bool, only: set[str] | None = None, log=print, on_rows=None) -> list[dict]:
    """Every benchmark of :func:`plan`; one raising becomes an ``error`` row and the rest still run.
    ``on_rows(rows)`` is called after each benchmark (the JSON is rewritten: a killed run keeps its rows)."""
    rows: list[dict] = []
    for name, fn in plan(device, quick):
        if only and name not in only:
            continue
        try:
            new = fn()
        except Exception as err:
            new = [{"bench": name, "error": _error(err)}]
        rows += new
        for row in new:
            log("bench " + json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}))
        if on_rows:
            on_rows(rows)
    return rows


def _fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.3g}" if abs(x) < 1e4 else f"{x:,.0f}"
    return str(x)


def table(rows: list[dict]) -> str:
    """Baseline and ours side by side: tokens/s, speed ratio, peak GiB, memory ratio."""
    lines = [f"{'bench':<30} {'tokens':>7} {'base tok/s':>11} {'ours tok/s':>11} {'speed x':>8} "
             f"{'base GiB':>9} {'ours GiB':>9} {'mem x':>6}"]
    for row in rows:
        if row.get("bench") not in PAIRS:
            lines.append(f"{row.get('bench', '?'):<30} ERROR {row.get('error', '')}")
            continue
        ours, base = PAIRS[row["bench"]]
        lines.append(f"{row['bench']:<30} {row['tokens']:>7} {_fmt(row.get(base + '_tok_s')):>11} "
                     f"{_fmt(row.get(ours + '_tok_s')):>11} {_fmt(row.get('speed_ratio')):>8} "
                     f"{_fmt(row.get(base + '_peak_gib')):>9} {_fmt(row.get(ours + '_peak_gib')):>9} "
                     f"{_fmt(row.get('mem_ratio_base_over_ours')):>6}"
                     + "".join(f"  {k}: {_fmt(row[k])}" for k in ("flex_tok_s", "flex_peak_gib", "blocks_tok_s", "blocks_peak_gib")
                               if k in row)
                     + "".join(f"  {k}: {v}" for k, v in row.items() if k.endswith("_error")))
    lines.append("(base = sdpa per document / full logits / sdpa model; speed x = ours / base; "
                 "mem x = base / ours peak CUDA memory above the inputs)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    ap.add_argument("--quick", action="store_true", help="smaller sizes, no 128K pack")
    ap.add_argument("--only", default="", help="comma-separated benchmarks: varlen,loss,train")
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    a = ap.parse_args(argv)
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    def write(rows: list[dict]) -> None:
        if a.json:
            tmp = Path(a.json + ".tmp")
            tmp.write_text(json.dumps({"device": device, "quick": a.quick, "rows": rows}, indent=1, default=str))
            os.replace(tmp, a.json)

    rows = run(device, a.quick, {s.strip() for s in a.only.split(",") if s.strip()}, on_rows=write)
    print(table(rows))
    write(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
