"""What a sequence-parallel layout declares: the :class:`Layout` row, and the defaults rows share.

A layout module (``layouts/<name>.py``) holds everything that is particular to one layout: its token
spans, its attention kernel (the function itself, defined there or imported from a kernel module of
:mod:`longctx.attention`), its communication (buffer bytes, the sub-groups of the SP group it needs and
the config key of their degree) and what ``parallel.layout: auto`` may pick it for. The generic
machinery reads only these fields: the sharding math (:mod:`longctx.distributed.sharding`: unit,
spans), the attention glue (``longctx_ring`` in :mod:`longctx.distributed.hf_attention`: attention,
attention_kwargs, multi_document, split), the mesh (:func:`longctx.distributed.mesh.build_layout_groups`:
split), the chooser (:mod:`longctx.distributed.layouts.choose`: auto, split), the trainer config
(split's key), the trainer (multi_document, check_heads) and the planner (unit, check_heads,
comm_bytes_per_token). Rows reference kernels by object, so reading the registry imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Spans = list[tuple[int, int]]


def any_heads(sp_degree: int, num_heads: int, num_kv_heads: int) -> str | None:
    """Head constraint of a layout that splits the sequence, not the heads: every degree works."""
    return None


def no_attention_kwargs(sp: Any, query: Any, kwargs: dict) -> dict:
    """Layouts whose attention needs nothing beyond q, k, v, group and scale."""
    return {}


RING_COMM_FORMULA = "T·(4a·kv + 16·kv + (4+a)·q + 2a·kv)"


def ring_comm_bytes_per_token(q_dim: int, kv_dim: int, a: int) -> float:
    """Ring attention's communication buffers per local token (ring-flash-attn backward, the larger
    direction): the K/V block being used and the one in flight, 2 · 2 · a · kv; the dK/dV being
    accumulated and in flight in fp32, 2 · 2 · 4 · kv; the fp32 dq accumulator and block buffers,
    (4 + a) · q + 2 · a · kv. The planner multiplies it by the tokens a GPU holds."""
    return 4 * a * kv_dim + 16 * kv_dim + (4 + a) * q_dim + 2 * a * kv_dim


@dataclass(frozen=True)
class SubGroups:
    """Sub-groups of the SP group that a layout's kernel needs, cut by a degree of the layout's own
    (usp: Ulysses groups of ``U`` ranks x ring groups across them, ``U = parallel.ulysses_degree``).
    The mesh creates them (:func:`longctx.distributed.mesh.build_layout_groups`); the kernel gets this
    rank's group of each partition as the keyword of the same name."""

    key: str
    """The ``parallel.<key>`` config field holding the degree (0 = :attr:`default`). Only this layout
    reads it: the config refuses a nonzero value with any other layout."""
    names: tuple[str, ...]
    """The kernel's keyword for each partition, in the order :attr:`ranks` returns them (and the mesh
    creates them)."""
    ranks: Callable[[list[int], int], tuple[list[list[int]], ...]]
    """``(sp_ranks, degree) -> one partition of sp_ranks per name``: the global ranks of each group."""
    check: Callable[[int, int, int | None], str | None]
    """``(degree, sp_degree, num_heads or None) -> why not | None``: the config checks it without a
    model (heads None), the chooser again with the model's heads."""
    default: Callable[[int, int, int], int]
    """``(sp_degree, num_heads, num_kv_heads) -> degree`` when the key is 0."""
    default_formula: str
    """:attr:`default` as text, for the log (``"gcd(sp, KV heads)"``)."""
    describe: Callable[[int, int], str]
    """``(degree, sp_degree) -> text`` for the log (``"Ulysses 2 x ring 4"``)."""


def always_fits(sp_degree: int, num_heads: int, num_kv_heads: int) -> int | None:
    """An ``auto`` rule with no condition of its own (beyond documents, unit and heads): degree 0."""
    return 0


