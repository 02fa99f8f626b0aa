"""O(T)-memory block kernels through torch's own SDPA ops that return the log-sum-exp.

The ring and varlen block plans (``blocks.py``) need, per block, ``(out, lse)`` forward and
``(dq, dk, dv)`` backward from the FINAL merged ``out``/``lse``. Plain torch has four ops with
exactly that contract, the ones torch's own context parallel calls
(``torch/distributed/tensor/experimental/_context_parallel/_attention.py``):

==========  ===============================================  ===========================  =========
kernel      op (+ ``_backward``)                             lse as the op returns it     device
==========  ===============================================  ===========================  =========
flash       ``_scaled_dot_product_flash_attention_for_cpu``  ``[B, H, Tq]`` fp32/fp64     CPU
flash       ``_scaled_dot_product_flash_attention``          ``[B, H, Tq]`` fp32          CUDA
efficient   ``_scaled_dot_product_efficient_attention``      ``[B, H, ceil32(Tq)]`` fp32  CUDA
cudnn       ``_scaled_dot_product_cudnn_attention``          ``[B, H, Tq, 1]`` fp32       CUDA
==========  ===============================================  ===========================  =========

One wrapper (:func:`sdpa_block_forward` / :func:`sdpa_block_backward`) turns each op into the
block-kernel signature of ``blocks.torch_block_forward``: lse normalised to ``[B, H, Tq]`` (padding
cut; padded back with zeros for the efficient backward, which reads rows in 32-row tiles), rows
without keys reported as lse = -inf (the ops say 0, which would poison a merge), GQA by repeating
K/V heads for the CUDA ops (the CPU op takes fewer K/V heads natively) and summing dK/dV over
each group, dropout 0 (the philox seed/offset the backward ops ask for are unused then; we pass
the ones a tiny forward of the same op returns, so their dtype/shape is what the op expects).
``is_causal`` is top-left aligned; the block plans only ask for causal on square blocks.

**The CUDA rows are UNVERIFIED until ``scripts/gpu_run.py`` has run on a GPU**: their layouts
come from the ops' meta functions (checked here on ``device="meta"``) and torch's context-parallel
code; the CPU row runs through the same wrapper and is tested against the float64 reference.

:func:`select_kernel` chooses a block kernel from a :class:`DeviceInfo` (pure, so the CUDA choice
is testable without CUDA): on CUDA the first O(T) op the dtype, head size, GPU and
``torch.backends.cuda.*_sdp_enabled()`` allow; the quadratic ``"torch"`` kernel only for blocks up
to ``QUADRATIC_MAX_SCORES`` scores, or when asked for explicitly (``kernel="torch"`` or
``LONGCTX_ALLOW_QUADRATIC_ATTENTION=1``); otherwise a :class:`LongctxError` that says why each op
was refused.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from longctx.core.errors import LongctxError

A = torch.ops.aten
SDPA_KERNELS = ("flash", "efficient", "cudnn")  # CUDA preference order (torch's own SDPA order)
QUADRATIC = "torch"
QUADRATIC_MAX_SCORES = 4096 * 4096  # Tq*Tk per block above which "torch" is never chosen silently on CUDA
ALLOW_QUADRATIC_ENV = "LONGCTX_ALLOW_QUADRATIC_ATTENTION"
LSE_ALIGN = 32  # the efficient kernel's lse row padding (kAlignLSE)


@dataclass(frozen=True)
class SdpaOp:
    """One SDPA op as a block kernel. ``forward(q, k, v, causal, scale) -> (out, raw lse)``;
    ``backward(dout, q, k, v, out, raw lse, causal, scale) -> (dq, dk, dv)``; ``lse_layout``:
    ``"bht"`` ``[B,H,T]``, ``"bht_pad"`` ``[B,H,ceil32(T)]`` or ``"bht1"`` ``[B,H,T,1]``."""

    name: str
    device_type: str
    forward: Callable
    backward: Callable
    lse_layout: str = "bht"
    native_gqa: bool = False


# ---------------------------------------------------------------- the ops


def _cpu_flash_fwd(q, k, v, causal, scale):
    return A._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, causal, scale=scale)


def _cpu_flash_bwd(dout, q, k, v, out, lse, causal, scale):
    return A._scaled_dot_product_flash_attention_for_cpu_backward(dout, q, k, v, out, lse, 0.0, causal, scale=scale)


def _flash_fwd(q, k, v, causal, scale):
    out, lse, *_ = A._scaled_dot_product_flash_attention(q, k, v, 0.0, causal, False, scale=scale)
    return out, lse


def _flash_bwd(dout, q, k, v, out, lse, causal, scale):
    seed, offset = _philox("flash", q.device, q.dtype, q.shape[-1])
    return A._scaled_dot_product_flash_attention_backward(
        dout, q, k, v, out, lse, None, None, q.shape[2], k.shape[2], 0.0, causal, seed, offset, scale=scale)


def _efficient_fwd(q, k, v, causal, scale):
    out, lse, *_ = A._scaled_dot_product_efficient_attention(q, k, v, None, True, 0.0, causal, scale=scale)
    return out, lse


def _efficient_bwd(dout, q, k, v, out, lse, causal, scale):
    seed, offset = _philox("efficient", q.device, q.dtype, q.shape[-1])
    dq, dk, dv, _ = A._scaled_dot_product_efficient_attention_backward(
        dout, q, k, v, None, out, lse, seed, offset, 0.0, [True, True, True, False], causal, scale=scale)
    return dq, dk, dv


def _cudnn_fwd(q, k, v, causal, scale):
    out, lse, *_ = A._scaled_dot_product_cudnn_attention(q, k, v, None, True, 0.0, causal, False, scale=scale)
    return out, lse


def _cudnn_bwd(dout, q, k, v, out, lse, causal, scale):
    seed, offset = _philox("cudnn", q.device, q.dtype, q.shape[-1])
    return A._scaled_dot_product_cudnn_attention_backward(
        dout, q, k, v, out, lse, seed, offset, None, None, None, q.shape[2], k.shape[2], 0.0, causal, scale=scale)


OPS: dict[tuple[str, str], SdpaOp] = {
    ("cpu", "flash"): SdpaOp("flash", "cpu", _cpu_flash_fwd, _cpu_flash_bwd, "bht", native_gqa=True),
    ("cuda", "flash"): SdpaOp("flash", "cuda", _flash_fwd, _flash_bwd, "bht"),
    ("cuda", "efficient"): SdpaOp("efficient", "cuda", _efficient_fwd, _efficient_bwd, "bht_pad"),
    ("cuda", "cudnn"): SdpaOp("cudnn", "cuda", _cudnn_fwd, _cudnn_bwd, "bht1"),
}


@functools.lru_cache(maxsize=None)
def _philox(name: str, device: torch.device, dtype: torch.dtype, d: int) -> tuple:
    """The (seed, offset) tensors a tiny forward of op ``name`` returns: what its backward expects."""
    x = torch.zeros(1, 1, 8, d, device=device, dtype=dtype)
    if name == "flash":
        return tuple(A._scaled_dot_product_flash_attention(x, x, x, 0.0, False, False)[6:8])
    if name == "efficient":
        return tuple(A._scaled_dot_product_efficient_attention(x, x, x, None, True, 0.0, False)[2:4])
    return tuple(A._scaled_dot_product_cudnn_attention(x, x, x, None, True, 0.0, False, False)[6:8])


def get_op(name: str, device_type: str) -> SdpaOp:
    op = OPS.get((device_type, name))
    if op is None:
        have = sorted(n for dt, n in OPS if dt == device_type)
        raise LongctxError(f"attention kernel {name!r} has no {device_type} op (there: {', '.join(have) or 'none'})")
    return op


# ---------------------------------------------------------------- the wrapper


def _lse_dtype(q: torch.Tensor) -> torch.dtype:
    return torch.float64 if q.dtype == torch.float64 else torch.float32


def lse_from_op(raw: torch.Tensor, tq: int) -> torch.Tensor:
    """The op's lse as ``[B, H, Tq]`` (whatever of the trailing 1 / row padding the op adds)."""
    if raw.dim() == 4:
        raw = raw[..., 0]
    return raw[:, :, :tq] if raw.shape[2] != tq else raw


