"""Transformers glue: ``attn_implementation="longctx_varlen" | "longctx_ring"`` and the SP context.

Both functions follow transformers' attention-interface signature
``fn(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs)`` with
``query`` ``[B, H, T, D]``, ``key``/``value`` ``[B, Hkv, T, D]``, and return ``([B, T, H, D], None)``,
so unmodified Llama / Qwen2 / Glm modeling code calls them once :func:`register` has run (the
trainer calls it before loading the model).

It sits above both the kernels (:mod:`longctx.attention`) and the layout registry: ``longctx_ring``
is generic, it dispatches to the kernel the context's layout row names, with that row's extra
arguments and the sub-groups the row declares.

Document boundaries for ``longctx_varlen`` (and ``longctx_ring`` without a context):
1. ``cu_seq_lens_q`` / ``cu_seq_lens_k`` kwargs (``model(..., cu_seq_lens_q=..., cu_seq_lens_k=...,
   max_length_q=..., max_length_k=...)`` forwards them to every attention layer), else
2. restarts of ``position_ids`` (pos[i] != pos[i-1] + 1). Transformers only passes packed
   ``position_ids`` through when no cache is built: train with ``use_cache=False``.
Under ``sequence_parallel``, ``longctx_ring`` runs the attention of the context's layout (its row in
:mod:`longctx.distributed.layouts`), which also says what boundaries it needs: the contiguous
layouts use GLOBAL ones (the context's ``cu_seqlens``, else the ranks' ``position_ids`` all-gathered
once per forward); a single-document layout is one causal sequence per row (plus padding).

A padded 2-D ``attention_mask`` is refused (express padding as its own segment instead).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface

from longctx.attention import varlen  # the module: varlen.varlen_attention is looked up per call (tests spy on it)
from longctx.attention.boundaries import flat_cu_seqlens
from longctx.distributed.layouts import DEFAULT_LAYOUT, LAYOUTS, Layout, get_layout

NAMES = ("longctx_varlen", "longctx_ring")


@dataclass
class SequenceParallel:
    """What ``longctx_ring`` needs to know about the sequence-parallel group.

    group: the process group whose ranks hold the shards (ranks in group order = shard order).
    layout: a name of :data:`longctx.distributed.layouts.LAYOUTS` (``layouts_help()`` says what each is).
    cu_seqlens: GLOBAL int32 boundaries of the padded pack (``shard_for_layout(...)["cu_seqlens"]``);
        for the contiguous layouts it is gathered from the local ``position_ids`` once when omitted.
    cache: per-context scratch of the layout (e.g. those gathered boundaries, reused by every layer).
    sub_groups: the sub-groups of ``group`` that the layout's row declares (``Layout.split``, e.g. usp's
        ``ulysses_group`` and ``ring_group``), by keyword (:func:`longctx.distributed.mesh.build_layout_groups`).
    """

    group: dist.ProcessGroup | None
    layout: str = DEFAULT_LAYOUT
    cu_seqlens: torch.Tensor | None = None
    cache: dict = field(default_factory=dict, repr=False)
    sub_groups: dict[str, dist.ProcessGroup] = field(default_factory=dict)

    def __post_init__(self) -> None:
        row = get_layout(self.layout)  # ValueError naming the choices
        unknown = sorted(set(self.sub_groups) - set(row.split.names if row.split is not None else ()))
        if unknown:
            raise ValueError(f"sequence_parallel: the {row.name} layout declares no sub-group {', '.join(unknown)}")

    @property
    def world_size(self) -> int:
        return dist.get_world_size(self.group)

    @property
    def rank(self) -> int:
        return dist.get_rank(self.group)


# The context of the innermost ``sequence_parallel`` block. A plain process global, NOT a contextvar:
# on CUDA autograd runs backward (and so every checkpoint recompute) on a worker thread, where a
# contextvar set around ``loss.backward()`` is not visible (NOTES-gpu-sim.md). The trainer does not
# rely on it at all: it passes the context as the ``longctx_sp`` keyword of the model call.
_ACTIVE: list[SequenceParallel] = []

SP_KWARG = "longctx_sp"


@contextlib.contextmanager
def sequence_parallel(
    group: dist.ProcessGroup | None = None, layout: str = DEFAULT_LAYOUT, cu_seqlens: torch.Tensor | None = None,
    **sub_groups: dist.ProcessGroup,
) -> Iterator[SequenceParallel]:
    """Within this block, ``longctx_ring`` attention is ``layout``'s sequence-parallel attention over ``group``
    (and the sub-groups its row declares, given by keyword: ``ulysses_group=..., ring_group=...`` for usp).

    The model then sees the LOCAL shard (``shard_for_layout``) with the GLOBAL ``position_ids`` of
    its tokens. Nesting replaces the outer context; leaving restores it. Plain backward needs no
    context (autograd saves the group), but activation checkpointing recomputes attention inside
    backward: either run ``loss.backward()`` inside the block (visible from every thread), or — what
    the trainer does, and what survives a backward run after the block — pass the yielded context to
    the model call as ``longctx_sp=sp``: transformers hands it to every attention layer, and the
    checkpoint keeps it with the layer's inputs, so each recompute sees it.

    Example (each rank)::

        shard = shard_for_layout(pack, "varlen", rank, world, seq_lens=pack_seq_lens)
        with sequence_parallel(group, layout="varlen", cu_seqlens=shard["cu_seqlens"]) as sp:
            hidden = model.model(input_ids=shard["input_ids"][None], position_ids=shard["position_ids"][None],
                                 use_cache=False, longctx_sp=sp).last_hidden_state
            loss = chunked_lm_loss(hidden[0], model.lm_head.weight, shard["labels"], shard["loss_weights"])
            loss.backward()   # then all-reduce gradients over the data x sequence-parallel ranks
    """
    sp = SequenceParallel(group=group if group is not None else dist.group.WORLD, layout=layout, cu_seqlens=cu_seqlens,
                          sub_groups=sub_groups)
    _ACTIVE.append(sp)
    try:
        yield sp
    finally:
        _ACTIVE.remove(sp)


def current_sequence_parallel(kwargs: dict | None = None) -> SequenceParallel | None:
    """The context an attention call runs under: its ``longctx_sp`` keyword, else the innermost
    ``sequence_parallel`` block, else None (then ``longctx_ring`` is single-process varlen attention)."""
    if kwargs is not None and kwargs.get(SP_KWARG) is not None:
        return kwargs[SP_KWARG]
    return _ACTIVE[-1] if _ACTIVE else None


def _flat_boundaries(query: torch.Tensor, kwargs: dict) -> torch.Tensor | None:
    """cu_seqlens over the batch flattened to one row, from kwargs or position_ids; None = one causal row per batch item."""
    cu_q, cu_k = kwargs.get("cu_seq_lens_q"), kwargs.get("cu_seq_lens_k")
    if cu_q is not None:
        if cu_k is not None and not torch.equal(cu_q.to(torch.int64), cu_k.to(torch.int64)):
            raise ValueError("longctx attention: cu_seq_lens_q != cu_seq_lens_k (cross attention is not supported)")
        return cu_q.to(torch.int32)
    pos = kwargs.get("position_ids")
    b, _, t, _ = query.shape
    if pos is None:
        return None
    # every layer of a forward gets the same position_ids object: derive the boundaries once. The
    # cache holds the tensor itself (so its memory cannot be reused by another) and its version.
    key = (b, t, pos._version)
    if _LAST_BOUNDARIES.get("pos") is pos and _LAST_BOUNDARIES.get("key") == key:
        return _LAST_BOUNDARIES["cu"]
    cu = flat_cu_seqlens(pos.expand(b, t) if pos.shape[0] != b else pos)
    _LAST_BOUNDARIES.update(pos=pos, key=key, cu=cu)
    return cu


_LAST_BOUNDARIES: dict = {}


def _check_common(query, key, attention_mask, dropout: float, kwargs: dict) -> None:
    if key.shape[2] != query.shape[2]:
        raise ValueError(f"longctx attention is for training without a KV cache (use_cache=False): got "
                         f"{query.shape[2]} queries vs {key.shape[2]} keys; generate with attn_implementation='sdpa'")
    if dropout:
        raise ValueError("longctx attention does not implement attention dropout; set attention_dropout=0")
    if attention_mask is not None and not bool(attention_mask.all()):
        raise ValueError("longctx attention: padded attention_mask is not supported; pack padding as its own segment")
    if kwargs.get("sliding_window") is not None:
        raise ValueError("longctx attention: sliding-window attention is not supported")


def _same_dtype(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Bring q/k/v to one dtype: under autocast RoPE leaves q/k in float32 while v is bf16.

    As transformers' flash integration does, the autocast dtype wins when autocast is on; otherwise
    the promoted dtype (so nothing is silently rounded down).
    """
    device_type = query.device.type
    if torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
    else:
        dtype = torch.promote_types(torch.promote_types(query.dtype, key.dtype), value.dtype)
    return tuple(x if x.dtype == dtype else x.to(dtype) for x in (query, key, value))


