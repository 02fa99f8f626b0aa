"""One optimizer step on several ranks against the same step in one process: the tolerances and the check
shared by the sequence-/data-parallel trainer tests (tests/train/test_train_dist.py, test_train_ulysses.py)."""

from __future__ import annotations

import pytest

from support import train_ranks as tr

# The step's gradients (all-reduced and clipped, what the optimizer sees) must agree to 1e-6 in float32.
# Parameters after the AdamW step get 1e-5: Adam's first update is lr * g / (|g| + eps), which turns the
# ~1e-7 float32 rounding of near-zero gradient elements into up to ~lr differences (measured: gradients
# 2.5e-7, parameters 1.9e-6 for an exact SP implementation), so 1e-6 on parameters exceeds the oracle's precision.
GRAD_TOL, PARAM_TOL = 1e-6, 1e-5


def assert_same_step(out: dict, ref: dict) -> None:
    """``out`` (rank 0 of a multi-rank run) took ``ref``'s step: gradients, parameters, first loss."""
    assert tr.rel_err(out["grads"], ref["grads"]) <= GRAD_TOL
    assert tr.rel_err(out["params"], ref["params"]) <= PARAM_TOL
    assert out["losses"][0] == pytest.approx(ref["losses"][0], rel=1e-6)


def one_process(cfg) -> dict:
    """Parameters, first-step gradients and losses of ``cfg`` trained in this process (the oracle)."""
    return tr.run_capturing(cfg)[1]
