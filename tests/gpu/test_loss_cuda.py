"""The chunked LM loss on CUDA vs the full-logits loss in float64 on the CPU (LongAlign weights, -100 targets)."""

from __future__ import annotations

import pytest
import torch

from _cases import loss_case
from _oracle import DTYPE_NAMES, TOL


@pytest.mark.parametrize("output", ("value", "d_hidden", "d_head"))
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=DTYPE_NAMES.get)
def test_chunked_lm_loss_matches_float64_full_loss(device, sizes, dtype, output, check_close):
    check_close(*loss_case(device, dtype, t=sizes.loss_tokens)[output], TOL[dtype])
