"""The longest-length search of benchmarks/bench_gpu_model.py (pure helpers; the GPU run itself is
scripts/gpu_run.py's job): the linear memory fit and the choice of the next length to try."""

from __future__ import annotations

import pytest

from support.scripts import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("benchmarks/bench_gpu_model.py", "bench_gpu_model")


def test_linear_fit_crosses_capacity_where_the_line_does(bench):
    # 20 GiB fixed + 0.5 GiB per 1K tokens: 100 GiB is reached at 160K tokens
    points = [(32768, 20 + 16.0), (131072, 20 + 64.0)]
    assert bench.linear_limit(points, 100.0, 8192) == 163840 // 8192 * 8192
    assert bench.linear_limit(points[:1], 100.0, 8192) is None


def test_first_try_is_the_estimate_when_affordable_else_the_largest_affordable_below(bench):
    assert bench.next_try(131072, None, 262144, 8192, lambda t: True) == 262144
    got = bench.next_try(131072, None, 262144, 8192, lambda t: t <= 200000)
    assert 131072 < got <= 200000 and got % 8192 == 0


def test_after_an_oom_the_search_bisects_between_fit_and_oom(bench):
    assert bench.next_try(131072, 262144, 262144, 8192, lambda t: True) == 196608
    assert bench.next_try(196608, 262144, 262144, 8192, lambda t: True) == 229376


def test_nothing_left_to_try(bench):
    assert bench.next_try(131072, 139264, 262144, 8192, lambda t: True) is None
    assert bench.next_try(131072, None, 262144, 8192, lambda t: False) is None


def test_step_time_estimate_scales_with_flops(bench):
    shape = bench.PRESETS["llama-3-8b"]
    assert bench.step_seconds_estimate(shape, 131072, 131072, 10.0) == pytest.approx(10.0)
    assert 2 * 10.0 < bench.step_seconds_estimate(shape, 262144, 131072, 10.0) < 4 * 10.0
