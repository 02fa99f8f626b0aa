"""``parallel.layout: auto`` and the Ulysses degree of ``usp``: pure choices from the model's heads.

The rule (USP, arXiv 2405.07719: Ulysses is faster where the heads allow, ring attention covers
the rest): the Ulysses degree is ``U = gcd(sp, KV heads)``, the largest degree that divides both the
SP degree and the KV heads (so no KV head is replicated); the ring takes ``R = sp / U``. Then

* ``U == sp``: ``ulysses``;
* ``1 < U < sp``: ``usp`` with ``ulysses_degree = U``;
* ``U == 1``: ring attention: ``zigzag`` when every pack holds one document and its length is a
  multiple of ``2·sp`` (balanced causal work), else ``varlen``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

AUTO = "auto"


@dataclass(frozen=True)
class LayoutChoice:
    """A concrete registry layout, its Ulysses degree (``usp`` only, else 0) and why, for the log."""

    layout: str
    ulysses_degree: int
    reason: str


def ulysses_degree_for(sp: int, num_kv_heads: int) -> int:
    """The largest Ulysses degree that divides ``sp`` and splits the KV heads without copies."""
    return math.gcd(sp, num_kv_heads)


def choose_layout(sp: int, num_heads: int, num_kv_heads: int, multi_document: bool, pack_length: int) -> LayoutChoice:
    """What ``parallel.layout: auto`` runs (module docstring)."""
    u = ulysses_degree_for(sp, num_kv_heads)
    heads = f"{num_heads} heads / {num_kv_heads} KV heads, sp {sp}"
    if sp == 1:
        return LayoutChoice("varlen", 0, "sp_degree 1: no sequence parallelism")
    if u == sp:
        return LayoutChoice("ulysses", 0, f"ulysses ({heads}: sp divides the KV heads)")
    if u > 1:
        return LayoutChoice("usp", u, f"usp, Ulysses {u} x ring {sp // u} ({heads}: gcd(sp, KV heads) = {u})")
    ring = "zigzag" if not multi_document and pack_length % (2 * sp) == 0 else "varlen"
    why = "one document per pack" if ring == "zigzag" else "packs of several documents" if multi_document \
        else f"pack length not a multiple of 2·sp = {2 * sp}"
    return LayoutChoice(ring, 0, f"{ring} ring ({heads}: no Ulysses degree > 1 divides both; {why})")


def resolve_layout(layout: str, ulysses_degree: int, sp: int, num_heads: int, num_kv_heads: int,
                   multi_document: bool, pack_length: int) -> LayoutChoice:
    """The trainer's layout: ``auto`` chosen here, ``usp`` with ``ulysses_degree`` 0 given ``U = gcd(sp,
    KV heads)``, anything else as configured."""
    if layout == AUTO:
        return choose_layout(sp, num_heads, num_kv_heads, multi_document, pack_length)
    if layout == "usp":
        u = ulysses_degree or ulysses_degree_for(sp, num_kv_heads)
        src = "parallel.ulysses_degree" if ulysses_degree else "gcd(sp, KV heads)"
        return LayoutChoice("usp", u, f"usp, Ulysses {u} x ring {sp // u} ({src})")
    return LayoutChoice(layout, 0, layout)
