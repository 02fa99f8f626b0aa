"""The table a user reads before choosing a method: what happens to each rotary pair.

For pair i: its original wavelength lambda_i = 2 pi / theta_i, how many turns it makes inside
the original window (L0 / lambda_i; below 1 the model never saw a full turn of it, which is why
those pairs break first beyond L0), and the method's rescale theta_i / theta_i'. A rescale of 1
*extrapolates* the pair (positions beyond L0 give unseen angles only if it never completed a turn);
a rescale of the full factor *interpolates* it (angles stay in the trained range, resolution drops);
anything between *blends*.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rope_scaling.common import wavelengths

REL_TOL = 1e-9


@dataclass(frozen=True)
class PairRow:
    pair: int
    wavelength: float  # tokens per turn, original frequencies
    turns_in_original: float  # original_length / wavelength
    rescale: float  # theta_old / theta_new
    action: str  # "extrapolate", "interpolate" or "blend"


def classify(rescale: float, factor: float) -> str:
    """'extrapolate' when unchanged, 'interpolate' when slowed by the whole factor (or more), else 'blend'."""
    if abs(rescale - 1.0) <= REL_TOL:
        return "extrapolate"
    if factor > 1.0 and rescale >= factor * (1 - REL_TOL):
        return "interpolate"
    return "blend"


def explain_pairs(old_inv_freq: torch.Tensor, new_inv_freq: torch.Tensor, original_length: int, factor: float) -> list[PairRow]:
    """One row per rotary pair comparing the original and the extended frequencies."""
    old = old_inv_freq.to(torch.float64)
    rescale = old / new_inv_freq.to(torch.float64)
    wl = wavelengths(old)
    return [
        PairRow(i, float(wl[i]), float(original_length / wl[i]), float(rescale[i]), classify(float(rescale[i]), factor))
        for i in range(old.numel())
    ]


def format_table(rows: list[PairRow], max_rows: int = 0) -> str:
    """Plain-text table; with ``max_rows`` > 0 the middle is elided so long heads stay readable."""
    head = f"{'pair':>4}  {'wavelength':>12}  {'turns in L0':>11}  {'rescale':>9}  action"
    lines = [f"{r.pair:>4}  {r.wavelength:>12.1f}  {r.turns_in_original:>11.3f}  {r.rescale:>9.4f}  {r.action}" for r in rows]
    if max_rows and len(lines) > max_rows:
        k = max_rows // 2
        lines = lines[:k] + [f"{'...':>4}  ({len(lines) - 2 * k} more pairs)"] + lines[-k:]
    counts = {a: sum(r.action == a for r in rows) for a in ("extrapolate", "blend", "interpolate")}
    summary = ", ".join(f"{n} {a}" for a, n in counts.items() if n)
    return "\n".join([head, *lines, f"pairs: {summary}"])