def lse_to_op(lse: torch.Tensor, layout: str) -> torch.Tensor:
    """``[B, H, Tq]`` back into the op's layout (zeros in the efficient kernel's padding rows)."""
    if layout == "bht1":
        return lse.unsqueeze(-1).contiguous()
    if layout == "bht_pad":
        tq = lse.shape[-1]
        return F.pad(lse, (0, -tq % LSE_ALIGN)).contiguous()
    return lse.contiguous()


def _expand_kv(q, k, v, op: SdpaOp):
    g = q.shape[1] // k.shape[1]
    if op.native_gqa or g == 1:
        return k, v, 1
    return k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1), g


def _reduce_group(dx: torch.Tensor, hk: int, g: int, dt: torch.dtype) -> torch.Tensor:
    if g == 1:
        return dx
    b, _, t, d = dx.shape
    return dx.to(dt).reshape(b, hk, g, t, d).sum(2)


def sdpa_block_forward(op: SdpaOp, q, k, v, causal: bool, scale: float):
    """``(out [B,H,Tq,Dv] in q's dtype, lse [B,H,Tq] fp32/fp64)``; rows without keys get lse -inf."""
    b, h, tq, _ = q.shape
    if k.shape[2] == 0:
        return q.new_zeros(b, h, tq, v.shape[-1]), torch.full((b, h, tq), float("-inf"), dtype=_lse_dtype(q), device=q.device)
    kk, vv, _ = _expand_kv(q, k, v, op)
    out, raw = op.forward(q.contiguous(), kk.contiguous(), vv.contiguous(), causal, scale)
    return out, lse_from_op(raw, tq)


