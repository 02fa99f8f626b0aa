"""Fold one block's attention result into a running (out, lse) pair by log-sum-exp.

With ``m = logaddexp(lse, block_lse)``: ``out = out * exp(lse - m) + block_out * exp(block_lse - m)``
and ``lse = m``. This form never exponentiates a large positive number (stable in float32; see the
discussion linked from ring-flash-attn's ``utils.py``). Rows that have seen no key yet carry
``lse = -inf``; when both sides are -inf the row stays (0, -inf) instead of becoming NaN.
"""

from __future__ import annotations

import torch


def merge_block(out: torch.Tensor, lse: torch.Tensor, block_out: torch.Tensor, block_lse: torch.Tensor) -> None:
    """In place: ``out [B,H,T,D]`` and ``lse [B,H,T]`` (accumulation dtype) absorb a block's result."""
    block_lse = block_lse.to(lse.dtype)
    new_lse = torch.logaddexp(lse, block_lse)
    safe = torch.where(torch.isneginf(new_lse), torch.zeros_like(new_lse), new_lse)
    w_old = torch.exp(lse - safe).unsqueeze(-1)
    w_new = torch.exp(block_lse - safe).unsqueeze(-1)
    out.mul_(w_old).add_(block_out.to(out.dtype) * w_new)
    lse.copy_(new_lse)
