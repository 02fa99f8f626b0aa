"""The LongAlign-weighted language-modelling loss, computed chunk by chunk from hidden states.

Target (LongAlign, arXiv 2401.18058, "loss weighting"): over the M sequences of one optimizer step,

    L = (1/M) * sum_i (1/N_i) * sum_{t in targets(i)} CE_t

where N_i is the number of target tokens of sequence i. Pack files carry ``loss_weights`` = 1/N_i
on the N_i labelled tokens of sequence i (aligned with ``labels``, i.e. *not* shifted, as in HF).
:func:`shift_targets` turns labels + weights into next-token targets without crossing sequence
boundaries; :func:`chunked_lm_loss` returns the weighted *sum*; the trainer divides it by the
global M of the step (all DP ranks, all accumulation steps), so pack files never depend on the
GPU count. ``weights=None`` is the plain token mode (sum of CE; divide by the global target count).

Memory: full (tokens x vocab) logits are never materialised, in forward *or* backward: the
autograd function below stores only the inputs and recomputes each chunk's logits in backward.
Only rows whose target is not -100 are ever multiplied with the head (prompt tokens cost nothing).
"""

from __future__ import annotations

import torch

from longctx.core.labels import IGNORE_INDEX
from longctx.core.sizing import auto_loss_chunk


