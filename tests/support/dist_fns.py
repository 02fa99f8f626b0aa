"""Module-level functions run on spawned ranks by tests (spawn needs importable functions)."""

import torch
import torch.distributed as dist


def allreduce_rank(rank: int, world_size: int) -> float:
    t = torch.tensor([float(rank)])
    dist.all_reduce(t)
    return t.item()


def fail_on_rank_one(rank: int, world_size: int) -> None:
    if rank == 1:
        raise ValueError("boom on rank 1")
    return None


def hang(rank: int, world_size: int) -> None:
    if rank == 0:
        import time
        time.sleep(60)


def return_tensor(rank: int, world_size: int):
    return {"rank": rank, "t": torch.full((1000,), float(rank))}


def wait_for_sigterm(rank: int, world_size: int, ready_dir: str) -> str:
    """Mark this rank ready, then wait (up to 60 s) for a SIGTERM; report whether one came."""
    import signal
    import threading
    from pathlib import Path

    got = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: got.set())
    Path(ready_dir, f"rank{rank}").touch()
    return "sigterm" if got.wait(60) else "no signal"
