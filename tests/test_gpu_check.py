"""The GPU-check harness (scripts/gpu_check.py) on the CPU: its checks pass on correct code and FAIL on wrong code.

The script is what a short GPU lease runs; these tests make sure its verdicts mean something before
any device time is spent (a harness that always says PASS would hide a broken CUDA path).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gc():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = mod
    spec.loader.exec_module(mod)
    return mod


def _statuses(results) -> set[str]:
    return {r.status for r in results}


def test_compare_passes_within_tolerance_and_fails_beyond_it(gc):
    """A relative error of 1e-3 passes a 1e-2 tolerance and fails a 1e-4 one; NaN never passes."""
    ref = torch.linspace(1, 2, 100, dtype=torch.float64)
    got = ref * (1 + 1e-3)
    ok, bad = gc.compare("x", got, ref, 1e-2), gc.compare("x", got, ref, 1e-4)
    assert ok.status == "PASS" and bad.status == "FAIL"
    assert ok.rel == pytest.approx(1e-3, rel=1e-6)
    nan = got.clone()
    nan[3] = float("nan")
    assert gc.compare("x", nan, ref, 1.0).status == "FAIL"
    assert gc.compare("x", got[:10], ref, 1.0).status == "FAIL"  # shape mismatch


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_varlen_check_passes_on_the_real_implementation(gc, dtype):
    """varlen_attention on the CPU matches the float64 oracle, forward and dq/dk/dv, within the dtype's tolerance."""
    res = gc.check_varlen("cpu", dtype, t=96)
    assert len(res) == 4 and _statuses(res) == {"PASS"}


def test_varlen_check_fails_when_documents_attend_each_other(gc):
    """An attention that ignores document boundaries (plain causal over the pack) is caught by the varlen check."""
    from longctx.attention import full_attention_reference

    res = gc.check_varlen("cpu", torch.float32, t=96, attn_fn=lambda q, k, v, cu: full_attention_reference(q, k, v))
    assert res[0].status == "FAIL" and res[0].rel > 1e-2


def test_block_check_fails_with_a_wrong_softmax_scale(gc):
    """block_attention_forward with a 10% wrong scale fails both the out and the lse comparison."""
    from longctx.attention.blocks import block_attention_forward

    assert _statuses(gc.check_block_forward("cpu", torch.float32)) == {"PASS"}
    wrong = gc.check_block_forward("cpu", torch.float32,
                                   block_fn=lambda q, k, v, causal, scale: block_attention_forward(q, k, v, causal, scale * 1.1))
    assert all(r.status == "FAIL" for r in wrong)


def test_chunked_loss_check_fails_when_weights_are_dropped(gc):
    """The loss check passes chunked_lm_loss and fails a version that ignores the LongAlign weights."""
    from longctx.loss import chunked_lm_loss

    assert _statuses(gc.check_chunked_loss("cpu", torch.float32, t=128, vocab=64, hidden=16)) == {"PASS"}
    res = gc.check_chunked_loss("cpu", torch.float32, t=128, vocab=64, hidden=16,
                                loss_fn=lambda h, w, y, wt: chunked_lm_loss(h, w, y, None, chunk_size=32))
    assert res[0].status == "FAIL"


def test_tiny_llama_check_passes_on_cpu_autocast(gc):
    """The packed tiny Llama under bf16 autocast stays within 2% of its float32 loss (CPU twin of the CUDA check)."""
    res = gc.check_tiny_llama("cpu", t=64)
    assert _statuses(res) == {"PASS"}


def test_a_raising_check_is_reported_as_error_and_the_run_goes_on(gc):
    """One check raising becomes an ERROR result (counted as a failure); the next check still runs."""
    report = gc.Report()

    def boom():
        raise RuntimeError("kernel exploded")

    gc.run_checks([("a", boom), ("b", lambda: [gc.Result("b", "PASS")])], report, log=lambda s: None)
    assert [r.status for r in report.checks] == ["ERROR", "PASS"]
    assert "kernel exploded" in report.checks[0].detail and len(report.failed) == 1


def test_main_writes_json_and_exit_status_follows_failures(gc, tmp_path, monkeypatch, capsys):
    """main --only block exits 0 and writes gpu_check.json; with a broken block kernel it exits 1."""
    assert gc.main(["--only", "block", "--no-bench", "--device", "cpu", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    assert data["env"]["device"] == "cpu" and {c["status"] for c in data["checks"]} == {"PASS"}
    monkeypatch.setattr(gc, "check_block_forward", lambda device, dtype: [gc.compare("broken", torch.ones(3), torch.zeros(3) + 2, 1e-3)])
    assert gc.main(["--only", "block", "--no-bench", "--device", "cpu"]) == 1
    assert "FAILED" in capsys.readouterr().out
