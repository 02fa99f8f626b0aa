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
