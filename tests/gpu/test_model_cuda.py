"""A packed tiny Llama (``longctx_varlen``) under CUDA bf16 autocast vs the same model in float32 on the CPU."""

from __future__ import annotations

import torch

from _cases import tiny_llama_case
from _oracle import GRAD_NORM_TOL, TOL


def test_tiny_llama_bf16_autocast_loss_matches_fp32_cpu(device, sizes, check_close, record_property):
    pairs, seen = tiny_llama_case(device, t=sizes.llama_tokens)
    record_property("attention_qkv_dtypes", seen)
    check_close(*pairs["loss"], TOL[torch.bfloat16])


def test_tiny_llama_bf16_autocast_grad_norm_matches_fp32_cpu(device, sizes, check_close):
    pairs, _ = tiny_llama_case(device, t=sizes.llama_tokens)
    check_close(*pairs["grad_norm"], GRAD_NORM_TOL)
