"""One command for a GPU lease: ``longctx doctor``, the GPU tests, then the GPU benchmarks, into ONE JSON report.

    PYTHONUNBUFFERED=1 python scripts/gpu_run.py --out $OUT/gpu_report.json    # on the lent GPU (<= 9 min)
    python scripts/gpu_run.py --device cpu --no-bench --out /tmp/r.json          # the same tests on a CPU
    python scripts/gpu_run.py --dry-run --out /tmp/r.json                        # every step, tiny, on the CPU

0. ``python -m longctx doctor --device <device> --json ...`` (the shipped check users run: every
   kernel vs its float64 oracle, the probe; its report goes under ``doctor``);
1. ``pytest tests/gpu`` plus the CPU tests of the paths CUDA delegates to (``CPU_TESTS``), with
   the outcome plugin ``scripts/pytest_outcomes.py``;
2. ``benchmarks/bench_gpu.py`` (throughput and peak memory, baseline vs ours; ``--quick`` sizes
   unless ``--full-bench``);
3. ``benchmarks/bench_gpu_model.py`` (a Llama-3-8B-shaped step at 32K/128K, the longest length
   that fits, MFU and the planner beside each);
then the report: ``env`` (versions, the GPU, which optional packages import), ``tests`` (each
test's outcome, message and recorded numbers), ``bench`` and ``model`` (the rows). Each step is a
child process with a wall-clock limit, killed with its process group when it runs over (the report
then says ``timed_out`` and names the test that was running; the benchmarks' rows written so far
are kept): it never hangs the lease. The default limits (150 + 150 + 45 + 135 s) end the run within
8 minutes. The report is rewritten after every step, so even a run killed from outside leaves
the finished steps. Exit status 1 when the doctor or a test failed, errored or timed out, or
``--device cuda`` found no CUDA; benchmark numbers never fail the run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from longctx.doctor.env import environment  # noqa: E402  (versions, the GPU, optional packages)
from longctx.core.io import atomic_write_text  # noqa: E402

GPU_TESTS = "tests/gpu"
# CPU twins of the CUDA paths (~10 s); test_sdpa_kernels also holds CUDA-parametrized rows that run there
CPU_TESTS = ("tests/attention/test_attention.py", "tests/core/test_loss_chunked.py",
             "tests/attention/test_sdpa_kernels.py")
DEVICE_ENV = "LONGCTX_GPU_TESTS_DEVICE"  # read by tests/gpu/conftest.py
DRY_RUN_TESTS = ("tests/gpu/test_attention_blocks_cuda.py",)


def run_child(cmd: list[str], timeout: float, env: dict | None = None) -> tuple[int | None, float]:
    """(exit status or None when killed at ``timeout``, seconds); output goes straight to ours."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)  # own group: ranks die with it
    try:
        return proc.wait(timeout=timeout), time.perf_counter() - t0
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return None, time.perf_counter() - t0


def run_tests(paths: list[str], timeout: float, device: str, keyword: str = "") -> dict:
    """pytest ``paths`` in a child process; the outcome plugin's JSON, plus ``timed_out``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "outcomes.json"
        cmd = [sys.executable, "-m", "pytest", "-p", "pytest_outcomes", "--outcomes-json", str(out), "-p",
               "no:cacheprovider", "-q", "-rfEs", "--tb=short", *(["-k", keyword] if keyword else []), *paths]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "scripts"), str(ROOT), os.environ.get("PYTHONPATH", "")])}
        if device == "cpu":
            env[DEVICE_ENV] = "cpu"
        print("$ " + " ".join(cmd), flush=True)
        status, seconds = run_child(cmd, timeout, env)
        report = json.loads(out.read_text()) if out.exists() else {"counts": {}, "tests": []}
    for t in report["tests"]:
        if t["outcome"] == "running":
            t.update(outcome="timeout", message=f"still running when the {timeout:.0f} s limit killed pytest")
    report["counts"] = {o: sum(t["outcome"] == o for t in report["tests"]) for o in {t["outcome"] for t in report["tests"]}}
    return {**report, "exit_status": status, "timed_out": status is None, "seconds": round(seconds, 1), "paths": paths}


def _bench_child(script: str, args: list[str], timeout: float) -> dict:
    """``benchmarks/<script>`` in a child process writing ``--json``; its rows (also those written
    before a timeout killed it), plus ``exit_status``/``timed_out``/``seconds``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        cmd = [sys.executable, str(ROOT / "benchmarks" / script), *args, "--json", str(out)]
        print("$ " + " ".join(cmd), flush=True)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        status, seconds = run_child(cmd, timeout, env)
        try:
            rows = json.loads(out.read_text())["rows"] if out.exists() else []
        except ValueError:
            rows = []
    return {"exit_status": status, "timed_out": status is None, "seconds": round(seconds, 1), "rows": rows}


