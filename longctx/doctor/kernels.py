"""Every single-process attention kernel and the chunked loss, on the device vs a float64 CPU oracle.

Each case runs one path on the device and its exact float64 twin on the CPU on the same inputs
(rounded to the tested dtype first) and returns ``{output name: (got, reference)}``: forward
outputs and the backward's gradients. :func:`run_kernel_checks` turns each case into one table row
(the worst output's relative error against the dtype's tolerance, ``oracle.TOL``). Paths that
exist only on CUDA (torch's flash / efficient / cuDNN SDPA ops, FlexAttention, flash-attn) are
rows too, SKIPped with the reason elsewhere, so a CPU report shows what it did not prove. The
sequence-parallel kernels (ring, Ulysses) need several ranks: :mod:`longctx.doctor.parity`.

The cases take the kernel as an argument (``attn_fn``, ``block_fn``, ``loss_fn``) and look the
library functions up when called, so a test can plant a wrong kernel and see the row FAIL.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch

import longctx.core.loss as lm
from longctx.attention import cuda, full_attention_reference, varlen_attention
from longctx.attention import sdpa_kernels as sk
from longctx.attention.blocks import (
    block_attention_forward,
    torch_block_backward,
    torch_block_forward,
)
from longctx.attention.sdpa_kernels import (
    get_op,
    sdpa_block_backward,
    sdpa_block_forward,
)
from longctx.doctor.oracle import (
    DTYPE_NAMES,
    TOL,
    compare,
    cu_from_lengths,
    doc_lengths,
    qkv,
    worst,
)
from longctx.doctor.report import FAIL, PASS, Check, failed_with, skipped

Pairs = dict[str, tuple[torch.Tensor, torch.Tensor]]
BF16, FP16, FP32 = torch.bfloat16, torch.float16, torch.float32


def varlen_pairs(device: str, dtype: torch.dtype, t: int = 320, kernel: str | None = None,
                 attn_fn: Callable | None = None) -> Pairs:
    """varlen_attention fwd + dq/dk/dv (GQA 4/2, several documents) vs the dense float64 oracle."""
    attn_fn = attn_fn or (lambda q, k, v, cu: varlen_attention(q, k, v, cu, kernel=kernel))
    q, k, v, dout = qkv(t, 4, 2, 32, dtype, seed=1)
    cu = cu_from_lengths(doc_lengths(t, max(8, t // 4)))
    leaves = [x.clone().requires_grad_(True) for x in (q, k, v)]
    ref = full_attention_reference(*leaves, cu)
    ref.backward(dout)
    xs = [x.to(device, dtype).requires_grad_(True) for x in (q, k, v)]
    out = attn_fn(*xs, cu.to(device))
    out.backward(dout.to(device, dtype))
    return {"out": (out.detach(), ref.detach()),
            **{f"d{n}": (x.grad, leaf.grad) for n, x, leaf in zip("qkv", xs, leaves)}}


def block_pairs(device: str, dtype: torch.dtype, causal: bool, tq: int, tk: int,
                block_fn: Callable | None = None) -> Pairs:
    """block_attention_forward (out, lse; the kernel the ring layouts pick) vs the exact float64 block kernel."""
    block_fn = block_fn or block_attention_forward
    g = torch.Generator().manual_seed(2 + tq)
    q = torch.randn(1, 4, tq, 32, generator=g).to(dtype).double()
    k, v = (torch.randn(1, 2, tk, 32, generator=g).to(dtype).double() for _ in range(2))
    ref_out, ref_lse = torch_block_forward(q, k, v, causal, 32 ** -0.5)
    out, lse = block_fn(q.to(device, dtype), k.to(device, dtype), v.to(device, dtype), causal, 32 ** -0.5)
    return {"out": (out, ref_out), "lse": (lse, ref_lse)}


def sdpa_kernel_pairs(device: str, dtype: torch.dtype, name: str, causal: bool, tq: int, tk: int) -> Pairs:
    """One SDPA-op block kernel (``sdpa_kernels``: flash / efficient / cudnn, GQA 4/2, head 64) through
    the wrapper: out, lse and the backward's dq/dk/dv vs the exact float64 block kernel on the CPU."""
    g = torch.Generator().manual_seed(7 + tq + tk)
    q, dout = (torch.randn(1, 4, tq, 64, generator=g).to(dtype).double() for _ in range(2))
    k, v = (torch.randn(1, 2, tk, 64, generator=g).to(dtype).double() for _ in range(2))
    scale = 64 ** -0.5
    ref_out, ref_lse = torch_block_forward(q, k, v, causal, scale)
    ref_grads = torch_block_backward(dout, q, k, v, ref_out, ref_lse, causal, scale)
    op = get_op(name, torch.device(device).type)
    xs = [x.to(device, dtype) for x in (q, k, v, dout)]
    out, lse = sdpa_block_forward(op, *xs[:3], causal, scale)
    grads = sdpa_block_backward(op, xs[3], *xs[:3], out, lse, causal, scale)
    return {"out": (out, ref_out), "lse": (lse, ref_lse),
            **{f"d{n}": (got, want) for n, got, want in zip("qkv", grads, ref_grads)}}


