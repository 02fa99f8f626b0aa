"""Run the trainer from library code: one process (``run_training``) or N local gloo ranks (``launch_local``).

The ``longctx train`` CLI, the quick start and the organism recipe all start training through
these two functions, so none of them imports a CLI module. Under ``torchrun`` / ``accelerate
launch`` every process simply calls :func:`run_training`.
"""

from __future__ import annotations

from longctx.core.errors import LongctxError
from longctx.distributed.launch import RankFailed, run_local
from longctx.train.config import RunConfig, from_dict
from longctx.train.trainer import Trainer


def run_training(cfg: RunConfig) -> dict:
    """Train this rank (or the single process) with ``cfg``; returns the trainer's summary dict."""
    return Trainer(cfg).run()


def _rank_main(rank: int, world_size: int, cfg_dict: dict) -> dict:
    """One spawned local rank (module-level so ``spawn`` can import it)."""
    out = run_training(from_dict(cfg_dict))
    out.pop("history", None)
    return out


def launch_local(cfg: RunConfig, nproc: int, timeout: float = 7 * 24 * 3600.0) -> list[dict]:
    """Run ``cfg`` on ``nproc`` local gloo ranks (CPU): the same code path as torchrun.

    A user error on a rank (``LongctxError``: a bad config value, a missing file) is raised here as
    that same one-line ``LongctxError``, recognised by its type; anything else stays a
    :class:`~longctx.distributed.launch.RankFailed` (a ``RuntimeError``) with the rank's traceback.
    """
    try:
        return run_local(_rank_main, nproc, cfg.to_dict(), timeout=timeout)
    except RankFailed as err:
        if isinstance(err.error, LongctxError):
            raise err.error from None
        raise
