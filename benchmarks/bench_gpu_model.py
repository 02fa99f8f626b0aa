"""A Llama-3-8B-shaped model on one GPU: tokens/s, peak memory and MFU of one training step at 32K
and 128K tokens, then the longest length that fits (time-boxed), the planner's prediction beside each.

    python benchmarks/bench_gpu_model.py --json out.json            # CUDA: 8B shape, bf16 (~4 min on an H200)
    python benchmarks/bench_gpu_model.py --tiny --device cpu         # dry run: a tiny shape, seconds

The model, the step and the planner column are ``longctx.doctor.probe``'s (``longctx doctor`` runs one
such step). The model is random-initialised from its config (no weights, no download), bf16 parameters, one
sequence (``attn_implementation="longctx_varlen"``: one document -> one SDPA call), gradient
checkpointing (non-reentrant) and the chunked loss (``longctx.core.loss.chunked_lm_loss``). A "step" is
forward + backward (gradients in bf16 on the GPU); NO optimizer step: AdamW's fp32 states of 8B
parameters (~90 GiB) would not leave room for long sequences on one GPU, and ALST offloads them
to the CPU. The planner column is ``longctx.plan`` for the same shape with the optimizer
offloaded (``offload="optimizer"``) and its fwd+bwd peak (the optimizer terms left out).

MFU = model FLOPs (``longctx.plan.throughput.sequence_flops``: 6·N·T + causal attention) / (step
seconds x 989 TFLOP/s, H200 bf16 dense peak); ``hw_mfu`` counts the recomputed forward too (x 4/3).

Longest length: memory is ~linear in T with checkpointing, so the 32K and 128K peaks give a line
whose crossing with the GPU's memory is the estimate; then real steps bisect below it, but only
lengths whose step time (extrapolated from the 128K step by FLOPs) fits the remaining ``--budget``
are tried. Rows are written to ``--json`` after each measurement (atomically), so a run killed at
its time limit still leaves every finished row.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")  # before CUDA starts

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from longctx.doctor import probe  # noqa: E402  (the model, the step, its measurement and the planner beside it)
from longctx.doctor.probe import GiB, build_model, is_oom, make_step, measure, planner  # noqa: E402
from longctx.plan.shapes import PRESETS, ModelShape  # noqa: E402

H200_BF16_PEAK = 989e12
TINY = probe.TINY_SHAPE


def flops_row(shape: ModelShape, t: int, seconds: float) -> dict:
    return probe.flops_row(shape, t, seconds, H200_BF16_PEAK)


def step_seconds_estimate(shape: ModelShape, t: int, ref_t: int, ref_seconds: float) -> float:
    """Step time at ``t`` from a measured one at ``ref_t``, scaled by model FLOPs."""
    from longctx.plan.throughput import sequence_flops

    return ref_seconds * sum(sequence_flops(shape, t)) / sum(sequence_flops(shape, ref_t))


def linear_limit(points: list[tuple[int, float]], capacity_gib: float, multiple: int) -> int | None:
    """Where the line through the two longest (length, peak GiB) points crosses ``capacity_gib``."""
    if len(points) < 2:
        return None
    (t1, m1), (t2, m2) = sorted(points)[-2:]
    slope = (m2 - m1) / (t2 - t1)
    if slope <= 0:
        return None
    return int((t2 + (capacity_gib - m2) / slope) // multiple * multiple)


def next_try(lo: int, hi: int | None, guess: int, multiple: int, affordable: Callable[[int], bool]) -> int | None:
    """The next length to try, a multiple of ``multiple`` above ``lo`` (the longest that fitted) and
    below ``hi`` (the shortest that did not): ``guess`` until something failed, then the midpoint;
    lowered towards ``lo`` until ``affordable``. None when nothing is left to learn."""
    top = guess if hi is None or guess < hi else (lo + hi) // 2
    if hi is not None:
        top = min(top, hi - multiple)
    cand = top // multiple * multiple
    while cand > lo and not affordable(cand):
        cand = (lo + cand) // 2 // multiple * multiple
    return cand if cand > lo else None


class Rows:
    """The report rows, rewritten to ``path`` (atomically) after every change."""

    def __init__(self, path: Path | None, meta: dict) -> None:
        self.path, self.meta, self.rows = path, meta, []

    def add(self, row: dict) -> None:
        self.rows.append(row)
        print("model " + json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
        if self.path:
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps({**self.meta, "rows": self.rows}, indent=1, default=str))
            os.replace(tmp, self.path)


def run(device: str, shape: ModelShape, lengths: list[int], budget: float, chunk: int, multiple: int,
        rows: Rows, capacity_gib: float | None = None) -> list[dict]:
    t_start = time.perf_counter()
    left = lambda: budget - (time.perf_counter() - t_start)  # noqa: E731
    if capacity_gib is None and device.startswith("cuda"):
        capacity_gib = torch.cuda.get_device_properties(torch.device(device)).total_memory / GiB
    model = build_model(shape, device, max_len=4 * max(lengths))
    params_gib = sum(p.numel() * p.element_size() for p in model.parameters()) / GiB
    rows.add({"bench": "setup", "model": shape.name, "params_gib": params_gib, "capacity_gib": capacity_gib,
              "setup_s": time.perf_counter() - t_start, "device": device})
    warm = measure(make_step(model, min(lengths), device, chunk), device)  # kernels, cuBLAS handles, autotuning
    rows.add({"bench": "warmup", "tokens": min(lengths), **warm})
    points, ref = [], None
    for t in lengths:
        if ref and step_seconds_estimate(shape, t, *ref) > left():
            rows.add({"bench": "step", "tokens": t, "skipped": f"estimated {step_seconds_estimate(shape, t, *ref):.0f} s > {left():.0f} s left"})
            continue
        row = {"bench": "step", "tokens": t, **planner(shape, t, capacity_gib or 80.0, chunk)}
        try:
            m = measure(make_step(model, t, device, chunk), device)
            row.update(m, **flops_row(shape, t, m["seconds"]))
            points.append((t, m["peak_gib"]))
            ref = (t, m["seconds"])
        except Exception as err:
            row["error"] = "out of memory" if is_oom(err) else f"{type(err).__name__}: {str(err)[:160]}"
            model.zero_grad(set_to_none=True)
        rows.add(row)
    if capacity_gib is None:  # the CPU dry run: pretend the memory is 1.5x the largest peak
        capacity_gib = 1.5 * max(p for _, p in points) if points else None
    guess = linear_limit(points, 0.97 * capacity_gib, multiple) if capacity_gib else None
    lo = max((t for t, _ in points), default=0)
    hi = None
    affordable = lambda t: ref is not None and step_seconds_estimate(shape, t, *ref) * 1.1 < left()  # noqa: E731
    rows.add({"bench": "longest estimate", "linear_fit_tokens": guess, "capacity_gib": capacity_gib,
              **planner(shape, max(lo, multiple), capacity_gib or 80.0, chunk)})
    tried = 0
    while guess and ref and tried < 4:
        t = next_try(lo, hi, guess, multiple, affordable)
        if t is None:
            break
        tried += 1
        row = {"bench": "longest try", "tokens": t, "estimate_s": step_seconds_estimate(shape, t, *ref)}
        try:
            m = measure(make_step(model, t, device, chunk), device)
            if device.startswith("cuda") or m["peak_gib"] <= capacity_gib:
                row.update(m, fits=True, **flops_row(shape, t, m["seconds"]))
                lo = t
            else:  # CPU dry run: the pretend capacity
                row.update(m, fits=False)
                hi = t
        except Exception as err:
            if not is_oom(err):
                raise
            row.update(fits=False, error="out of memory")
            model.zero_grad(set_to_none=True)
            hi = t
        rows.add(row)
        if hi is None and t >= guess:
            break
    rows.add({"bench": "longest", "longest_fit_tokens": lo, "shortest_oom_tokens": hi, "linear_fit_tokens": guess,
              "tries": tried, "budget_left_s": left()})
    return rows.rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    ap.add_argument("--tiny", action="store_true", help="a tiny model shape and lengths 64,128 (the CPU dry run)")
    ap.add_argument("--lengths", default=None, help="comma-separated step lengths (default 32768,131072; tiny: 64,128)")
    ap.add_argument("--budget", type=float, default=240, help="seconds for the whole benchmark; longer steps are skipped")
    ap.add_argument("--chunk", type=int, default=4096, help="tokens per loss chunk")
    ap.add_argument("--json", type=Path, default=None, help="write the rows here after each measurement")
    a = ap.parse_args(argv)
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    shape = TINY if a.tiny else PRESETS["llama-3-8b"]
    lengths = [int(x) for x in (a.lengths or ("64,128" if a.tiny else "32768,131072")).split(",")]
    multiple = 16 if a.tiny else 8192
    rows = Rows(a.json, {"device": device, "model": shape.name, "chunk": a.chunk, "budget_s": a.budget})
    run(device, shape, lengths, a.budget, min(a.chunk, max(lengths)), multiple, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
