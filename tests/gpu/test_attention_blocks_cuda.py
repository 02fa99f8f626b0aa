"""The O(T)-memory block kernels on CUDA (torch's SDPA ops with lse, ``longctx.attention.sdpa_kernels``)
and FlexAttention's document mask, each vs a float64 CPU oracle. These are the checks that turn the
CUDA kernels from UNVERIFIED into verified; on the CPU run only the CPU "flash" op (and flex forward) run."""

from __future__ import annotations

import pytest
import torch

from _cases import kernel_case, varlen_case
from _oracle import DTYPE_NAMES, TOL

OUTPUTS = ("out", "lse", "dq", "dk", "dv")
VARLEN_OUTPUTS = ("out", "dq", "dk", "dv")
BF16, FP32 = torch.bfloat16, torch.float32
KERNEL_DTYPES = [("flash", BF16), ("efficient", BF16), ("efficient", FP32), ("cudnn", BF16)]


def _runnable(device: str, name: str, dtype: torch.dtype) -> None:
    from longctx.attention import sdpa_kernels as sk

    if device != "cuda":
        if name != "flash":
            pytest.skip(f"{name}: a CUDA-only op (this run is on the CPU)")
        return
    why = sk.refusal(name, sk.device_info(torch.device("cuda")), dtype, 64)
    if why:
        pytest.skip(why)


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("causal, tq, tk", [(True, 197, 197), (False, 96, 229)], ids=["causal-197", "full-96x229"])
@pytest.mark.parametrize("name, dtype", KERNEL_DTYPES, ids=[f"{n}-{DTYPE_NAMES[d]}" for n, d in KERNEL_DTYPES])
def test_sdpa_block_kernel_matches_float64(device, name, dtype, causal, tq, tk, output, check_close, record_property):
    """Forward (out, lse with padding/layout normalised) and backward from the final out/lse, GQA 4/2."""
    _runnable(device, name, dtype)
    record_property("kernel", name)
    check_close(*kernel_case(device, dtype, name, causal, tq, tk)[output], TOL[dtype])


@pytest.mark.parametrize("output", VARLEN_OUTPUTS)
@pytest.mark.parametrize("name", ["flash", "efficient", "cudnn"])
def test_varlen_block_plan_on_sdpa_kernel_matches_float64(device, name, output, check_close):
    """varlen_attention(kernel=name): the block plan the ring layouts run (lse merge + per-block backward)."""
    _runnable(device, name, BF16)
    check_close(*varlen_case(device, BF16, kernel=name)[output], TOL[BF16])


@pytest.mark.parametrize("output", VARLEN_OUTPUTS)
def test_flex_document_mask_matches_float64(device, output, check_close):
    """varlen_attention(kernel="flex"): compiled FlexAttention with a document mask (CUDA); fwd only on CPU."""
    if device != "cuda" and output != "out":
        pytest.skip("torch has no FlexAttention backward on CPU")
    if device != "cuda":
        from _oracle import cu_from_lengths, doc_lengths, qkv

        from longctx.attention import full_attention_reference, varlen_attention

        q, k, v, _ = qkv(96, 4, 2, 32, FP32, seed=1)
        cu = cu_from_lengths(doc_lengths(96, 24))
        with torch.no_grad():
            got = varlen_attention(q.float(), k.float(), v.float(), cu, kernel="flex")
        check_close(got, full_attention_reference(q, k, v, cu), TOL[FP32])
        return
    check_close(*varlen_case(device, BF16, kernel="flex")[output], TOL[BF16])
