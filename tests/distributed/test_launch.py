"""run_local: a real gloo group on local processes that reports failures and never hangs."""

import pytest

from longctx.distributed.launch import RankFailed, run_local
from longctx.core.errors import LongctxError

from support import TESTS, dist_fns


class NeedsTwoArguments(Exception):
    """Pickles, but cannot be unpickled: pickle replays ``cls(*self.args)`` with the one formatted message."""

    def __init__(self, what: str, why: str):
        super().__init__(f"{what}: {why}")


def raise_user_error_on_rank_one(rank: int, world_size: int) -> None:
    if rank == 1:
        raise LongctxError("x: bad")


def raise_unpicklable_on_rank_one(rank: int, world_size: int) -> None:
    if rank == 1:
        raise NeedsTwoArguments("widget", "cannot travel")


def test_run_local_returns_each_ranks_value_in_rank_order():
    assert run_local(dist_fns.allreduce_rank, 3) == [3.0, 3.0, 3.0]


def test_run_local_raises_with_the_failing_ranks_traceback():
    with pytest.raises(RuntimeError, match="boom on rank 1"):
        run_local(dist_fns.fail_on_rank_one, 2, timeout=60)


def test_run_local_hands_back_the_ranks_exception_object():
    """The failure carries the rank, the exception object itself (type and message) and its traceback text."""
    with pytest.raises(RankFailed) as exc:
        run_local(dist_fns.fail_on_rank_one, 2, timeout=60)
    err = exc.value
    assert err.rank == 1
    assert type(err.error) is ValueError and str(err.error) == "boom on rank 1"
    assert "Traceback" in err.traceback and "fail_on_rank_one" in err.traceback
    assert isinstance(err, RuntimeError)


def test_a_ranks_user_error_arrives_as_that_longctx_error():
    """A LongctxError raised on a rank is the same type with exactly the same message in the parent."""
    with pytest.raises(RankFailed) as exc:
        run_local(raise_user_error_on_rank_one, 2, timeout=60)
    assert type(exc.value.error) is LongctxError and str(exc.value.error) == "x: bad"


def test_an_unpicklable_exception_still_reports_type_message_and_traceback():
    """An exception that cannot be unpickled becomes a RuntimeError naming its type and message; the text stays."""
    with pytest.raises(RankFailed) as exc:
        run_local(raise_unpicklable_on_rank_one, 2, timeout=60)
    err = exc.value
    assert type(err.error) is RuntimeError
    assert str(err.error) == "test_launch.NeedsTwoArguments: widget: cannot travel"
    assert "raise_unpicklable_on_rank_one" in err.traceback and "NeedsTwoArguments: widget: cannot travel" in str(err)


def test_launch_local_raises_a_ranks_user_error_as_the_one_line_longctx_error(tmp_path):
    """`longctx train --nproc 2` reports a rank's LongctxError with exactly the message one process gives."""
    from longctx.train.config import RunConfig
    from longctx.train.run import launch_local, run_training

    cfg = RunConfig()
    cfg.model.path = str(tmp_path / "no-model")
    cfg.data.path = str(tmp_path / "no-packs")
    cfg.checkpoint.out = str(tmp_path / "run")
    with pytest.raises(LongctxError) as alone:
        run_training(cfg)
    with pytest.raises(LongctxError) as ranks:
        launch_local(cfg, 2, timeout=120)
    assert type(ranks.value) is LongctxError and str(ranks.value) == str(alone.value)
    assert "no-packs" in str(ranks.value) and "\n" not in str(ranks.value)


def test_run_local_times_out_instead_of_hanging():
    with pytest.raises(TimeoutError):
        run_local(dist_fns.hang, 2, timeout=8)


def test_run_local_returns_tensors_intact_after_ranks_exit():
    """Tensor results survive the rank process exiting (no shared-memory file descriptors)."""
    out = run_local(dist_fns.return_tensor, 2)
    assert [o["t"].sum().item() for o in out] == [0.0, 1000.0]


def test_sigterm_to_the_launcher_reaches_every_rank(tmp_path):
    """SIGTERM sent to the launching process is forwarded to the ranks (as torchrun does), which then finish."""
    import os
    import signal
    import subprocess
    import sys
    import time

    code = ("import sys; sys.path.insert(0, %r); from support import dist_fns; "
            "from longctx.distributed.launch import run_local; "
            "print(run_local(dist_fns.wait_for_sigterm, 2, %r, timeout=90))") % (str(TESTS), str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("rank*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert out.strip() == "['sigterm', 'sigterm']"


def sleep_after_writing_pid(rank: int, world_size: int, pid_dir: str) -> None:
    """A rank that records its PID and then sleeps far longer than any test (an orphan would outlive it)."""
    import os
    import time
    from pathlib import Path

    Path(pid_dir, f"rank{rank}.pid").write_text(str(os.getpid()))
    time.sleep(300)


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for init to reap it counts as gone)."""
    import os

    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def test_ranks_die_when_their_launcher_is_sigkilled(tmp_path):
    """SIGKILL of the launcher alone (no handler can run): both ranks are gone within a few seconds."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    code = ("import sys; sys.path[:0] = %r; import test_launch; from longctx.distributed.launch import run_local; "
            "run_local(test_launch.sleep_after_writing_pid, 2, %r, timeout=600)") % ([str(Path(__file__).parent), str(TESTS)],
                                                                                   str(tmp_path))
    launcher = subprocess.Popen([sys.executable, "-c", code])
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(pids) < 2:
            files = sorted(tmp_path.glob("rank*.pid"))
            if len(files) == 2 and all(f.read_text() for f in files):
                pids = [int(f.read_text()) for f in files]
            time.sleep(0.2)
        assert len(pids) == 2, "the ranks did not start"
        launcher.send_signal(signal.SIGKILL)
        launcher.wait(timeout=10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.1)
        assert not [p for p in pids if _alive(p)], "ranks outlived their launcher"
    finally:
        if launcher.poll() is None:
            launcher.kill()
        for p in pids:
            if _alive(p):
                os.kill(p, signal.SIGKILL)
