"""Sliding-window perplexity vs context length (Press et al.; the YaRN paper's protocol).

For an evaluation length L the window is L tokens and moves by ``stride``; each window scores only
the tokens not scored by the previous one, so every token is predicted once, with up to L tokens of
context. All lengths score the same span (the first ``max_tokens`` tokens), so the curve compares
like with like.

Memory: the model's body runs on the window, then the output head runs on ``chunk_size``
positions at a time, so the full ``L x vocab`` logits never exist (at 128K tokens and a 128K vocab
they would be 64 GB in fp32).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from tqdm import tqdm

from eval_longbench.results import ResultStore
from longctx.core.errors import LongctxError
from longctx.core.loss import chunked_lm_loss


def chunked_nll(hidden: torch.Tensor, head: torch.nn.Module, targets: torch.Tensor, *, chunk_size: int = 1024,
                softcap: float | None = None) -> torch.Tensor:
    """Sum of next-token NLL, computing ``head(hidden)`` in fp32 on ``chunk_size`` rows at a time.

    ``hidden``: ``[N, H]`` states that predict ``targets`` ``[N]``. A plain linear head goes through
    the trainer's :func:`longctx.core.loss.chunked_lm_loss` (one loss implementation for train and eval);
    other heads (soft-capped logits, custom modules) through the loop below.
    """
    if softcap is None and type(head) is torch.nn.Linear:
        return chunked_lm_loss(hidden, head.weight, targets, head_bias=head.bias, chunk_size=chunk_size).double()
    total = torch.zeros((), dtype=torch.float64, device=hidden.device)
    for s in range(0, hidden.shape[0], chunk_size):
        logits = head(hidden[s:s + chunk_size]).float()
        if softcap:  # Gemma-2 style final-logit soft-capping
            logits = torch.tanh(logits / softcap) * softcap
        total += F.cross_entropy(logits, targets[s:s + chunk_size], reduction="sum").double()
    return total


@torch.inference_mode()
def window_nll(model, ids: torch.Tensor, n_targets: int, *, chunk_size: int = 1024) -> float:
    """NLL summed over the last ``n_targets`` tokens of the 1-D window ``ids`` (each given all earlier ones)."""
    if not 0 < n_targets < ids.numel():
        raise ValueError(f"n_targets={n_targets} must be in [1, {ids.numel() - 1}]")
    body = getattr(model, model.base_model_prefix)
    hidden = body(input_ids=ids[None]).last_hidden_state[0]
    n = ids.numel()
    softcap = getattr(model.config, "final_logit_softcapping", None)
    return float(chunked_nll(hidden[n - n_targets - 1:n - 1], model.get_output_embeddings(), ids[n - n_targets:],
                             chunk_size=chunk_size, softcap=softcap))


def window_plan(n_tokens: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """``(begin, end, n_targets)`` per window: each token after the first is a target exactly once.

    Each new window ends ``stride`` tokens after the previous one and scores those tokens. A target
    needs at least one token of context inside its window, so the step is at most ``window - 1``
    (the usual loop with ``stride == window`` silently skips one token per window).
    """
    if window < 2 or stride < 1 or stride > window:
        raise LongctxError(f"window {window} / --stride {stride}: need window >= 2 and 1 <= stride <= window")
    end = min(window, n_tokens)
    plan = [(0, end, end - 1)] if end > 1 else []
    step = min(stride, window - 1)
    while end < n_tokens:
        new_end = min(end + step, n_tokens)
        plan.append((max(0, new_end - window), new_end, new_end - end))
        end = new_end
    return plan


def sliding_window_ppl(model, token_ids: Sequence[int] | torch.Tensor, window: int, stride: int, *,
                       chunk_size: int = 1024, progress: bool = False) -> dict:
    """Perplexity of ``token_ids`` with windows of ``window`` tokens moved by ``stride``."""
    ids = torch.as_tensor(token_ids, dtype=torch.long, device=next(model.parameters()).device)
    plan = window_plan(ids.numel(), window, stride)
    nll, count = 0.0, 0
    for begin, end, n_t in tqdm(plan, desc=f"ppl @{window}", disable=not progress, leave=False):
        nll += window_nll(model, ids[begin:end], n_t, chunk_size=chunk_size)
        count += n_t
    return {"tokens": count, "windows": len(plan), "nll": nll / count, "ppl": math.exp(nll / count)}


def run_ppl(model, token_ids: Sequence[int], lengths: Sequence[int], store: ResultStore, *, model_name: str,
            stride: int = 256, max_tokens: int | None = None, chunk_size: int = 1024, progress: bool = True,
            model_id: str | None = None) -> list[dict]:
    """Perplexity at each length over the first ``max_tokens`` tokens (default: the largest length).

    Rows are saved in ``store`` as they finish; a rerun skips lengths already there. ``model_id``
    (:func:`eval_longbench.fingerprint.model_fingerprint`) makes a rerun with another checkpoint under
    the same ``model_name`` an error instead of a reuse.
    """
    if model_id is not None:
        store.bind_model(model_name, model_id)
    need = max(lengths) if max_tokens is None else max_tokens
    if need < 2:
        what = f"--lengths: the largest length, {need}," if max_tokens is None else f"--max-tokens: {need}"
        raise LongctxError(f"{what} is below 2 (perplexity needs a token to score after the first)")
    if chunk_size < 1:
        raise LongctxError(f"--chunk-size: must be at least 1, got {chunk_size}")
    if len(token_ids) < need:
        raise LongctxError(f"--text: has {len(token_ids)} tokens; lengths up to {max(lengths)} (or --max-tokens) need {need}")
    span = list(token_ids[:need])
    rows = []
    for L in tqdm(lengths, desc=f"ppl {model_name}", disable=not progress):
        key = f"{model_name}|{L}"
        if key not in store:
            r = sliding_window_ppl(model, span, L, min(stride, L), chunk_size=chunk_size, progress=progress)
            store.put(key, {"model": model_name, "length": L, "stride": min(stride, L), **r})
        rows.append(store.get(key))
    return rows


def rows_to_csv(rows: Sequence[dict]) -> str:
    cols = ["model", "length", "stride", "tokens", "windows", "nll", "ppl"]
    lines = [",".join(cols)]
    for r in rows:
        lines.append(",".join(_csv_cell(r[c]) for c in cols))
    return "\n".join(lines) + "\n"


def _csv_cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    s = str(v)
    return '"' + s.replace('"', '""') + '"' if any(c in s for c in ',"\n') else s