def sdpa_block_backward(op: SdpaOp, dout, q, k, v, out, lse, causal: bool, scale: float):
    """``(dq, dk, dv)`` of one block from the FINAL out/lse of its query rows (flash identity)."""
    if k.shape[2] == 0:
        return torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    kk, vv, g = _expand_kv(q, k, v, op)
    lse = lse_to_op(lse.to(_lse_dtype(q)), op.lse_layout)
    dq, dk, dv = op.backward(dout.to(q.dtype).contiguous(), q.contiguous(), kk.contiguous(), vv.contiguous(),
                             out.to(q.dtype).contiguous(), lse, causal, scale)
    dt = _lse_dtype(q)
    return dq, _reduce_group(dk, k.shape[1], g, dt), _reduce_group(dv, v.shape[1], g, dt)


# ---------------------------------------------------------------- selection


@dataclass(frozen=True)
class DeviceInfo:
    """What kernel selection needs to know about a device (build it by hand to test a GPU's choice)."""

    type: str
    capability: tuple[int, int] = (0, 0)
    enabled: frozenset[str] = field(default_factory=lambda: frozenset(SDPA_KERNELS))


def device_info(device: torch.device) -> DeviceInfo:
    if device.type != "cuda":
        return DeviceInfo(device.type)
    b = torch.backends.cuda
    enabled = {"flash": b.flash_sdp_enabled(), "efficient": b.mem_efficient_sdp_enabled(), "cudnn": b.cudnn_sdp_enabled()}
    return DeviceInfo("cuda", _capability(device), frozenset(k for k, on in enabled.items() if on))


@functools.lru_cache(maxsize=None)
def _capability(device: torch.device) -> tuple[int, int]:
    return tuple(torch.cuda.get_device_capability(device))


_HALF = (torch.float16, torch.bfloat16)


def refusal(name: str, info: DeviceInfo, dtype: torch.dtype, head_dim: int) -> str | None:
    """Why CUDA op ``name`` cannot run these inputs (None: it can). Conservative versions of the
    checks in torch's ``sdp_utils``: dtype, head size, compute capability, the backend switch."""
    if name not in info.enabled:
        return f"{name}: disabled (torch.backends.cuda)"
    cap = info.capability
    if name in ("flash", "cudnn"):
        if dtype not in _HALF:
            return f"{name}: needs float16/bfloat16, got {dtype}"
        if cap < (8, 0):
            return f"{name}: needs compute capability >= 8.0, got {cap[0]}.{cap[1]}"
        limit = 256 if name == "flash" else 128
        if head_dim % 8 or head_dim > limit:
            return f"{name}: head size {head_dim} not a multiple of 8 up to {limit}"
        return None
    if dtype not in (*_HALF, torch.float32):
        return f"efficient: needs float16/bfloat16/float32, got {dtype}"
    if cap < (5, 0) or (dtype == torch.bfloat16 and cap < (8, 0)):
        return f"efficient: compute capability {cap[0]}.{cap[1]} too old for {dtype}"
    if head_dim % (8 if dtype in _HALF else 4):
        return f"efficient: head size {head_dim} not a multiple of {8 if dtype in _HALF else 4}"
    return None


def select_kernel(info: DeviceInfo, dtype: torch.dtype, head_dim: int, tq: int, tk: int,
                  requested: str | None = None, allow_quadratic: bool | None = None) -> str:
    """The block kernel for these inputs: ``requested`` if given (validated), else

    * CPU (and other non-CUDA devices): ``"flash"`` (the CPU op) unless float64, then ``"torch"``;
    * CUDA: the first of flash, efficient, cudnn that :func:`refusal` allows; if none does, the
      quadratic ``"torch"`` only when ``tq * tk <= QUADRATIC_MAX_SCORES`` or ``allow_quadratic``
      (default: env ``LONGCTX_ALLOW_QUADRATIC_ATTENTION=1``), else a LongctxError.
    """
    known = (*SDPA_KERNELS, QUADRATIC)
    if requested is not None:
        if requested not in known:
            raise ValueError(f"kernel: unknown {requested!r}; choose one of {', '.join(known)}")
        if requested != QUADRATIC and (info.type, requested) not in OPS:
            raise LongctxError(f"kernel {requested!r} needs CUDA (this block is on {info.type})")
        return requested
    if info.type != "cuda":
        return QUADRATIC if dtype == torch.float64 else "flash"
    reasons = [refusal(name, info, dtype, head_dim) for name in SDPA_KERNELS]
    for name, why in zip(SDPA_KERNELS, reasons):
        if why is None:
            return name
    if allow_quadratic is None:
        allow_quadratic = os.environ.get(ALLOW_QUADRATIC_ENV, "") == "1"
    if tq * tk <= QUADRATIC_MAX_SCORES or allow_quadratic:
        return QUADRATIC
    raise LongctxError(
        f"attention block {tq}x{tk} on CUDA: no O(T)-memory kernel takes these inputs ({'; '.join(reasons)}) "
        f"and the quadratic 'torch' kernel would hold {tq}x{tk} scores per head; use bfloat16/float16, "
        f"pass kernel='torch' or set {ALLOW_QUADRATIC_ENV}=1 to accept that")
