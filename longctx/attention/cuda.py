"""CUDA delegation to flash-attn / ring-flash-attn (lazy imports; NOT run in this project's CI).

The public functions in ``longctx.attention`` call these only for CUDA tensors when the packages
import. Each computes the same function as its CPU twin (``varlen_attention``,
``zigzag_ring_attention``, ``varlen_ring_attention``), which the CPU tests check; these wrappers
only convert ``[B, H, T, D]`` <-> flash-attn's ``[B, T, H, D]`` / ``[T, H, D]`` layouts.
Unverified on a GPU here: treat a first CUDA run as a test (compare with ``kernel="torch"``).
"""

from __future__ import annotations

import functools

import torch
import torch.distributed as dist


@functools.cache
def has_flash_attn() -> bool:
    try:
        import flash_attn  # noqa: PLC0415, F401  (optional CUDA-only dependency)
    except Exception:
        return False
    return torch.cuda.is_available()


@functools.cache
def has_ring_flash_attn() -> bool:
    try:
        import ring_flash_attn  # noqa: PLC0415, F401  (optional CUDA-only dependency)
    except Exception:
        return False
    return has_flash_attn()


def _to_thd(x: torch.Tensor) -> torch.Tensor:  # [1, H, T, D] -> [T, H, D]
    return x[0].transpose(0, 1)


def _from_thd(x: torch.Tensor) -> torch.Tensor:  # [T, H, D] -> [1, H, T, D]
    return x.transpose(0, 1).unsqueeze(0)


def flash_varlen(q, k, v, cu_seqlens, scale: float) -> torch.Tensor:
    from flash_attn import flash_attn_varlen_func  # noqa: PLC0415  (optional CUDA-only dependency)

    cu = cu_seqlens.to(device=q.device, dtype=torch.int32)
    max_len = int((cu[1:] - cu[:-1]).max())
    out = flash_attn_varlen_func(_to_thd(q), _to_thd(k), _to_thd(v), cu, cu, max_len, max_len,
                                 softmax_scale=scale, causal=True)
    return _from_thd(out)


def zigzag_ring(q, k, v, scale: float, group) -> torch.Tensor:
    from ring_flash_attn import zigzag_ring_flash_attn_func  # noqa: PLC0415  (optional CUDA-only dependency)

    out = zigzag_ring_flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                      softmax_scale=scale, causal=True, group=group)
    return out.transpose(1, 2)


def llama3_varlen_ring(q, k, v, cu_seqlens, scale: float, group) -> torch.Tensor:
    from ring_flash_attn import llama3_flash_attn_prepare_cu_seqlens, llama3_flash_attn_varlen_func  # noqa: PLC0415  (optional CUDA-only dependency)

    cu = cu_seqlens.to(device=q.device, dtype=torch.int32)
    cu_q, cu_k, max_q, max_k, local_k_slice = llama3_flash_attn_prepare_cu_seqlens(
        cu, causal=True, rank=dist.get_rank(group), world_size=dist.get_world_size(group))
    out = llama3_flash_attn_varlen_func(_to_thd(q), _to_thd(k), _to_thd(v), cu_q, cu_k, max_q, max_k,
                                        heads_k_stride=k.shape[1], local_k_slice=local_k_slice,
                                        softmax_scale=scale, causal=True, group=group)
    return _from_thd(out)
