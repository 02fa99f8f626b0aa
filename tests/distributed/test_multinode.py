"""Two ``torchrun`` launchers as two "nodes" on loopback (gloo, c10d rendezvous), DP 2 x SP 2 with
each SP group inside a node: the same training as one launcher with 4 ranks; a lost node ends the
other with one line per rank and a non-zero status, within a stated time; a resume is exact.

Every launcher is a real ``python -m torch.distributed.run`` subprocess running ``longctx train``
(the command docs/multinode.md gives). About 130-160 s on 2 shared CPU cores (4 launches of 4 ranks; measured 157 s).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from longctx.train.checkpoint import verify_checkpoint

from support import ROOT, TESTS, train_ranks as tr

pytestmark = pytest.mark.slow

RUN_S = 300  # one launch of 4 tiny ranks takes ~25 s on 2 busy cores
COLLECTIVE_TIMEOUT_S = 30  # parallel.timeout_s: no collective waits longer for a lost node
EXIT_AFTER_KILL_S = COLLECTIVE_TIMEOUT_S + 30  # the surviving node's launcher exits within this
STEPS = 4


@pytest.fixture(scope="module")
def packs(tmp_path_factory) -> Path:
    """12+ packs of 128 tokens: DP 2 x 4 steps reads 8 without wrapping."""
    return tr.make_packs(tmp_path_factory.mktemp("packs") / "p", tr.random_seqs(30, 12, 50, seed=4), 128)


def free_port() -> int:
    """A port free now, for torchrun's rendezvous started next (it may be taken in between: a test-only risk)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(TESTS), env.get("PYTHONPATH", "")])
    if "lo" in {name for _, name in socket.if_nameindex()}:
        env["GLOO_SOCKET_IFNAME"] = "lo"  # gloo's data connections on loopback too
    return env


def _train_args(model: Path, packs: Path, out: Path) -> list[str]:
    sets = {"model.path": model, "data.path": packs, "checkpoint.out": out, "train.steps": STEPS,
            "parallel.sp_degree": 2, "parallel.layout": "varlen", "parallel.timeout_s": COLLECTIVE_TIMEOUT_S,
            "checkpoint.every": 2, "checkpoint.export": False, "optim.lr": 1e-3, "optim.warmup_steps": 0,
            "log.every": 1, "log.progress": False, "log.tensorboard": False}
    return [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]


def _launch(nnodes: int, node_rank: int, nproc: int, port: int, args: list[str], log: Path, module: str = "longctx",
            **env: str) -> subprocess.Popen:
    """One node's launcher (its own process group, so the test can kill the whole node)."""
    head = ["train"] if module == "longctx" else []
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(nnodes), "--node-rank", str(node_rank),
           "--nproc-per-node", str(nproc), "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
           "--rdzv-id", "longctx-test", "--rdzv-conf", f"is_host={int(node_rank == 0)}",
           "--local-addr", "127.0.0.1", "--max-restarts", "0", "-m", module, *head, *args]
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=_env(**env), cwd=ROOT,
                            start_new_session=True)


