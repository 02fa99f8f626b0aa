"""Block attention kernels that return the log-sum-exp, and the plan runner every variant shares.

A *block* is attention of a query range on a key range, either full or causal on a square
diagonal (top-left aligned, as SDPA's ``is_causal``). Varlen, zigzag-ring and varlen-ring
attention are all "a list of blocks whose results are merged by log-sum-exp" (``ring/merge.py``);
they differ only in which blocks they list.

Interchangeable kernels, ``[B, H, T, D]`` tensors, GQA without expanding K/V in the caller:

* ``"flash"``, ``"efficient"``, ``"cudnn"``: torch's SDPA ops that return the lse, memory linear
  in the block length (``sdpa_kernels.py``: on CPU ``"flash"`` is
  ``aten._scaled_dot_product_flash_attention_for_cpu``; on CUDA all three exist, UNVERIFIED until
  run on a GPU). Default: ``"flash"`` on CPU for float32/bf16/fp16; on CUDA the first op the
  inputs and GPU allow (``sdpa_kernels.select_kernel``).
* ``"torch"``: exact math in plain torch (float64 stays float64), memory ``Tq*Tk`` per block.
  Default for float64 on CPU and the reference for tests; on CUDA never chosen silently for a
  block above ``QUADRATIC_MAX_SCORES`` scores.

Backward uses the flash trick: with the FINAL (merged) output and lse, each block's gradients are
computed independently and summed (ring-flash-attn does the same).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from longctx.attention.ring.merge import merge_block
from longctx.attention.sdpa_kernels import (SDPA_KERNELS, device_info, get_op, sdpa_block_backward,
                                            sdpa_block_forward, select_kernel)

KERNELS = (*SDPA_KERNELS, "torch")


@dataclass(frozen=True)
class Block:
    """Queries ``[q0, q1)`` attend keys ``[k0, k1)``; ``causal`` = square block, key j <= query i."""

    q0: int
    q1: int
    k0: int
    k1: int
    causal: bool


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype: float64 stays float64, everything else merges in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def pick_kernel(q: torch.Tensor, kernel: str | None = None, k: torch.Tensor | None = None) -> str:
    """``kernel`` validated, or the default for ``q``'s device/dtype and the block's size (see module doc)."""
    tk = q.shape[2] if k is None else k.shape[2]
    return select_kernel(device_info(q.device), q.dtype, q.shape[-1], q.shape[2], tk, kernel)


def _group(q: torch.Tensor, k: torch.Tensor) -> int:
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"query heads {q.shape[1]} not a multiple of key/value heads {k.shape[1]}")
    return q.shape[1] // k.shape[1]


def _torch_scores(q, k, causal, scale):
    """Scores ``[B, Hkv, G, Tq, Tk]`` in the accumulation dtype, masked with -inf."""
    b, h, tq, d = q.shape
    g = _group(q, k)
    dt = acc_dtype(q.dtype)
    qg = q.to(dt).reshape(b, k.shape[1], g, tq, d)
    s = torch.einsum("bhgqd,bhkd->bhgqk", qg, k.to(dt)) * scale
    if causal:
        tk = k.shape[2]
        s = s.masked_fill(torch.ones(tq, tk, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    return s, qg


def _safe_probs(s: torch.Tensor, lse: torch.Tensor) -> torch.Tensor:
    """exp(s - lse) with rows that see no key (lse = -inf) set to 0, never NaN."""
    empty = torch.isneginf(lse)
    return torch.exp(s - torch.where(empty, 0.0, lse).unsqueeze(-1)).masked_fill(empty.unsqueeze(-1), 0.0)


def torch_block_forward(q, k, v, causal: bool, scale: float):
    """Exact block attention: (out ``[B,H,Tq,D]``, lse ``[B,H,Tq]``), both in the accumulation dtype."""
    b, h, tq, _ = q.shape
    s, _ = _torch_scores(q, k, causal, scale)
    lse = torch.logsumexp(s, dim=-1)  # -inf for rows without keys
    p = _safe_probs(s, lse)
    out = torch.einsum("bhgqk,bhkd->bhgqd", p, v.to(s.dtype))
    return out.reshape(b, h, tq, v.shape[-1]), lse.reshape(b, h, tq)


def torch_block_backward(dout, q, k, v, out, lse, causal: bool, scale: float):
    """Gradients of one block given the FINAL out/lse of its query rows (accumulation dtype)."""
    b, h, tq, d = q.shape
    hk, g = k.shape[1], _group(q, k)
    s, qg = _torch_scores(q, k, causal, scale)
    dt = s.dtype
    p = _safe_probs(s, lse.to(dt).reshape(b, hk, g, tq))
    do = dout.to(dt).reshape(b, hk, g, tq, -1)
    dv = torch.einsum("bhgqk,bhgqd->bhkd", p, do)
    dp = torch.einsum("bhgqd,bhkd->bhgqk", do, v.to(dt))
    delta = (do * out.to(dt).reshape(b, hk, g, tq, -1)).sum(-1, keepdim=True)
    ds = p * (dp - delta)
    dq = torch.einsum("bhgqk,bhkd->bhgqd", ds, k.to(dt)).reshape(b, h, tq, d) * scale
    dk = torch.einsum("bhgqk,bhgqd->bhkd", ds, qg) * scale
    return dq, dk, dv


def flash_block_forward(q, k, v, causal: bool, scale: float):
    """The ``"flash"`` SDPA op of ``q``'s device; lse fp32 (fp64 for fp64). Rows without keys: lse -inf."""
    return sdpa_block_forward(get_op("flash", q.device.type), q, k, v, causal, scale)