def run_doctor(timeout: float, device: str, tiny: bool) -> dict:
    """``longctx doctor`` in a child process; its JSON report (``None`` if it wrote none), plus ``timed_out``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "doctor.json"
        cmd = [sys.executable, "-m", "longctx", "doctor", "--device", device, "--json", str(out),
               *(["--seq-len", "1k", "--layers", "1"] if tiny else [])]
        print("$ " + " ".join(cmd), flush=True)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        status, seconds = run_child(cmd, timeout, env)
        report = json.loads(out.read_text()) if out.exists() else None
    return {"exit_status": status, "timed_out": status is None, "seconds": round(seconds, 1), "report": report}


def run_bench(timeout: float, device: str, quick: bool) -> dict:
    """benchmarks/bench_gpu.py in a child process; its rows, plus ``timed_out``."""
    return {**_bench_child("bench_gpu.py", ["--device", device, *(["--quick"] if quick else [])], timeout), "quick": quick}


def run_model(timeout: float, device: str, tiny: bool) -> dict:
    """benchmarks/bench_gpu_model.py with a time budget inside the limit (its own skips beat a kill)."""
    args = ["--device", device, "--budget", str(max(10.0, timeout - 35)), *(["--tiny"] if tiny else [])]
    return {**_bench_child("bench_gpu_model.py", args, timeout), "tiny": tiny}


def write_report(report: dict, path: Path) -> None:
    """Atomically (re)write the report: each finished step is on disk before the next starts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(report, indent=1, default=str))


def failed(report: dict) -> bool:
    tests, bench, doctor = report["tests"], report.get("bench") or {}, report.get("doctor")
    bad = {"failed", "error", "timeout", "xpassed"}
    return ((doctor is not None and doctor["exit_status"] != 0) or tests["timed_out"] or bench.get("timed_out", False) or any(t["outcome"] in bad for t in tests["tests"])
            or tests.get("exit_status") not in (0, 5))  # 5: nothing collected (e.g. -k matched nothing)


def build_parser() -> argparse.ArgumentParser:
    out = Path(os.environ["OUT"]) / "gpu_report.json" if os.environ.get("OUT") else Path("gpu_report.json")
    p = argparse.ArgumentParser(prog="python scripts/gpu_run.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=out, help=f"the JSON report (default: {out})")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                   help="cpu: run tests/gpu on the CPU (CUDA-only tests skip) and tiny benchmarks; checks the harness")
    p.add_argument("--tests", nargs="+", default=None, help=f"pytest paths (default: {GPU_TESTS} and {' '.join(CPU_TESTS)})")
    p.add_argument("-k", dest="keyword", default="", help="pytest -k expression")
    p.add_argument("--doctor-timeout", type=float, default=150, help="seconds for longctx doctor (default 150)")
    p.add_argument("--no-doctor", action="store_true", help="skip the longctx doctor step")
    p.add_argument("--tests-timeout", type=float, default=150, help="seconds for all tests (default 150)")
    p.add_argument("--bench-timeout", type=float, default=45, help="seconds for bench_gpu.py (default 45)")
    p.add_argument("--model-timeout", type=float, default=135,
                   help="seconds for bench_gpu_model.py, the 8B-shaped steps and the longest-length search (default 135)")
    p.add_argument("--quick", action="store_true", help="(the default now) smaller bench_gpu.py sizes, no 128K pack")
    p.add_argument("--full-bench", action="store_true", help="bench_gpu.py at full sizes (about 3 min: raise --bench-timeout)")
    p.add_argument("--no-bench", action="store_true", help="tests only")
    p.add_argument("--no-model", action="store_true", help="skip bench_gpu_model.py")
    p.add_argument("--dry-run", action="store_true",
                   help=f"every step on the CPU at tiny sizes (tests: {' '.join(DRY_RUN_TESTS)}): checks the runner end to end")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.dry_run:  # a shared CPU is slow: generous limits, it only has to get through
        args.device = "cpu"
        args.doctor_timeout, args.tests_timeout, args.bench_timeout, args.model_timeout = (max(x, 300) for x in (
            args.doctor_timeout, args.tests_timeout, args.bench_timeout, args.model_timeout))
    t0 = time.perf_counter()
    report: dict = {"env": {**environment(), "device": args.device, "argv": sys.argv[1:] if argv is None else argv},
                    "ok": False, "partial": True}
    print(json.dumps(report["env"], indent=1), flush=True)
    write_report(report, args.out)
    report["doctor"] = None if args.no_doctor else run_doctor(args.doctor_timeout, args.device, args.device == "cpu")
    write_report(report, args.out)
    default_tests = list(DRY_RUN_TESTS) if args.dry_run else [GPU_TESTS] + [p for p in CPU_TESTS if (ROOT / p).exists()]
    report["tests"] = run_tests(args.tests or default_tests, args.tests_timeout, args.device, args.keyword)
    write_report(report, args.out)
    no_cuda = args.device == "cuda" and not report["env"]["cuda_available"]
    if no_cuda:  # every CUDA test skipped: say so loudly rather than report an all-skipped run as OK
        report["error"] = ("CUDA is not available: the doctor failed, tests/gpu all skipped, benchmarks not run "
                           "(--device cpu checks the harness)")
        print("ERROR: " + report["error"], flush=True)
    bench = not (args.no_bench or no_cuda)
    report["bench"] = run_bench(args.bench_timeout, args.device, not args.full_bench) if bench else None
    write_report(report, args.out)
    report["model"] = run_model(args.model_timeout, args.device, args.device == "cpu") if bench and not args.no_model else None
    report.pop("partial")
    report["ok"] = not no_cuda and not failed(report)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    write_report(report, args.out)
    doctor = report["doctor"]
    print(f"\ndoctor {'skipped' if doctor is None else 'exit ' + str(doctor['exit_status'])}; "
          f"tests {report['tests']['counts']}{' TIMED OUT' if report['tests']['timed_out'] else ''}; "
          f"{'OK' if report['ok'] else 'FAILED'} in {report['seconds']} s; wrote {args.out}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
