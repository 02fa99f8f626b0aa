"""The GPU harness on the CPU: its comparisons catch wrong kernels, and the lease runner (``longctx doctor``,
then the tests and benchmarks) reports what ran.

tests/gpu and scripts/gpu_run.py are what a short GPU lease runs; these tests make sure their
verdicts mean something before any device time is spent (a harness that always says "passed"
would hide a broken CUDA path, a runner that hangs or loses outcomes would waste the lease).
"""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
import torch

from support import TESTS
from support.scripts import load_script

sys.path.insert(0, str(TESTS / "gpu"))  # tests/gpu's own helpers, imported there as top-level modules

from _cases import block_case, loss_case, tiny_llama_case, varlen_case  # noqa: E402
from _oracle import GRAD_NORM_TOL, TOL, compare  # noqa: E402


@pytest.fixture(scope="module")
def runner():
    return load_script("scripts/gpu_run.py", "gpu_run")


@pytest.fixture(scope="module")
def bench():
    return load_script("benchmarks/bench_gpu.py", "bench_gpu")


def _all_close(pairs, tol: float) -> bool:
    return all(compare(got, ref, tol).ok for got, ref in pairs.values())


def test_compare_passes_within_tolerance_and_fails_beyond_it():
    """A relative error of 1e-3 passes a 1e-2 tolerance and fails a 1e-4 one; NaN and a wrong shape never pass."""
    ref = torch.linspace(1, 2, 100, dtype=torch.float64)
    got = ref * (1 + 1e-3)
    ok, bad = compare(got, ref, 1e-2), compare(got, ref, 1e-4)
    assert ok.ok and not bad.ok
    assert ok.rel == pytest.approx(1e-3, rel=1e-6)
    nan = got.clone()
    nan[3] = float("nan")
    assert not compare(nan, ref, 1.0).ok
    assert not compare(got[:10], ref, 1.0).ok


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_varlen_case_passes_on_the_real_implementation(dtype):
    """varlen_attention on the CPU matches the float64 oracle, forward and dq/dk/dv, within the dtype's tolerance."""
    pairs = varlen_case("cpu", dtype, t=96)
    assert set(pairs) == {"out", "dq", "dk", "dv"} and _all_close(pairs, TOL[dtype])


def test_varlen_comparison_fails_when_documents_attend_each_other():
    """An attention that ignores document boundaries (plain causal over the pack) is caught."""
    from longctx.attention import full_attention_reference

    pairs = varlen_case("cpu", torch.float32, t=96, attn_fn=lambda q, k, v, cu: full_attention_reference(q, k, v))
    c = compare(*pairs["out"], TOL[torch.float32])
    assert not c.ok and c.rel > 1e-2


def test_block_comparison_fails_with_a_wrong_softmax_scale():
    """block_attention_forward passes; with a 10% wrong scale both out and lse fail."""
    from longctx.attention.blocks import block_attention_forward

    tol = TOL[torch.float32]
    wrong = lambda q, k, v, causal, scale: block_attention_forward(q, k, v, causal, scale * 1.1)  # noqa: E731
    for causal, tq, tk in ((True, 96, 96), (False, 64, 160)):
        assert _all_close(block_case("cpu", torch.float32, causal, tq, tk), tol)
        assert not any(compare(g, r, tol).ok for g, r in block_case("cpu", torch.float32, causal, tq, tk, wrong).values())


def test_chunked_loss_comparison_fails_when_weights_are_dropped():
    """The loss case passes chunked_lm_loss and fails a version that ignores the LongAlign weights."""
    from longctx.core.loss import chunked_lm_loss

    tol = TOL[torch.float32]
    assert _all_close(loss_case("cpu", torch.float32, t=128, vocab=64, hidden=16), tol)
    dropped = loss_case("cpu", torch.float32, t=128, vocab=64, hidden=16,
                        loss_fn=lambda h, w, y, wt: chunked_lm_loss(h, w, y, None, chunk_size=32))
    assert not compare(*dropped["value"], tol).ok


def test_tiny_llama_case_passes_on_cpu_autocast():
    """The packed tiny Llama under bf16 autocast stays within 2% of its float32 loss (CPU twin of the CUDA test)."""
    pairs, seen = tiny_llama_case("cpu", t=64)
    assert compare(*pairs["loss"], TOL[torch.bfloat16]).ok and compare(*pairs["grad_norm"], GRAD_NORM_TOL).ok
    assert seen, "the spy saw no varlen_attention call"


SYNTHETIC = """
import pytest

@pytest.fixture
def broken():
    raise RuntimeError("fixture exploded")

def test_passes(record_property):
    record_property("rel", 0.5)

def test_fails():
    assert 1 == 2, "numbers differ"

def test_skips():
    pytest.skip("no flash-attn here")

def test_errors(broken):
    pass

@pytest.mark.xfail(reason="known")
def test_xfails():
    assert False
"""


