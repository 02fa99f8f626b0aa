"""The ``ulysses`` layout: contiguous shards exchanged for head shards by all-to-all (DeepSpeed-Ulysses).

Ranks hold the same contiguous slices as ``varlen`` (so packs of several documents, with
boundaries anywhere, are fine: after the all-to-all every rank sees the whole pack for its heads,
and attention uses the pack's GLOBAL ``cu_seqlens``, obtained as the varlen row does). The
kernel is :func:`longctx.attention.ulysses.ulysses_attention`. ``auto`` tries it first, where the
SP degree divides the KV heads (no K/V head is sent twice).
"""

from __future__ import annotations

from longctx.attention.ulysses import ulysses_attention
from longctx.distributed.layouts.base import Auto, Layout
from longctx.distributed.layouts.varlen import varlen_attention_kwargs, varlen_spans

ULYSSES_COMM_FORMULA = "T·a·(2q + 2kv)"


def ulysses_heads(sp_degree: int, num_heads: int, num_kv_heads: int) -> str | None:
    """The degree must divide the attention heads; K/V heads are split when it divides them too,
    else replicated to lcm(kv heads, degree) (e.g. 8 ranks, 2 KV heads: each KV head sent 4 times)."""
    if num_heads % sp_degree:
        return (f"ulysses: sp ({sp_degree}) must divide the {num_heads} attention heads; use layout usp "
                "(Ulysses x ring) or auto")
    return None


def ulysses_comm_bytes_per_token(q_dim: int, kv_dim: int, a: int) -> float:
    """The all-to-all copies per local token: the head-sharded q, k, v and the output (received
    buffers, the sequence-sharded ones are the activations themselves) and their gradients in backward,
    T · a · (2·q + 2·kv) (KV replication beyond the KV heads is not counted)."""
    return a * (2 * q_dim + 2 * kv_dim)


def kv_heads_split(sp_degree: int, num_heads: int, num_kv_heads: int) -> int | None:
    """``auto``: Ulysses alone when the degree divides the KV heads (no K/V head replicated)."""
    return 0 if num_kv_heads % sp_degree == 0 else None


LAYOUT = Layout(
    name="ulysses",
    description="sp contiguous slices; all-to-all to whole-sequence head shards (sp must divide the heads), "
                "packs of several documents",
    chunks_per_rank=1,
    local_spans=varlen_spans,
    attention=ulysses_attention,
    multi_document=True,
    attention_kwargs=varlen_attention_kwargs,
    check_heads=ulysses_heads,
    comm_bytes_per_token=ulysses_comm_bytes_per_token,
    comm_formula=ULYSSES_COMM_FORMULA,
    auto=Auto(rank=0, fit=kv_heads_split, needs="sp dividing the KV heads"),
)
