"""``longctx doctor`` on the CPU: every check reports, a wrong kernel or a broken SP step FAILS, and
the exit status follows. The CUDA path is the same code with CUDA sizes (not run in CI: no GPU)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from longctx.cli import doctor as cli
from longctx.distributed.launch import run_local
from longctx.doctor.kernels import kernel_cases
from longctx.doctor.report import FAIL, PASS, SKIP, Check

SP_NAMES = {"sp-attention zigzag", "sp-attention varlen", "sp-attention ulysses",
            "sp-train zigzag", "sp-train varlen", "sp-train ulysses", "sp-train usp"}


def _report(path) -> dict:
    return json.loads(path.read_text())


def test_cpu_single_process_passes_and_names_every_check(tmp_path, capsys):
    """--device cpu: exit 0, one row per check (kernels, loss, SP rows skipped on one rank, probe), table printed."""
    out = tmp_path / "doctor.json"
    assert cli.main(["--device", "cpu", "--json", str(out)]) == 0
    report = _report(out)
    rows = {c["name"]: c for c in report["checks"]}
    kernels = {f"kernel {c.name}" for c in kernel_cases("cpu", small=True)}
    assert set(rows) == {"env", "probe"} | kernels | SP_NAMES
    assert all(c["status"] in (PASS, SKIP) for c in rows.values())
    assert rows["kernel loss/chunked-fp32"]["status"] == PASS and rows["kernel varlen/default-bf16"]["status"] == PASS
    assert all(rows[n]["status"] == SKIP and "torchrun" in rows[n]["detail"] for n in SP_NAMES)
    assert rows["probe"]["numbers"]["tok_s"] > 0 and rows["probe"]["numbers"]["plan_gib"] > 0
    assert report["ok"] is True and report["exit_status"] == 0 and "torch" in report["env"]
    table = capsys.readouterr().out
    assert "kernel loss/chunked-fp32" in table and "passed, 0 failed" in table


def test_a_wrong_loss_kernel_is_a_failed_row_and_exit_status_1(tmp_path, monkeypatch):
    """A chunked loss 10% too large fails its rows against the float64 oracle; the other kernels still pass."""
    import longctx.core.loss as lm

    real = lm.chunked_lm_loss
    monkeypatch.setattr(lm, "chunked_lm_loss", lambda *a, **k: real(*a, **k) * 1.1)
    out = tmp_path / "doctor.json"
    assert cli.main(["--device", "cpu", "--skip", "parity,probe", "--json", str(out)]) == 1
    rows = {c["name"]: c for c in _report(out)["checks"]}
    assert rows["kernel loss/chunked-fp32"]["status"] == FAIL and rows["kernel loss/chunked-fp32"]["numbers"]["rel_err"] > 0.05
    assert rows["kernel varlen/default-fp32"]["status"] == PASS


def test_a_kernel_that_raises_is_a_failed_row(tmp_path, monkeypatch):
    import longctx.doctor.kernels as kernels

    def broken(*a, **k):
        raise RuntimeError("no kernel image is available for execution on the device")

    monkeypatch.setattr(kernels, "varlen_attention", broken)
    out = tmp_path / "doctor.json"
    assert cli.main(["--device", "cpu", "--skip", "parity,probe,env", "--json", str(out)]) == 1
    row = {c["name"]: c for c in _report(out)["checks"]}["kernel varlen/default-fp32"]
    assert row["status"] == FAIL and "no kernel image" in row["detail"]


def doctor_rank(rank: int, world: int, out: str, plant_bug: bool) -> int:
    """One rank of `torchrun -m longctx doctor` (run_local has made the gloo group); ``plant_bug``: SP
    gradients are not summed over the ranks, as a trainer that lost the SP group would do."""
    if plant_bug:
        import longctx.train.step as step

        step.all_reduce_grads = lambda params, group: None
    return cli.main(["--device", "cpu", "--skip", "kernels,probe", "--json", out])


@pytest.mark.parametrize("plant_bug", [False, True], ids=["exact", "grads-not-reduced"])
def test_sp_parity_on_two_gloo_ranks(tmp_path, plant_bug):
    """2 ranks: each layout's attention matches the oracle and a checkpointed trainer step matches 1 rank
    (usp skipped: it needs 4); with the gradients left unreduced every sp-train row FAILS, exit 1 on all ranks."""
    out = tmp_path / "doctor.json"
    codes = run_local(doctor_rank, 2, str(out), plant_bug, timeout=180, threads_per_rank=1)
    rows = {c["name"]: c for c in _report(out)["checks"]}
    assert set(rows) == {"env"} | SP_NAMES
    assert rows["sp-train usp"]["status"] == SKIP and "4" in rows["sp-train usp"]["detail"]
    assert all(rows[n]["status"] == PASS for n in SP_NAMES if n.startswith("sp-attention"))
    trained = [rows[f"sp-train {lay}"] for lay in ("zigzag", "varlen", "ulysses")]
    if plant_bug:
        assert codes == [1, 1] and all(r["status"] == FAIL for r in trained)
    else:
        assert codes == [0, 0] and all(r["status"] == PASS and r["numbers"]["rel_err"] < 1e-5 for r in trained)
        assert "checkpointing on" in trained[0]["detail"]


def test_a_row_failed_on_any_rank_fails_the_merged_table():
    ok, bad = Check("kernel x", PASS, {"rel_err": 1e-7}), Check("kernel x", FAIL, {"rel_err": 0.3}, "too far")
    merged = cli.merge_ranks([[ok, Check("env", PASS)], [bad, Check("env", PASS)]])
    assert [(c.name, c.status) for c in merged] == [("kernel x", FAIL), ("env", PASS)]
    assert merged[0].detail == "rank 1: too far"


def test_help_reads_like_documentation(capsys):
    """`longctx doctor --help`: the commands to run (one GPU, torchrun, CPU), every check, the exit status."""
    from longctx import cli as top

    assert "doctor" in top.SUBCOMMANDS
    with pytest.raises(SystemExit) as exc:
        top.main(["doctor", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for needle in ("torchrun --nproc-per-node", "--device cpu", "float64", "sp-train", "usp", "probe", "Exit status 1",
                   "--json", "--seq-len", "--layers", "--skip"):
        assert needle in text, needle


def test_doctor_imports_without_datasets():
    """The GPU image has no `datasets`: every module `longctx doctor` runs must import without it."""
    code = ("import sys; sys.modules['datasets'] = None; sys.modules['pyarrow'] = None\n"
            "import longctx.cli.doctor, longctx.doctor.parity, longctx.doctor.probe, longctx.doctor.kernels\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
