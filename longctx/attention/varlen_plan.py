"""Single-process varlen attention as a few batched SDPA calls, autograd doing the backward.

A pack's documents are grouped so each group is ONE ``F.scaled_dot_product_attention`` call on a
``[m, H, L, D]`` batch:

* documents of the same length ``L`` share a group (no padding; packs of equal rows -- e.g. a
  ``[B, T]`` batch without boundaries -- become a single call on a view, no copy at all);
* documents of at most ``SHORT_MAX`` tokens share one call per length bucket (``bucket_length``),
  right-padded to the bucket's longest member (less than max(8 tokens, 25 %) padding each), when
  there are enough of them (``GATHER_TOKENS_PER_CALL``): for many short documents the per-call
  overhead, not the arithmetic, is what costs; otherwise every document is its own call on a view.

Right padding is exact under a causal mask: a real query at offset ``i < n`` sees keys ``<= i``,
all real. Padded slots copy the document's last token; their outputs are dropped, so their output
gradient is 0, which makes every gradient they send back exactly 0 (dS = P * (dP - delta) = 0).
Memory: the gathered copy of q/k/v (linear in T) plus the kernel's per-group memory (on CPU the
flash kernel: linear in L), never ``T^2``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

SHORT_MAX = 128
"""Documents up to this length are padded into shared buckets; longer ones batch only with equals."""

GATHER_TOKENS_PER_CALL = 32
"""Gather into buckets only if that saves at least one SDPA call per this many pack tokens.

Measured on CPU (one thread, 4 heads x 32 dims, 2048-token packs, forward + backward): the
gather/scatter copies cost about as much as the calls saved when documents average ~32 tokens;
with shorter documents bucketing wins (456 documents of 1..8 tokens: 11 ms vs 18 ms per pack;
130 of 1..32: 7.2 vs 8.1 ms), with longer ones plain per-document calls do (65 of 1..64 forced
into buckets: 8.2 vs 7.3 ms). Under core contention with 2 threads fewer calls win by far more.
"""


@dataclass(frozen=True)
class VarlenPlan:
    """Groups of documents for batched calls and the token <-> padded-slot maps between them.

    ``groups``: (rows m, padded length L) per call, in slot order. ``gather``: ``[P]`` token index
    of every slot (None = slots are the tokens in order, no copy). ``scatter``: ``[T]`` slot of
    every token (None = identity).
    """

    groups: tuple[tuple[int, int], ...]
    gather: torch.Tensor | None
    scatter: torch.Tensor | None


def bucket_length(n: int, short_max: int = SHORT_MAX) -> int:
    """Bucket of a document of ``n`` tokens: ``n`` itself above ``short_max``, else ``n`` rounded up
    to a multiple of ``max(8, 2**(bits(n-1) - 3))`` (8, 16, 24, 32, 40, 48, ..., 64, 80, ..., 128),
    so a document is padded by less than ``max(8, n / 4)`` tokens."""
    if n > short_max:
        return n
    step = max(8, 1 << max((n - 1).bit_length() - 3, 0))
    return -(-n // step) * step


@functools.lru_cache(maxsize=64)
def plan_varlen(cu: tuple[int, ...], short_max: int = SHORT_MAX) -> VarlenPlan:
    """The batched-call plan for boundaries ``cu`` (cached: every layer of a forward asks again)."""
    segs = [(s, e - s) for s, e in zip(cu[:-1], cu[1:]) if e > s]
    by_len: dict[int, list[tuple[int, int]]] = {}
    for s, n in segs:
        by_len.setdefault(bucket_length(n, short_max), []).append((s, n))
    # groups in the order of their first document, so a pack of long distinct documents (or of
    # equal rows) keeps token order and needs no gather; a bucket pads only to its longest member
    # (a bucket of one document, or of equal ones, has no padding at all)
    ordered = sorted(((max(n for _, n in rows), rows) for rows in by_len.values()), key=lambda kv: kv[1][0][0])
    groups = tuple((len(rows), length) for length, rows in ordered)
    padded = any(n != length for length, rows in ordered for _, n in rows)
    in_order = [s for _, rows in ordered for s, _ in rows] == [s for s, _ in segs]
    if not padded and in_order:
        return VarlenPlan(groups, None, None)
    total = cu[-1]
    if (len(segs) - len(groups)) * GATHER_TOKENS_PER_CALL < total:  # the gather costs more than the calls it saves
        return VarlenPlan(tuple((1, n) for _, n in segs), None, None)
    gathers, scatter, base = [], torch.empty(total, dtype=torch.int64), 0
    for length, rows in ordered:
        starts = torch.tensor([s for s, _ in rows], dtype=torch.int64)
        lens = torch.tensor([n for _, n in rows], dtype=torch.int64)
        off = torch.arange(length, dtype=torch.int64)
        gathers.append((starts[:, None] + torch.minimum(off[None, :], (lens - 1)[:, None])).reshape(-1))
        real = (off[None, :] < lens[:, None]).reshape(-1)
        slots = base + torch.arange(len(rows) * length, dtype=torch.int64)
        scatter[gathers[-1][real]] = slots[real]
        base += len(rows) * length
    return VarlenPlan(groups, torch.cat(gathers), scatter)


def _rows(x: torch.Tensor, m: int, length: int) -> torch.Tensor:
    """``[1, H, m*L, D]`` -> ``[m, H, L, D]`` (a view)."""
    return x.squeeze(0).unflatten(1, (m, length)).transpose(0, 1)


def sdpa_varlen(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor, scale: float) -> torch.Tensor:
    """Causal attention within each segment of a ``[1, H, T, D]`` pack (GQA K/V), differentiable."""
    plan = plan_varlen(tuple(int(x) for x in cu_seqlens.tolist()))
    if plan.gather is not None:
        idx = plan.gather.to(q.device)
        q, k, v = (x.index_select(2, idx) for x in (q, k, v))
    sizes = [m * length for m, length in plan.groups]
    outs = []
    for (m, length), qg, kg, vg in zip(plan.groups, q.split(sizes, 2), k.split(sizes, 2), v.split(sizes, 2)):
        if m == 1:  # one document: SDPA on the slice views, as a hand-written loop would
            outs.append(F.scaled_dot_product_attention(qg, kg, vg, is_causal=True, scale=scale, enable_gqa=True))
            continue
        o = F.scaled_dot_product_attention(_rows(qg, m, length), _rows(kg, m, length), _rows(vg, m, length),
                                           is_causal=True, scale=scale, enable_gqa=True)
        outs.append(o.transpose(0, 1).reshape(1, o.shape[1], m * length, o.shape[-1]))
    out = outs[0] if len(outs) == 1 else torch.cat(outs, 2)
    if plan.scatter is not None:
        out = out.index_select(2, plan.scatter.to(out.device))
    return out
