"""Run a function on N local ranks with a real ``torch.distributed`` process group.

Used by the tests (ring attention vs full attention on 2–4 gloo ranks), the benchmarks and the
quick start (2 sequence-parallel ranks on a laptop). Production multi-GPU runs use ``torchrun`` /
``accelerate launch`` instead; the code under test is the same.

Why not ``torch.multiprocessing.spawn``: it has no timeout. A hung collective must fail the test
after ``timeout`` seconds, never hang CI.
"""

from __future__ import annotations

import os
import pickle
import queue
import signal
import threading
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


class RankFailed(RuntimeError):
    """A rank raised: the parent's view of that failure.

    ``error`` is the rank's exception object itself (unpickled in the parent), so callers can act on
    its type (``isinstance(err.error, LongctxError)``) instead of parsing text; ``traceback`` is the
    rank's formatted traceback, which is also the message, so the failure reads as it happened. A
    ``RuntimeError`` so code that catches any launch failure keeps working.
    """

    def __init__(self, rank: int, error: BaseException, traceback_text: str):
        super().__init__(f"rank {rank} failed:\n{traceback_text}")
        self.rank = rank
        self.error = error
        self.traceback = traceback_text

    def __reduce__(self):
        return type(self), (self.rank, self.error, self.traceback)


def _describe(err: BaseException) -> str:
    """``module.Type: message``: what stands in for an exception object that cannot travel."""
    cls = type(err)
    kind = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    return f"{kind}: {err}"


def _failure_report(err: BaseException) -> tuple[bytes | None, str, str]:
    """What a failed rank sends: ``(pickled exception or None, traceback text, "Type: message")``.

    The exception travels as plain pickle bytes, checked by a round trip here: an exception whose
    class needs constructor arguments pickle cannot replay fails only when *loaded*.
    """
    text = traceback.format_exc()
    try:
        blob = pickle.dumps(err)
        pickle.loads(blob)
    except Exception:  # noqa: BLE001 - any pickling failure means: send the text only
        blob = None
    return blob, text, _describe(err)


def _received_error(blob: bytes | None, description: str) -> BaseException:
    """The rank's exception object, or a ``RuntimeError("Type: message")`` when it could not travel."""
    if blob is not None:
        try:
            return pickle.loads(blob)
        except Exception:  # noqa: BLE001 - e.g. its class is not importable in this process
            pass
    return RuntimeError(description)


def _kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def die_with_parent(parent_pid: int, poll_s: float = 0.5) -> None:
    """Make this process die when ``parent_pid`` (its launcher) does, as torchrun's workers do.

    A rank that outlives a SIGKILLed launcher would keep training and writing checkpoints unseen.
    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``; everywhere (and for a parent that died before the
    prctl call): a daemon thread that kills this process once ``os.getppid()`` stops being the launcher.
    """
    try:
        import ctypes  # noqa: PLC0415  (Linux prctl only; kept beside its fallback)
        import ctypes.util  # noqa: PLC0415  (Linux prctl only; kept beside its fallback)

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the watchdog below does it
        pass
    if os.getppid() != parent_pid:  # the launcher died before the prctl took effect
        _kill_self()

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent_pid:
                _kill_self()

    threading.Thread(target=watch, name="die-with-launcher", daemon=True).start()


def _worker(rank: int, world_size: int, port: int, backend: str, threads: int, fn: Callable, args: tuple, results,
            parent_pid: int | None = None) -> None:
    if parent_pid is not None:
        die_with_parent(parent_pid)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world_size))
    torch.set_num_threads(threads)
    try:
        kwargs = {}
        if backend == "nccl":  # the device before the group: NCCL binds its communicator to it
            device = torch.device("cuda", rank % torch.cuda.device_count())
            torch.cuda.set_device(device)
            kwargs["device_id"] = device
        store = dist.TCPStore("127.0.0.1", port, world_size, is_master=False, timeout=timedelta(seconds=60))
        dist.init_process_group(backend, store=store, rank=rank, world_size=world_size, timeout=timedelta(seconds=60),
                                **kwargs)
        out = fn(rank, world_size, *args)
        dist.barrier()
        # Plain pickle bytes, not the multiprocessing reducer: that one shares tensor storage through
        # file descriptors, which race with this process exiting (FileNotFoundError in the parent).
        results.put((rank, True, pickle.dumps(out)))
    except BaseException as err:  # report every failure to the parent, which raises it
        results.put((rank, False, _failure_report(err)))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_local(
    fn: Callable[..., Any],
    world_size: int,
    *args: Any,
    timeout: float = 180.0,
    backend: str = "gloo",
    threads_per_rank: int | None = None,
) -> list[Any]:
    """Call ``fn(rank, world_size, *args)`` on ``world_size`` fresh processes joined in one group.

    ``fn`` must be importable (a module-level function). Returns the per-rank return values in
    rank order. Raises :class:`RankFailed` (a ``RuntimeError`` holding the failing rank's exception
    object and traceback), ``RuntimeError`` when a rank dies without reporting, or ``TimeoutError``
    (after killing every rank) when the ranks do not finish within ``timeout`` seconds.

    A SIGTERM sent to this (launching) process is forwarded to every rank, as torchrun does, so a
    trainer's "save a checkpoint and exit" handler runs on all of them; the launcher keeps waiting
    for their results. If the launcher itself is killed (SIGKILL, no handler runs), every rank dies
    with it (:func:`die_with_parent`) instead of training on as an orphan.

    With ``backend="nccl"`` each rank sets its CUDA device (``rank`` modulo the device count) before joining
    the group and passes it as ``device_id``, so ``torch.cuda.current_device()`` is that rank's device in ``fn``.
    """
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    threads = threads_per_rank or max(1, (os.cpu_count() or 1) // world_size)
    # The launcher serves the group's rendezvous store itself, on a port the OS hands it and it keeps: a port
    # picked free and bound later by rank 0 can be taken in between by another run (two suites at once). The
    # local `store` keeps serving until this function returns, after the ranks have left the group.
    store = dist.TCPStore("127.0.0.1", 0, None, is_master=True, timeout=timedelta(seconds=60), wait_for_workers=False)
    port = store.port
    procs = [
        ctx.Process(target=_worker, args=(r, world_size, port, backend, threads, fn, args, results, os.getpid()),
                    daemon=True)
        for r in range(world_size)
    ]
    for p in procs:
        p.start()
    out: dict[int, Any] = {}
    finished = False

    def forward_sigterm(signum, frame):
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, forward_sigterm) if in_main else None
    deadline = time.monotonic() + timeout
    try:
        while len(out) < world_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{fn.__name__} on {world_size} ranks did not finish within {timeout:.0f}s")
            try:
                rank, ok, value = results.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead and results.empty():
                    raise RuntimeError(f"rank process exited with code {dead[0].exitcode} before reporting")
                continue
            if not ok:
                blob, text, description = value
                raise RankFailed(rank, _received_error(blob, description), text)
            out[rank] = pickle.loads(value)
        finished = True
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
        for p in procs:  # after a failure, do not wait for ranks stuck in a collective
            p.join(timeout=10 if finished else 0.1)
            if p.is_alive():
                p.kill()
                p.join()
    return [out[r] for r in range(world_size)]