def loss_pairs(device: str, dtype: torch.dtype, t: int = 512, vocab: int = 300, hidden: int = 64,
               loss_fn: Callable | None = None) -> Pairs:
    """chunked_lm_loss (value, d hidden, d head) vs full_lm_loss in float64 on the CPU, LongAlign weights."""
    loss_fn = loss_fn or (lambda h, w, y, wt: lm.chunked_lm_loss(h, w, y, wt, chunk_size=max(1, t // 5)))
    g = torch.Generator().manual_seed(4)
    h = torch.randn(t, hidden, generator=g).to(dtype).double()
    w = (torch.randn(vocab, hidden, generator=g) * hidden ** -0.5).to(dtype).double()
    y = torch.randint(0, vocab, (t,), generator=g)
    y[torch.rand(t, generator=g) < 0.2] = -100
    wt = torch.where(y != -100, torch.rand(t, generator=g, dtype=torch.float64) + 0.1, torch.zeros(t, dtype=torch.float64))
    h64, w64 = h.clone().requires_grad_(True), w.clone().requires_grad_(True)
    ref = lm.full_lm_loss(h64, w64, y, wt)
    ref.backward()
    hd, wd = h.to(device, dtype).requires_grad_(True), w.to(device, dtype).requires_grad_(True)
    got = loss_fn(hd, wd, y.to(device), wt.float().to(device))
    got.backward()
    return {"value": (got.detach(), ref.detach()), "d_hidden": (hd.grad, h64.grad), "d_head": (wd.grad, w64.grad)}


def _flash_attn_varlen(q, k, v, cu):
    return cuda.flash_varlen(q, k, v, cu, q.shape[-1] ** -0.5)


@dataclass(frozen=True)
class KernelCase:
    """One row: ``run()`` gives the pairs, ``needs()`` says why it cannot run here (None: it can)."""

    name: str
    dtype: torch.dtype
    run: Callable[[], Pairs]
    needs: Callable[[], str | None] = lambda: None


def _cuda_only(device: str) -> Callable[[], str | None]:
    return lambda: None if device == "cuda" else "a CUDA-only path (this run is on the CPU)"


def _sdpa_op_usable(device: str, name: str, dtype: torch.dtype, head_dim: int) -> Callable[[], str | None]:
    def needs() -> str | None:
        if device != "cuda":
            return None if name == "flash" else f"{name}: a CUDA-only op (this run is on the CPU)"
        return sk.refusal(name, sk.device_info(torch.device("cuda")), dtype, head_dim)

    return needs


def _flash_attn_present(device: str) -> Callable[[], str | None]:
    def needs() -> str | None:
        if device != "cuda":
            return "flash-attn runs on CUDA only"
        return None if cuda.has_flash_attn() else "flash-attn does not import (see the environment row)"

    return needs


def kernel_cases(device: str, small: bool) -> list[KernelCase]:
    """The rows for ``device``; ``small``: the CPU sizes (seconds), else the CUDA sizes."""
    t, lt, vocab, hidden = (96, 128, 64, 16) if small else (320, 2048, 300, 64)
    sq, sk_ = (197, 96) if not small else (64, 48)
    half = BF16 if device == "cuda" else FP32  # the dtype of the CUDA-only rows (named the same on the CPU)
    cases = [KernelCase(f"varlen/default-{DTYPE_NAMES[dt]}", dt, lambda dt=dt: varlen_pairs(device, dt, t))
             for dt in ((BF16, FP16, FP32) if device == "cuda" else (BF16, FP32))]
    if device == "cuda":
        cases.append(KernelCase("varlen/default-bf16-2k", BF16, lambda: varlen_pairs(device, BF16, 2048)))
    cases.append(KernelCase(f"varlen/block-torch-{DTYPE_NAMES[half]}", half,
                            lambda: varlen_pairs(device, half, t, kernel="torch")))
    for name in ("flash", "efficient", "cudnn"):
        cases.append(KernelCase(f"varlen/block-{name}-{DTYPE_NAMES[half]}", half,
                                lambda name=name: varlen_pairs(device, half, t, kernel=name),
                                _sdpa_op_usable(device, name, half, 32)))
    cases.append(KernelCase("varlen/flex-bf16", BF16, lambda: varlen_pairs(device, BF16, t, kernel="flex"),
                            _cuda_only(device)))
    cases.append(KernelCase("varlen/flash-attn-bf16", BF16, lambda: varlen_pairs(device, BF16, t, attn_fn=_flash_attn_varlen),
                            _flash_attn_present(device)))
    for dt in (BF16, FP32):
        for causal, tq, tk in ((True, 96, 96), (False, 64, 160)):
            cases.append(KernelCase(f"block/auto-{DTYPE_NAMES[dt]}-{'causal' if causal else 'full'}", dt,
                                    lambda dt=dt, c=causal, a=tq, b=tk: block_pairs(device, dt, c, a, b)))
    ops = [("flash", BF16), ("efficient", BF16), ("efficient", FP32), ("cudnn", BF16)] if device == "cuda" else [("flash", FP32)]
    for name, dt in ops:
        for causal, tq, tk in ((True, sq, sq), (False, sk_, sq + 32)):
            cases.append(KernelCase(f"sdpa/{name}-{DTYPE_NAMES[dt]}-{'causal' if causal else 'full'}", dt,
                                    lambda n=name, dt=dt, c=causal, a=tq, b=tk: sdpa_kernel_pairs(device, dt, n, c, a, b),
                                    _sdpa_op_usable(device, name, dt, 64)))
    for dt in (BF16, FP32):
        cases.append(KernelCase(f"loss/chunked-{DTYPE_NAMES[dt]}", dt,
                                lambda dt=dt: loss_pairs(device, dt, lt, vocab, hidden)))
    return cases


def judge(name: str, pairs: Pairs, tol: float) -> Check:
    """One row from a case's pairs: the worst output decides, its relative error is the number shown."""
    comps = {out: compare(got, ref, tol) for out, (got, ref) in pairs.items()}
    which, c = worst(comps)
    detail = f"{which} of {'/'.join(comps)}: " + (c.detail if c.rel is None else f"max abs err {c.max_abs:.3g}")
    return Check(name, PASS if all(x.ok for x in comps.values()) else FAIL, {"rel_err": c.rel, "tol": tol}, detail)


def run_kernel_checks(device: str, small: bool, tol_scale: float = 1.0) -> list[Check]:
    """Every case on ``device``: PASS / FAIL against ``TOL[dtype] * tol_scale``, SKIP where it cannot run.
    A case that raises is a FAIL (a kernel crashing on this GPU is what the doctor is for)."""
    rows = []
    for case in kernel_cases(device, small):
        why = case.needs()
        if why:
            rows.append(skipped(f"kernel {case.name}", why))
            continue
        t0 = time.perf_counter()
        try:
            row = judge(f"kernel {case.name}", case.run(), TOL[case.dtype] * tol_scale)
        except Exception as err:
            row = failed_with(f"kernel {case.name}", err)
        row.seconds = time.perf_counter() - t0
        rows.append(row)
    return rows
