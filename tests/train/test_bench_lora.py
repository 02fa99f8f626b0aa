"""benchmarks/bench_lora.py at a toy length: it runs, and the planner's peak stays within 15 % of each measured one."""

from __future__ import annotations

import importlib.util

import pytest

from support.scripts import load_script

pytestmark = pytest.mark.skipif(importlib.util.find_spec("peft") is None, reason="peft (the lora extra) is not installed")


def test_full_lora_and_lora_plus_rows_with_the_planned_peak_within_15_percent():
    bench = load_script("benchmarks/bench_lora.py", "bench_lora")
    rows = [bench.measure("organism", 256, setup, 0) for setup in bench.SETUPS]
    assert [r["setup"] for r in rows] == ["full", "lora", "lora+"]
    full, lora, plus = rows
    assert lora["trainable"] < plus["trainable"] < full["trainable"]
    assert lora["peak_bytes"] < full["peak_bytes"]
    for r in rows:
        assert 0.85 <= r["planned_bytes"] / r["peak_bytes"] <= 1.15, r
    assert bench.table(rows).count("\n| organism | 256 |") == 3
