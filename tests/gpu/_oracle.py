"""The yardstick of the GPU tests: ``longctx.doctor.oracle`` (relative error against a float64 CPU
reference, seeded inputs), plus the packed batch and tiny model the model tests use.

Every CUDA result is compared with its float64 CPU oracle on the SAME inputs. Pure functions of
tensors, tested on the CPU (tests/gpu_harness/test_gpu_run.py), so a verdict means something before any
device time is spent.
"""

from __future__ import annotations

import torch

# the comparison and the seeded inputs live in the product (``longctx doctor`` uses them); re-exported here
from longctx.doctor.oracle import (  # noqa: F401
    DTYPE_NAMES,
    GRAD_NORM_TOL,
    TOL,
    Comparison,
    compare,
    cu_from_lengths,
    doc_lengths,
    qkv,
)


def packed_batch(t: int, vocab: int = 256, seed: int = 5) -> dict:
    """One packed row of ``t`` random tokens: several documents, positions restarting at each."""
    g = torch.Generator().manual_seed(seed)
    pos = torch.cat([torch.arange(n) for n in doc_lengths(t, max(4, t // 3))])[None]
    ids = torch.randint(0, vocab, (1, t), generator=g)
    return {"input_ids": ids, "position_ids": pos, "labels": ids.clone()}


def tiny_model(attn: str, seed: int = 0, **kw):
    """A seeded random tiny Llama (``longctx.models.tiny.tiny_config``) with attention ``attn``."""
    from transformers import AutoModelForCausalLM

    from longctx.distributed.hf_attention import register
    from longctx.models.tiny import tiny_config

    register()  # longctx_varlen, with transformers
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(tiny_config("llama", **kw), attn_implementation=attn)
