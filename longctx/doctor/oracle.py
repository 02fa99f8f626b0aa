"""The doctor's yardstick: relative error against a float64 CPU reference, and seeded inputs.

Every device result is compared with its float64 CPU oracle on the SAME inputs: inputs are first
rounded to the tested dtype, then widened, so only the arithmetic's error is measured. Pure
functions of tensors; the GPU test harness (tests/gpu/_oracle.py) uses these too, so a kernel
is judged the same way by ``longctx doctor`` and by the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Relative-error tolerances ||got - ref|| / ||ref||: float32 arithmetic lands far below 1e-4,
# bf16 outputs carry a 2^-9 rounding per element (plus bf16 gradients of several summed blocks).
TOL = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 2e-2, torch.float64: 1e-10}
GRAD_NORM_TOL = 5e-2  # a model's whole-gradient norm under bf16 autocast vs float32
DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "fp64"}


@dataclass(frozen=True)
class Comparison:
    """The verdict of :func:`compare`; ``rel``/``max_abs`` are None when the shapes or finiteness differ."""

    ok: bool
    tol: float
    rel: float | None = None
    max_abs: float | None = None
    detail: str = ""

    def message(self) -> str:
        if self.rel is None:
            return self.detail
        return f"rel err {self.rel:.3g} {'<=' if self.ok else '>'} tol {self.tol:g} (max abs {self.max_abs:.3g})"


def compare(got: torch.Tensor, ref: torch.Tensor, tol: float) -> Comparison:
    """Ok when ``got`` (any device/dtype) is finite where ``ref`` is and within relative error ``tol`` of it."""
    g = got.detach().to("cpu", torch.float64)
    r = ref.detach().to("cpu", torch.float64)
    if g.shape != r.shape:
        return Comparison(False, tol, detail=f"shape {tuple(g.shape)} != reference {tuple(r.shape)}")
    finite = torch.isfinite(r)
    if not bool(torch.isfinite(g[finite]).all()) or not bool((g[~finite] == r[~finite]).all()):
        return Comparison(False, tol, detail="non-finite values where the reference is finite (or vice versa)")
    diff = g[finite] - r[finite]
    max_abs = float(diff.abs().max()) if diff.numel() else 0.0
    norm = float(r[finite].norm())
    rel = float(diff.norm()) / norm if norm > 0 else max_abs
    return Comparison(rel <= tol, tol, rel, max_abs)


def worst(comparisons: dict[str, Comparison]) -> tuple[str, Comparison]:
    """The failing comparison if any (else the one with the largest relative error), with its name:
    one number per check in the doctor's table."""
    def key(item: tuple[str, Comparison]) -> tuple[int, float]:
        c = item[1]
        return (0 if c.ok else 1, float("inf") if c.rel is None else c.rel)

    return max(comparisons.items(), key=key)


def doc_lengths(total: int, doc: int) -> list[int]:
    """Split ``total`` tokens into documents of varied lengths around ``doc`` (deterministic)."""
    lens, i = [], 0
    while sum(lens) < total:
        n = max(1, int(doc * (0.5 + (i * 0.37) % 1.0)))
        lens.append(min(n, total - sum(lens)))
        i += 1
    return lens


def cu_from_lengths(lens: list[int]) -> torch.Tensor:
    """int32 cumulative sequence lengths ``[0, l0, l0+l1, ...]`` (the varlen kernels' boundaries)."""
    return torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int32)


def qkv(t: int, h: int, hk: int, d: int, dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random q, k, v, dout ``[1, H, T, D]`` on the CPU in float64, already rounded to ``dtype``."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(1, h, t, d), (1, hk, t, d), (1, hk, t, d), (1, h, t, d)]
    return tuple(torch.randn(s, generator=g, dtype=torch.float64).to(dtype).to(torch.float64) for s in shapes)
