"""One optimizer step: forward on (sharded) packs, LongAlign-weighted chunked loss, exact reductions.

Loss normalisation (LongAlign, arXiv 2401.18058): the step's loss is
``sum over all ranks and micro-batches of chunked_lm_loss(...) / M`` where ``M`` is the number of
sequences with at least one target token in the whole optimizer step (every DP rank, every
accumulation micro-batch), counted on whole packs and all-reduced over the DP group (ranks of one
SP group hold the same packs). Token mode divides by the global target-token count instead.
Because each rank back-propagates ``local_sum / M``, summing gradients over *all* ranks (DP x SP)
gives exactly the gradient of the global loss: no extra 1/dp factor, no dependence on the split.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from longctx.attention.boundaries import flat_cu_seqlens
from longctx.core.errors import LongctxError
from longctx.core.labels import IGNORE_INDEX
from longctx.core.loss import chunked_lm_loss, shift_targets, target_rows
from longctx.distributed.hf_attention import SP_KWARG, SequenceParallel
from longctx.distributed.layouts import DEFAULT_LAYOUT
from longctx.distributed.mesh import Groups
from longctx.distributed.sharding import shard_for_layout
from longctx.models.registry import refuse_logit_transforms


@dataclass
class StepOptions:
    loss_mode: str = "weighted"  # "weighted" | "token"
    loss_chunk: int = 0  # 0 = longctx.core.sizing.auto_loss_chunk
    layout: str = DEFAULT_LAYOUT
    grad_clip: float = 0.0
    autocast_dtype: torch.dtype | None = None  # bf16 on CUDA, None (float32) on CPU
    pad_token_id: int = 0
    reduce_grads: bool = True  # False when FSDP reduce-scatters the gradients itself


def count_sequences(weights: torch.Tensor, position_ids: torch.Tensor) -> int:
    """Sequences (rows x position restarts) owning at least one target with non-zero weight."""
    seq_id = (position_ids == 0).long().cumsum(-1)  # target t belongs to the sequence of token t
    rows = torch.arange(seq_id.shape[0], device=seq_id.device)[:, None].expand_as(seq_id)
    key = (rows * (seq_id.max() + 2) + seq_id)[weights != 0]
    return int(torch.unique(key).numel())


def prepare(batch: dict, opts: StepOptions) -> tuple[dict, int]:
    """Shift labels to next-token targets on the whole packs; return (tensors, normaliser share)."""
    weighted = opts.loss_mode == "weighted"
    targets, weights = shift_targets(batch["labels"], batch["loss_weights"] if weighted else None, batch["position_ids"])
    if weighted:
        share = count_sequences(weights, batch["position_ids"])
    else:
        share = int((targets != IGNORE_INDEX).sum())
    t = {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"], "labels": targets}
    if weights is not None:
        t["loss_weights"] = weights
    return t, share


def check_plain_output_head(config: Any) -> None:
    """Refuse models whose logits are transformed after the head (Gemma-2 soft-capping, Cohere scale...: the
    fields every family is checked for and those the model's family declares, ``longctx.models``); the
    chunked loss computes hidden @ W^T (+ b) only, so training them would optimise another objective."""
    refuse_logit_transforms(config, "model.path: config.json")


class LMLoss(torch.nn.Module):
    """The model plus the chunked loss as one module: hidden states from the base model (no logits), then
    ``chunked_lm_loss``. Being one module lets FSDP's root hooks cover the output head as well.

    ``forward(t, sp=None, cu_seqlens=None)``: ``sp`` (a ``SequenceParallel`` of ``hf_attention``) goes to
    every attention layer as the ``longctx_sp`` keyword of the model call, so gradient checkpointing
    keeps it with each layer's inputs and every recompute sees it, on any thread; ``cu_seqlens`` (host
    int32 boundaries of the flattened batch, single-process ``longctx_*`` attention only) spares the
    attention a device->host read of ``position_ids``.
    """

    def __init__(self, model: torch.nn.Module, opts: "StepOptions"):
        super().__init__()
        check_plain_output_head(model.config)
        self.model = model
        self.opts = opts

    def forward(self, t: dict, sp: Any = None, cu_seqlens: torch.Tensor | None = None) -> torch.Tensor:
        opts = self.opts
        head = self.model.get_output_embeddings()
        extra: dict = {}
        if sp is not None:
            extra[SP_KWARG] = sp
        elif cu_seqlens is not None:
            n = int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
            extra.update(cu_seq_lens_q=cu_seqlens, cu_seq_lens_k=cu_seqlens, max_length_q=n, max_length_k=n)
        # cache_enabled=False: autocast's cache would keep a bf16 copy of every layer's weights until the
        # forward ends (+2 bytes per parameter at the peak); each weight is cast once per forward anyway
        amp = (torch.autocast(t["input_ids"].device.type, dtype=opts.autocast_dtype, cache_enabled=False)
               if opts.autocast_dtype is not None else contextlib.nullcontext())
        with amp:
            out = self.model.base_model(input_ids=t["input_ids"], position_ids=t["position_ids"], use_cache=False,
                                        **extra)
            hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
            # Inside autocast: the head's matmul runs in the compute dtype (bf16 on CUDA: tensor cores,
            # half the bytes of the head read per chunk); the log-softmax is float32 inside the loss.
            return chunked_lm_loss(hidden, head.weight, t["labels"], t.get("loss_weights"),
                                   head_bias=getattr(head, "bias", None), chunk_size=opts.loss_chunk,
                                   rows=t.get("target_rows"))


def _shards(t: dict, groups: Groups, opts: StepOptions) -> list[tuple[dict, Any]]:
    """Per-forward local inputs, computed on the HOST: the whole batch (no SP), or each row sharded
    over the SP group; with each, its host int32 boundaries (GLOBAL ones for SP)."""
    if groups.sp is None:
        return [(t, flat_cu_seqlens(t["position_ids"]))]

    m = groups.mesh
    out = []
    for b in range(t["input_ids"].shape[0]):
        row = {k: v[b : b + 1] for k, v in t.items()}
        sh = shard_for_layout(row, opts.layout, m.sp_rank, m.sp_degree, pad_token_id=opts.pad_token_id)
        cu = sh.pop("cu_seqlens")
        sh.pop("indices")
        out.append((sh, cu))
    return out


def _all_reduce(x: torch.Tensor, group: Any) -> torch.Tensor:
    if group is not None:
        dist.all_reduce(x, group=group)
    return x


def all_reduce_grads(params: list[torch.nn.Parameter], group: Any) -> None:
    """Sum gradients over ``group`` in one flat buffer (SP ranks hold parts of each sequence)."""
    if group is None:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, group=group)
    i = 0
    for g in grads:
        g.copy_(flat[i : i + g.numel()].view_as(g))
        i += g.numel()


def train_step(loss_module: LMLoss, optimizer: torch.optim.Optimizer, scheduler: Any, micro_batches: list[dict],
               groups: Groups, opts: StepOptions, device: torch.device | str = "cpu") -> dict:
    """Accumulate ``micro_batches`` (this rank's share of the step), reduce, clip and step.

    Returns ``loss`` (the global step loss, identical on every rank), ``normaliser`` (global M or
    token count), ``grad_norm``, ``tokens`` (global non-padding tokens) and ``lr``.
    """
    prepared = []
    share = 0
    tokens = 0
    for mb in micro_batches:
        t, s = prepare({k: mb[k] for k in ("input_ids", "labels", "position_ids", "loss_weights")}, opts)
        prepared.append(t)  # stays on the host until sharded: boundaries never leave it
        share += s
        tokens += sum(sum(r) for r in mb["seq_lens"])
    # reduction tensors live on the compute device: NCCL reduces only CUDA tensors (gloo: device is cpu)
    counts = _all_reduce(torch.tensor([float(share), float(tokens)], dtype=torch.float64, device=device), groups.dp)
    norm = counts[0].item()
    params = [p for p in loss_module.parameters() if p.requires_grad]
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    longctx_attention = str(getattr(loss_module.model.config, "_attn_implementation", "")).startswith("longctx")
    for t in prepared:
        for local, cu in _shards(t, groups, opts):
            local["target_rows"] = target_rows(local["labels"], local.get("loss_weights"))  # on the host: no sync
            local = {k: v.to(device, non_blocking=True) for k, v in local.items()}
            sp = None
            if groups.sp is not None:
                sp = SequenceParallel(groups.sp, layout=opts.layout, cu_seqlens=cu, sub_groups=groups.sub)
            s = loss_module(local, sp=sp, cu_seqlens=cu if longctx_attention and sp is None else None)
            if norm > 0:
                (s / norm).backward()  # the recomputes find sp in the checkpoint's saved kwargs, any thread
            loss_sum += s.detach().to(torch.float64)  # stays on the device: no sync per micro-batch
    if opts.reduce_grads:
        all_reduce_grads(params, groups.world)
    loss_sum = _all_reduce(loss_sum.reshape(1), groups.world)[0]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, opts.grad_clip if opts.grad_clip > 0 else float("inf"))
    grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
    lr = optimizer.param_groups[0]["lr"]
    if norm > 0:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if scheduler is not None:
        scheduler.step()
    return {"loss": loss_sum.item() / norm if norm > 0 else float("nan"), "normaliser": norm,
            "grad_norm": float(grad_norm), "tokens": int(counts[1].item()), "lr": lr}
