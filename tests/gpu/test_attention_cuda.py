"""Attention kernels on CUDA vs float64 CPU oracles: packed varlen, the block kernel, ring attention."""

from __future__ import annotations

import pytest
import torch

from _cases import auto_block_kernel, block_case, flash_in_use, ring_case, varlen_case
from _oracle import DTYPE_NAMES, TOL
from longctx.distributed.layouts import LAYOUTS

VARLEN_OUTPUTS = ("out", "dq", "dk", "dv")
BF16, FP16, FP32 = torch.bfloat16, torch.float16, torch.float32


@pytest.mark.parametrize("output", VARLEN_OUTPUTS)
@pytest.mark.parametrize("dtype", [BF16, FP16, FP32], ids=DTYPE_NAMES.get)
def test_varlen_attention_matches_float64_oracle(device, dtype, output, check_close, record_property):
    """The default path (flash-attn when installed, else per-document SDPA), GQA 4/2, several documents."""
    if dtype == FP16 and device != "cuda":
        pytest.skip("fp16 is checked on CUDA only")
    record_property("path", "flash-attn" if flash_in_use(device) else "default")
    check_close(*varlen_case(device, dtype)[output], TOL[dtype])


@pytest.mark.parametrize("output", VARLEN_OUTPUTS)
def test_varlen_attention_2k_pack_matches_float64_oracle(device, output, cuda_only, check_close):
    check_close(*varlen_case(device, BF16, t=2048)[output], TOL[BF16])


@pytest.mark.parametrize("output", VARLEN_OUTPUTS)
def test_varlen_attention_torch_block_path_matches_float64_oracle(device, output, cuda_only, check_close):
    """kernel="torch": the block-plan path the ring variants run on CUDA without ring-flash-attn."""
    check_close(*varlen_case(device, BF16, kernel="torch")[output], TOL[BF16])


def _flash_varlen(q, k, v, cu):
    from longctx.attention import cuda

    return cuda.flash_varlen(q, k, v, cu, q.shape[-1] ** -0.5)


@pytest.mark.parametrize("output", VARLEN_OUTPUTS)
def test_flash_attn_varlen_wrapper_matches_float64_oracle(device, output, cuda_only, check_close):
    pytest.importorskip("flash_attn", reason="flash-attn not installed (no binary wheel; scripts/README.md)")
    check_close(*varlen_case(device, BF16, attn_fn=_flash_varlen)[output], TOL[BF16])


@pytest.mark.parametrize("output", ("out", "lse"))
@pytest.mark.parametrize("causal, tq, tk", [(True, 96, 96), (False, 64, 160)], ids=["causal-96x96", "full-64x160"])
@pytest.mark.parametrize("dtype", [BF16, FP32], ids=DTYPE_NAMES.get)
def test_block_attention_forward_matches_float64_kernel(device, dtype, causal, tq, tk, output, check_close):
    check_close(*block_case(device, dtype, causal, tq, tk)[output], TOL[dtype])


def _ring(device: str, sizes, layout: str):
    dtype = BF16 if device == "cuda" else FP32
    return dtype, ring_case(device, dtype, layout, timeout=sizes.ring_timeout)


@pytest.mark.parametrize("output", VARLEN_OUTPUTS)
@pytest.mark.parametrize("layout", tuple(LAYOUTS))
def test_ring_attention_matches_float64_oracle(device, sizes, layout, output, check_close, record_property):
    """On the first process group that forms (2 ranks via NCCL or gloo, else 1 NCCL rank: the CUDA math only)."""
    dtype, run = _ring(device, sizes, layout)
    if not run.pairs:
        pytest.skip("no process group ran: " + "; ".join(run.reasons))
    record_property("ranks", f"{run.world} ({run.backend})")
    record_property("block_kernel", auto_block_kernel(device, dtype))
    check_close(*run.pairs[output], TOL[dtype])


@pytest.mark.parametrize("layout", tuple(LAYOUTS))
def test_ring_attention_runs_on_two_ranks_sharing_the_device(device, sizes, layout):
    _, run = _ring(device, sizes, layout)
    if run.world < 2:
        pytest.skip("the 2-rank group failed: " + "; ".join(run.reasons))