def longctx_varlen_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Causal attention inside each packed sequence (no cross-document attention); single process."""
    _check_common(query, key, attention_mask, dropout, kwargs)
    query, key, value = _same_dtype(query, key, value)
    b, h, t, d = query.shape
    cu = _flat_boundaries(query, kwargs)
    if cu is None:
        cu = torch.arange(0, b * t + 1, t, dtype=torch.int32)  # on the host: the kernels plan from it
    flat = [x.transpose(0, 1).reshape(x.shape[1], 1, b * t, x.shape[-1]).transpose(0, 1) for x in (query, key, value)]
    out = varlen.varlen_attention(*flat, cu_seqlens=cu, scale=scaling)  # [1, H, B*T, D]
    out = out.reshape(h, b, t, d).permute(1, 2, 0, 3).contiguous()
    return out, None


def longctx_ring_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """The context layout's attention over the active ``sequence_parallel`` group, on the LOCAL shard.

    The layout row gives the kernel, checks the inputs (varlen: batch 1), supplies its extra arguments
    (varlen: the GLOBAL cu_seqlens) and names the sub-groups it takes from the context. Without an active context (or with a 1-rank group)
    this is ``longctx_varlen`` attention, so one model config serves both degrees.
    """
    sp = current_sequence_parallel(kwargs)
    if sp is None or sp.world_size == 1:
        return longctx_varlen_attention(module, query, key, value, attention_mask, scaling, dropout, **kwargs)
    _check_common(query, key, attention_mask, dropout, kwargs)
    query, key, value = _same_dtype(query, key, value)
    layout = get_layout(sp.layout)
    if not layout.multi_document and sp.cu_seqlens is not None and len(sp.cu_seqlens) > 3:
        packed = [name for name, row in LAYOUTS.items() if row.multi_document]
        raise ValueError(f"longctx_ring {layout.name} layout holds ONE causal sequence per row (plus padding); "
                         f"got {len(sp.cu_seqlens) - 1} segments: use layout={' or '.join(map(repr, packed))} for packs")
    extra = layout.attention_kwargs(sp, query, kwargs)
    out = layout.attention(query, key, value, group=sp.group, scale=scaling, **extra, **_sub_groups(layout, sp))
    return out.transpose(1, 2).contiguous(), None


def _sub_groups(layout: Layout, sp: SequenceParallel) -> dict:
    """The context's sub-groups that ``layout``'s kernel takes (its row's ``split.names``), all present."""
    names = layout.split.names if layout.split is not None else ()
    if any(sp.sub_groups.get(name) is None for name in names):
        raise ValueError(f"longctx_ring {layout.name} layout needs sequence_parallel(..., "
                         f"{', '.join(name + '=' for name in names)}) (longctx.distributed.mesh.build_layout_groups)")
    return {name: sp.sub_groups[name] for name in names}


def _refuse_padding_mask(*args, attention_mask: torch.Tensor | None = None, **kwargs) -> None:
    """Mask builder for our names: no 4-D mask is ever built (memory); a padded 2-D mask is refused."""
    if attention_mask is not None and not bool(attention_mask.all()):
        raise ValueError("longctx attention: padded attention_mask is not supported; pack padding as its own segment")
    return None


def register() -> None:
    """Register ``longctx_varlen`` and ``longctx_ring`` with transformers (idempotent)."""
    AttentionInterface.register("longctx_varlen", longctx_varlen_attention)
    AttentionInterface.register("longctx_ring", longctx_ring_attention)
    for name in NAMES:
        AttentionMaskInterface.register(name, _refuse_padding_mask)