@dataclass(frozen=True)
class Auto:
    """What ``parallel.layout: auto`` may pick a row for (:func:`longctx.distributed.layouts.choose.choose_layout`).

    ``auto`` tries the rows by increasing :attr:`rank` and takes the first one whose declarations fit
    the run: it takes packs of several documents if the packs hold them (``multi_document``), its
    unit divides the pack length, its head constraint holds (``check_heads``), and :attr:`fit` says yes.
    The row of the highest rank must fit every pack: it is also what a run of ``sp_degree`` 1 records.
    """

    rank: int
    """Place in ``auto``'s order, fastest first (all-to-all before ring, balanced ring before general)."""
    fit: Callable[[int, int, int], int | None] = always_fits
    """``(sp_degree, num_heads, num_kv_heads) -> degree | None``: None = not this run; else the degree
    of the row's :class:`SubGroups` (0 when it has none)."""
    needs: str = ""
    """What :attr:`fit` asks, for the log when it says no."""


@dataclass(frozen=True)
class Layout:
    """One sequence-parallel layout: how a pack is split over ``W`` ranks and which attention runs on it."""

    name: str
    """Registry key; the value of ``parallel.layout`` and ``longctx plan --layout``."""
    description: str
    """One line for ``--help`` and error messages."""
    chunks_per_rank: int
    """The padded pack is cut into ``chunks_per_rank * W`` equal chunks; its length must be a
    multiple of that (:meth:`unit`)."""
    local_spans: Callable[[int, int, int], Spans]
    """``(total_len, rank, world_size) -> [(start, end), ...]``: the global token ranges rank ``rank``
    holds, in local order (``total_len`` is a multiple of the unit, rank and world are checked).
    Concatenated over ranks they must partition ``range(total_len)``; ``unshard`` inverts them."""
    attention: Callable[..., Any]
    """The attention this layout runs on local shards ``[B, H, n, D]``, called as
    ``fn(q, k, v, group=..., scale=..., **attention_kwargs(...), **sub_groups)`` and returning the
    local output ``[B, H, n, D]``."""
    multi_document: bool
    """Whether one pack may hold several documents. False: the row is ONE causal sequence (plus
    trailing padding), and the trainer and ``longctx_ring`` refuse packs with several."""
    attention_kwargs: Callable[[Any, Any, dict], dict] = no_attention_kwargs
    """``(sp, query, kwargs) -> dict``: checks the local inputs against the layout and returns the
    extra keyword arguments of :attr:`attention` (``sp``: the active ``SequenceParallel``;
    ``kwargs``: what transformers passed to the attention layer, e.g. ``position_ids``)."""
    check_heads: Callable[[int, int, int], str | None] = any_heads
    """``(sp_degree, num_heads, num_kv_heads) -> why not | None``: the GQA constraint (a layout that
    splits heads, as Ulysses, needs the degree to divide the attention heads)."""
    comm_bytes_per_token: Callable[[int, int, int], float] = ring_comm_bytes_per_token
    """``(q_dim, kv_dim, a) -> bytes``: the planner's communication buffers per local token."""
    comm_formula: str = RING_COMM_FORMULA
    """:attr:`comm_bytes_per_token` in the planner's notation (shown in its memory table)."""
    split: SubGroups | None = None
    """The sub-groups of the SP group that :attr:`attention` needs; None: the SP group alone."""
    auto: Auto | None = None
    """How ``parallel.layout: auto`` considers this row; None: never picked by ``auto``."""

    def unit(self, world_size: int) -> int:
        """The pack length must be a multiple of this for ``world_size`` ranks."""
        return self.chunks_per_rank * world_size

    @property
    def unit_formula(self) -> str:
        """:meth:`unit` as text: ``"sp"`` or ``"2·sp"``."""
        return "sp" if self.chunks_per_rank == 1 else f"{self.chunks_per_rank}·sp"