def block_attention_forward(q, k, v, causal: bool, scale: float, kernel: str | None = None):
    """One block: ``(out, lse)``; ``kernel`` None picks the device's default (``pick_kernel``)."""
    kern = pick_kernel(q, kernel, k)
    if causal and q.shape[2] != k.shape[2]:
        raise ValueError(f"causal block must be square, got {q.shape[2]} queries x {k.shape[2]} keys")
    if kern == "torch":
        return torch_block_forward(q, k, v, causal, scale)
    return sdpa_block_forward(get_op(kern, q.device.type), q, k, v, causal, scale)


def block_attention_backward(dout, q, k, v, out, lse, causal: bool, scale: float, kernel: str | None = None):
    kern = pick_kernel(q, kernel, k)
    if kern == "torch":
        return torch_block_backward(dout, q, k, v, out, lse, causal, scale)
    return sdpa_block_backward(get_op(kern, q.device.type), dout, q, k, v, out, lse, causal, scale)


def new_accumulators(q: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(out zeros ``[B,H,Tq,Dv]``, lse -inf ``[B,H,Tq]``) in the accumulation dtype."""
    b, h, tq, _ = q.shape
    dt = acc_dtype(q.dtype)
    return q.new_zeros(b, h, tq, v.shape[-1], dtype=dt), torch.full((b, h, tq), float("-inf"), dtype=dt, device=q.device)


def run_blocks_forward(q, k, v, blocks: list[Block], scale: float, kernel: str | None = None, acc=None):
    """Attention of ``q`` on ``k, v`` restricted to ``blocks``, merged into ``acc`` (out, lse) in place."""
    out, lse = acc if acc is not None else new_accumulators(q, v)
    for bl in blocks:
        o, l = block_attention_forward(q[:, :, bl.q0:bl.q1], k[:, :, bl.k0:bl.k1], v[:, :, bl.k0:bl.k1], bl.causal, scale, kernel)
        merge_block(out[:, :, bl.q0:bl.q1], lse[:, :, bl.q0:bl.q1], o, l)
    return out, lse


def run_blocks_backward(dout, q, k, v, out, lse, blocks: list[Block], scale: float, kernel: str | None = None, grads=None):
    """Add every block's (dq, dk, dv) into ``grads`` (accumulation dtype, allocated when None)."""
    if grads is None:
        dt = acc_dtype(q.dtype)
        grads = (torch.zeros_like(q, dtype=dt), torch.zeros_like(k, dtype=dt), torch.zeros_like(v, dtype=dt))
    dq, dk, dv = grads
    for bl in blocks:
        qs, ks = slice(bl.q0, bl.q1), slice(bl.k0, bl.k1)
        gq, gk, gv = block_attention_backward(
            dout[:, :, qs], q[:, :, qs], k[:, :, ks], v[:, :, ks], out[:, :, qs], lse[:, :, qs], bl.causal, scale, kernel
        )
        dq[:, :, qs] += gq
        dk[:, :, ks] += gk
        dv[:, :, ks] += gv
    return grads


def default_scale(q: torch.Tensor, scale: float | None) -> float:
    return q.shape[-1] ** -0.5 if scale is None else float(scale)


def full_attention_reference(q, k, v, cu_seqlens: torch.Tensor | None = None, scale: float | None = None) -> torch.Tensor:
    """Dense causal (optionally block-diagonal) attention in plain autograd-able torch: the test oracle.

    Memory ``T^2``: for tests and the dense-mask benchmark only. Computes in float64 if given float64.
    """
    b, h, t, d = q.shape
    hk = k.shape[1]
    g = _group(q, k)
    scale = default_scale(q, scale)
    allowed = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
    if cu_seqlens is not None:
        cu = cu_seqlens.to(torch.int64).to(q.device)
        seg = torch.repeat_interleave(torch.arange(len(cu) - 1, device=q.device), cu[1:] - cu[:-1])
        allowed = allowed & (seg[:, None] == seg[None, :])
    s = torch.einsum("bhgqd,bhkd->bhgqk", q.reshape(b, hk, g, t, d), k) * scale
    s = s.masked_fill(~allowed, float("-inf"))
    p = torch.softmax(s, dim=-1)
    return torch.einsum("bhgqk,bhkd->bhgqd", p, v).reshape(b, h, t, v.shape[-1])