def test_runner_records_each_outcome_and_exit_status_follows_failures(runner, tmp_path):
    """pass / fail / skip / setup error / xfail each land in the JSON with their message; a failure makes exit 1."""
    (tmp_path / "test_synthetic.py").write_text(textwrap.dedent(SYNTHETIC))
    out = tmp_path / "report.json"
    assert runner.main(["--device", "cpu", "--no-doctor", "--no-bench", "--tests", str(tmp_path / "test_synthetic.py"),
                        "--out", str(out)]) == 1
    report = json.loads(out.read_text())
    got = {t["nodeid"].split("::")[-1]: t for t in report["tests"]["tests"]}
    assert {k: t["outcome"] for k, t in got.items()} == {"test_passes": "passed", "test_fails": "failed", "test_skips": "skipped",
                                                         "test_errors": "error", "test_xfails": "xfailed"}
    assert "numbers differ" in got["test_fails"]["message"] and got["test_skips"]["message"] == "no flash-attn here"
    assert "fixture exploded" in got["test_errors"]["message"] and got["test_passes"]["properties"] == {"rel": 0.5}
    assert report["tests"]["counts"]["passed"] == 1 and report["ok"] is False and report["bench"] is None
    assert report["doctor"] is None


def test_runner_kills_a_hanging_test_run_and_names_the_running_test(runner, tmp_path):
    """A test that never ends costs the step's limit: pytest is killed, finished outcomes are kept, the hung test is named."""
    (tmp_path / "test_hang.py").write_text("import time\n\ndef test_quick():\n    pass\n\ndef test_hangs():\n    time.sleep(600)\n")
    res = runner.run_tests([str(tmp_path / "test_hang.py")], timeout=15, device="cpu")
    assert res["timed_out"] and res["exit_status"] is None
    assert {t["nodeid"].split("::")[-1]: t["outcome"] for t in res["tests"]} == {"test_quick": "passed", "test_hangs": "timeout"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the runner on a machine without CUDA")
def test_runner_without_cuda_reports_skipped_gpu_tests_and_fails(runner, tmp_path):
    """The doctor runs first and fails (no CUDA), every tests/gpu test skips with the reason, the
    environment block is there, and the run is not called OK."""
    out = tmp_path / "gpu.json"
    assert runner.main(["--tests", "tests/gpu/test_loss_cuda.py", "--out", str(out)]) == 1
    report = json.loads(out.read_text())
    assert {"torch", "transformers", "flash_attn", "ring_flash_attn", "datasets", "cuda_available"} <= set(report["env"])
    assert report["env"]["cuda_available"] is False and "CUDA is not available" in report["error"]
    doctor = report["doctor"]["report"]
    assert report["doctor"]["exit_status"] == 1 and doctor["checks"][0]["name"] == "env"
    assert doctor["checks"][0]["status"] == "FAIL" and "--device cuda" in doctor["checks"][0]["detail"]
    tests = report["tests"]["tests"]
    assert len(tests) == 6 and all(t["outcome"] == "skipped" and "needs CUDA" in t["message"] for t in tests)
    assert report["bench"] is None


def test_runner_on_cpu_runs_the_gpu_tests_and_records_their_errors(runner, tmp_path):
    """--device cpu runs tests/gpu on the CPU: the block tests pass, each with its relative error and tolerance."""
    out = tmp_path / "gpu.json"
    assert runner.main(["--device", "cpu", "--no-doctor", "--no-bench", "--tests", "tests/gpu/test_attention_cuda.py",
                        "-k", "block_attention_forward",
                        "--out", str(out)]) == 0
    tests = json.loads(out.read_text())["tests"]["tests"]
    assert len(tests) == 8 and all(t["outcome"] == "passed" for t in tests)
    assert all(0 <= t["properties"]["rel"] <= t["properties"]["tol"] for t in tests)


def test_a_raising_benchmark_becomes_an_error_row_and_the_rest_still_run(bench, monkeypatch):
    def boom():
        raise RuntimeError("out of memory")

    monkeypatch.setattr(bench, "plan", lambda device, quick: [("a", boom), ("b", lambda: [{"bench": "b"}])])
    rows = bench.run("cpu", quick=True, log=lambda s: None)
    assert rows == [{"bench": "a", "error": "RuntimeError: out of memory"}, {"bench": "b"}]


def test_loss_benchmark_row_puts_baseline_and_ours_side_by_side(bench):
    """A tiny CPU loss benchmark has both tokens/s and their ratio (memory is CUDA-only: None on the CPU)."""
    row = bench.bench_loss("cpu", 128, 64, hidden=16, chunk=32, reps=1)
    assert row["speed_ratio"] == pytest.approx(row["chunked_tok_s"] / row["full_tok_s"])
    assert row["chunked_peak_gib"] is None and "lm loss" in bench.table([row])