def _kill_node(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _wait_all(procs: list[subprocess.Popen], logs: list[Path], timeout: float = RUN_S) -> None:
    """Every launcher exits 0 within ``timeout`` (else all are killed and the test fails with their logs)."""
    deadline = time.monotonic() + timeout
    try:
        for p in procs:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        for p in procs:
            _kill_node(p)
        pytest.fail(f"launchers still running after {timeout} s:\n" + "\n".join(l.read_text()[-3000:] for l in logs))
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log.read_text()[-5000:]


def _two_nodes(model: Path, packs: Path, out: Path, logs: Path) -> None:
    port = free_port()
    logs.mkdir(parents=True, exist_ok=True)
    paths = [logs / f"node{n}.log" for n in (0, 1)]
    _wait_all([_launch(2, n, 2, port, _train_args(model, packs, out), paths[n]) for n in (0, 1)], paths)


def _result(out: Path) -> tuple[list[float], dict[str, torch.Tensor]]:
    """(loss of each step from metrics.jsonl, the final checkpoint's weights)."""
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    return losses, load_file(out / "checkpoints" / f"step-{STEPS:08d}" / "model.safetensors")


def _assert_same_training(out: Path, ref: Path) -> None:
    losses, weights = _result(out)
    ref_losses, ref_weights = _result(ref)
    assert len(losses) == STEPS and losses == pytest.approx(ref_losses, abs=1e-6)
    assert weights.keys() == ref_weights.keys()
    for k, v in ref_weights.items():
        assert (weights[k] - v).abs().max().item() <= 1e-6, k


@pytest.fixture(scope="module")
def one_launcher_run(tiny_llama, packs, tmp_path_factory) -> Path:
    """The reference: one launcher with 4 ranks (DP 2 x SP 2), the same config."""
    out = tmp_path_factory.mktemp("one-launcher") / "run"
    log = out.parent / "node0.log"
    _wait_all([_launch(1, 0, 4, free_port(), _train_args(tiny_llama, packs, out), log)], [log])
    return out


def test_two_nodes_dp2_sp2_train_the_same_as_one_launcher_with_4_ranks(tiny_llama, packs, one_launcher_run, tmp_path):
    out = tmp_path / "run"
    _two_nodes(tiny_llama, packs, out, tmp_path)
    _assert_same_training(out, one_launcher_run)


@pytest.fixture(scope="module")
def killed_run(tiny_llama, packs, tmp_path_factory) -> tuple[Path, subprocess.Popen, float, str]:
    """Node 1 stops answering after step 3 (step 2 is checkpointed) and its launcher is SIGKILLed with its
    ranks; returns (run dir, node 0's launcher, seconds node 0 took to exit after the kill, node 0's log)."""
    base = tmp_path_factory.mktemp("killed")
    out, port, args = base / "run", free_port(), _train_args(tiny_llama, packs, base / "run")
    node0 = _launch(2, 0, 2, port, args, base / "node0.log")
    node1 = _launch(2, 1, 2, port, args, base / "node1.log", module="support.stalling_node", LONGCTX_TEST_STALL_AT="3")
    try:
        deadline = time.monotonic() + RUN_S
        step2 = out / "checkpoints" / "step-00000002"
        while not (step2.is_dir() and verify_checkpoint(step2) is None):
            assert node0.poll() is None and node1.poll() is None, (base / "node0.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no step-2 checkpoint in time"
            time.sleep(0.2)
        _kill_node(node1)
        killed_at = time.monotonic()
        try:
            node0.wait(timeout=EXIT_AFTER_KILL_S)
        except subprocess.TimeoutExpired:
            pass
        waited = time.monotonic() - killed_at
    finally:
        _kill_node(node1)
        _kill_node(node0)
    return out, node0, waited, (base / "node0.log").read_text()


def test_a_killed_node_ends_the_other_node_with_one_line_per_rank_and_a_nonzero_status(killed_run):
    """Node 0 exits non-zero within EXIT_AFTER_KILL_S (60 s) of node 1's death (gloo notices when
    parallel.timeout_s, 30 s, passes); each of its ranks says why in one line (no worker traceback;
    torchrun then adds its own failure summary)."""
    _, node0, waited, log = killed_run
    assert waited < EXIT_AFTER_KILL_S, log[-3000:]
    assert node0.returncode != 0
    lines = [line for line in log.splitlines() if line.startswith("longctx train: error:")]
    assert len(lines) == 2, log[-3000:]
    assert all("lost contact with another rank" in line for line in lines)
    assert not [line for line in log.splitlines() if line.startswith("[rank") and "Traceback" in line], log[-3000:]


def test_resuming_a_killed_two_node_run_on_the_same_layout_is_exact(tiny_llama, packs, killed_run, one_launcher_run):
    out = killed_run[0]
    _two_nodes(tiny_llama, packs, out, out.parent / "resume")
    assert "(step 2)" in (out.parent / "resume" / "node0.log").read_text()
    _assert_same_training(out, one_launcher_run)
