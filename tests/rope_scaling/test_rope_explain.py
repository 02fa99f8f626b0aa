"""The per-pair plan table."""

from __future__ import annotations

import math

from rope_scaling.explain import explain_pairs, format_table
from rope_scaling.registry import compute


def test_yarn_table_extrapolates_fast_pairs_and_interpolates_slow_ones():
    """head 16, base 1e4, L0 256, s 4: pair 0 makes 256/(2pi) = 40.7 > 32 turns (kept), pairs with < 1 turn are
    interpolated by 4, the ones between blend; turns = L0 * theta_i / (2 pi)."""
    old, _ = compute("default", base=1e4, head_dim=16)
    new, _ = compute("yarn", base=1e4, head_dim=16, factor=4, original_length=256)
    rows = explain_pairs(old, new, 256, 4)
    assert rows[0].action == "extrapolate" and abs(rows[0].turns_in_original - 256 / (2 * math.pi)) < 1e-9
    assert all(r.action == "interpolate" for r in rows if r.turns_in_original < 1)
    assert {r.action for r in rows[1:4]} == {"blend"}


def test_linear_table_interpolates_every_pair():
    """Position interpolation slows every pair by the whole factor."""
    old, _ = compute("default", base=1e4, head_dim=64)
    new, _ = compute("linear", base=1e4, head_dim=64, factor=8)
    table = format_table(explain_pairs(old, new, 4096, 8))
    assert "pairs: 32 interpolate" in table
