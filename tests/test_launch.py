"""run_local: a real gloo group on local processes that reports failures and never hangs."""

import pytest

from longctx.distributed.launch import run_local

import _dist_fns


def test_run_local_returns_each_ranks_value_in_rank_order():
    assert run_local(_dist_fns.allreduce_rank, 3) == [3.0, 3.0, 3.0]


def test_run_local_raises_with_the_failing_ranks_traceback():
    with pytest.raises(RuntimeError, match="boom on rank 1"):
        run_local(_dist_fns.fail_on_rank_one, 2, timeout=60)


def test_run_local_times_out_instead_of_hanging():
    with pytest.raises(TimeoutError):
        run_local(_dist_fns.hang, 2, timeout=8)


def test_run_local_returns_tensors_intact_after_ranks_exit():
    """Tensor results survive the rank process exiting (no shared-memory file descriptors)."""
    out = run_local(_dist_fns.return_tensor, 2)
    assert [o["t"].sum().item() for o in out] == [0.0, 1000.0]


def test_sigterm_to_the_launcher_reaches_every_rank(tmp_path):
    """SIGTERM sent to the launching process is forwarded to the ranks (as torchrun does), which then finish."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    code = ("import sys; sys.path.insert(0, %r); import _dist_fns; "
            "from longctx.distributed.launch import run_local; "
            "print(run_local(_dist_fns.wait_for_sigterm, 2, %r, timeout=90))") % (str(Path(__file__).parent), str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("rank*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert out.strip() == "['sigterm', 'sigterm']"
