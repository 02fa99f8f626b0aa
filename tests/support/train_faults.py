"""Finished training runs for the fault tests (tests/train/test_train_faults.py, test_checkpoint_faults.py):
built once per test module, then copied before each test damages or resumes them."""

from __future__ import annotations

import shutil
from pathlib import Path

from longctx.train.trainer import Trainer
from support import train_ranks as tr

NO_EXPORT = {"checkpoint.export": False}  # checkpoints only: the fault tests never read the exported model


def finished_run(model: Path, packs: Path, out: Path, steps: int) -> Path:
    """``out`` after ``steps`` optimizer steps with a complete checkpoint after each one."""
    Trainer(tr.base_config(model, packs, out, **{"train.steps": steps, "checkpoint.every": 1}, **NO_EXPORT)).run()
    return out


def copy_run(run: Path, dst: Path) -> Path:
    """A private copy of a shared run (the module-scoped runs are read-only)."""
    shutil.copytree(run, dst)
    return dst