def shift_targets(
    labels: torch.Tensor, loss_weights: torch.Tensor | None, position_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Next-token targets aligned with positions, never crossing a sequence boundary.

    ``targets[t] = labels[t+1]`` when token ``t+1`` belongs to the same sequence as ``t``
    (``position_ids[t+1] != 0``), else -100; ``weights`` are shifted identically (0 where the
    target is -100). The last position of the row has no target. Works on ``[T]`` and ``[B, T]``.
    Call it on whole packs *before* sharding them across sequence-parallel ranks: afterwards every
    rank holds (input, target) pairs and the loss needs no cross-rank shift.
    """
    if labels.shape != position_ids.shape:
        raise ValueError(f"labels {tuple(labels.shape)} and position_ids {tuple(position_ids.shape)} differ in shape")
    if loss_weights is not None and loss_weights.shape != labels.shape:
        raise ValueError(f"loss_weights {tuple(loss_weights.shape)} and labels {tuple(labels.shape)} differ in shape")
    same_seq = position_ids[..., 1:] != 0
    targets = torch.full_like(labels, IGNORE_INDEX)
    targets[..., :-1] = torch.where(same_seq, labels[..., 1:], torch.full_like(labels[..., 1:], IGNORE_INDEX))
    if loss_weights is None:
        return targets, None
    weights = torch.zeros_like(loss_weights)
    weights[..., :-1] = torch.where(same_seq, loss_weights[..., 1:], torch.zeros_like(loss_weights[..., 1:]))
    weights = torch.where(targets == IGNORE_INDEX, torch.zeros_like(weights), weights)
    return targets, weights


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half/bfloat16 inputs, float64 stays float64 (the oracle tests run in float64)."""
    return torch.promote_types(dtype, torch.float32)


def _chunk_logits(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, cdt: torch.dtype) -> torch.Tensor:
    # The matmul runs in w's dtype, the matmul dtype (tensor cores for bf16); the softmax math in cdt.
    logits = h.to(w.dtype) @ w.t()
    if b is not None:
        logits = logits + b.to(w.dtype)
    return logits.to(cdt)


def _matmul_dtype(h: torch.Tensor) -> torch.dtype:
    """The autocast dtype when autocast is on for ``h``'s device (a custom autograd function is outside
    autocast's reach, in forward and in backward), else ``h``'s own dtype."""
    device = h.device.type
    if h.dtype == torch.float32 and torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return h.dtype


class _ChunkedLMLoss(torch.autograd.Function):
    """sum_t w_t * CE(h_t @ W^T + b, y_t) over pre-selected rows, chunk by chunk; recomputes in backward."""

    @staticmethod
    def forward(ctx, h, weight, bias, targets, w, chunk_size, mm_dtype):  # noqa: D401 - autograd signature
        cdt = _compute_dtype(h.dtype)
        wm = weight.to(mm_dtype)  # one cast of the head per call (not per chunk); a no-op without autocast
        total = torch.zeros((), dtype=cdt, device=h.device)
        for s in range(0, h.shape[0], chunk_size):
            logits = _chunk_logits(h[s : s + chunk_size], wm, bias, cdt)
            y = targets[s : s + chunk_size]
            ce = torch.logsumexp(logits, dim=-1) - logits.gather(1, y[:, None]).squeeze(1)
            total = total + (ce * w[s : s + chunk_size].to(cdt)).sum()
        ctx.save_for_backward(h, weight, bias if bias is not None else torch.empty(0), targets, w)
        ctx.has_bias = bias is not None
        ctx.chunk_size = chunk_size
        ctx.mm_dtype = mm_dtype
        return total

    @staticmethod
    def backward(ctx, grad_out):
        h, weight, bias, targets, w = ctx.saved_tensors
        bias = bias if ctx.has_bias else None
        cdt = _compute_dtype(h.dtype)
        mdt = ctx.mm_dtype
        wm = weight.to(mdt)
        need_h, need_w, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        grad_h = torch.empty_like(h) if need_h else None
        grad_w = torch.zeros_like(weight, dtype=cdt) if need_w else None
        grad_b = torch.zeros_like(bias, dtype=cdt) if (need_b and bias is not None) else None
        g = grad_out.to(cdt)
        for s in range(0, h.shape[0], ctx.chunk_size):
            hc = h[s : s + ctx.chunk_size]
            logits = _chunk_logits(hc, wm, bias, cdt)
            # d CE / d logits = softmax - onehot(y); scaled by the token weight and the upstream grad.
            dlogits = torch.softmax(logits, dim=-1)
            y = targets[s : s + ctx.chunk_size]
            dlogits[torch.arange(y.shape[0], device=y.device), y] -= 1
            dlogits *= (w[s : s + ctx.chunk_size].to(cdt) * g)[:, None]
            if need_h:
                grad_h[s : s + ctx.chunk_size] = (dlogits.to(mdt) @ wm).to(h.dtype)
            if need_w and mdt == cdt:  # in place: no V x H temporary per chunk
                grad_w.addmm_(dlogits.t(), hc.to(cdt))
            elif need_w:  # a bf16 matmul (tensor cores), summed over chunks in float32
                grad_w += dlogits.to(mdt).t() @ hc.to(mdt)
            if grad_b is not None:
                grad_b += dlogits.sum(0)
        return (
            grad_h,
            grad_w.to(weight.dtype) if grad_w is not None else None,
            grad_b.to(bias.dtype) if grad_b is not None else None,
            None,
            None,
            None,
            None,
        )


def target_rows(targets: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Indices (into the flattened positions) of the rows the loss reads: a target, and a non-zero weight.

    Computing them is a data-dependent shape: on a GPU a device->host sync. The trainer computes them
    on the host, where its batch is built, and hands them to :func:`chunked_lm_loss` as ``rows``."""
    keep = targets.reshape(-1) != IGNORE_INDEX
    if weights is not None:
        keep &= weights.reshape(-1) != 0
    return keep.nonzero().squeeze(1)


def chunked_lm_loss(
    hidden: torch.Tensor,
    head_weight: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor | None = None,
    *,
    head_bias: torch.Tensor | None = None,
    chunk_size: int = 0,
    rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """Scalar SUM over positions of ``w_t * cross_entropy(hidden_t @ head_weight.T + head_bias, target_t)``.

    ``hidden`` is ``[..., T, H]`` (final hidden states, after the last norm), ``targets`` ``[..., T]``
    already shifted by :func:`shift_targets`; positions with target -100 are skipped.
    ``weights=None`` is token mode (w_t = 1: the trainer divides by the global target-token count);
    with LongAlign weights the trainer divides by the global sequence count M of the step.
    Logits exist for at most ``chunk_size`` tokens at a time, in forward and backward (0 = the
    :func:`auto_loss_chunk` rule from the head's vocabulary and hidden sizes); the
    log-softmax is computed in float32 for bf16/fp16 inputs (float64 stays float64); the head matmuls run
    in the autocast dtype when called under autocast (forward and backward alike), else in the input
    dtype. Returns a
    0-dim tensor in that compute dtype, differentiable w.r.t. ``hidden``, ``head_weight``, ``head_bias``.
    ``rows``: :func:`target_rows` of ``targets``/``weights``, when the caller already has them (on
    the device of ``hidden``); computed here otherwise (a device->host sync on a GPU).
    """
    if hidden.shape[:-1] != targets.shape:
        raise ValueError(f"hidden {tuple(hidden.shape)} does not match targets {tuple(targets.shape)}")
    if weights is not None and weights.shape != targets.shape:
        raise ValueError(f"weights {tuple(weights.shape)} does not match targets {tuple(targets.shape)}")
    if chunk_size < 0:
        raise ValueError(f"chunk_size must be positive (or 0 = automatic), got {chunk_size}")
    if chunk_size == 0:
        chunk_size = auto_loss_chunk(head_weight.shape[0], head_weight.shape[1])
    h = hidden.reshape(-1, hidden.shape[-1])
    y = targets.reshape(-1)
    idx = target_rows(targets, weights) if rows is None else rows
    w = weights.reshape(-1)[idx] if weights is not None else torch.ones(idx.shape[0], dtype=torch.float32, device=h.device)
    # Index-select (not boolean mask) so that backward scatters grads back to the right rows.
    return _ChunkedLMLoss.apply(h.index_select(0, idx), head_weight, head_bias, y[idx].long(), w, int(chunk_size),
                                _matmul_dtype(h))


def full_lm_loss(
    hidden: torch.Tensor,
    head_weight: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor | None = None,
    *,
    head_bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """The same sum as :func:`chunked_lm_loss` with full logits: the CPU reference the tests compare with."""
    logits = hidden @ head_weight.t()
    if head_bias is not None:
        logits = logits + head_bias
    logits = logits.to(_compute_dtype(hidden.dtype))
    ce = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).long(), ignore_index=IGNORE_INDEX, reduction="none"
    )
    if weights is None:
        return ce.sum()
    return (ce * weights.reshape(-1).to(ce.dtype)).sum()
