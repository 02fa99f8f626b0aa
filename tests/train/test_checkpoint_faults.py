"""Fault injection into checkpoint saving (issue #16): whatever point a save dies at, a resume
starts from a complete checkpoint, never from a half-written one.

A save is a sequence of file-system operations (write the weights, the optimizer, the scheduler,
the RNG, trainer.json, the manifest; rename the temporary into place; prune). We stop the save at
every one of them, in two ways:

* a kill: the process dies just before the operation (simulated by copying the run directory as
  it is at that instant: a real SIGKILL runs no cleanup either), then a new run resumes from it;
* an I/O error raised by the operation (full disk): the save fails with one line, and the run
  directory still holds only complete checkpoints.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from longctx.core.errors import LongctxError
from longctx.train import checkpoint as ck

from support import train_ranks as tr
from support.train_faults import NO_EXPORT, copy_run


def _trainer_at_step_2(tiny_llama, packs, run: Path):
    """A trainer resumed from step 1 that has trained step 2 (not yet saved)."""
    from longctx.train.trainer import Trainer

    t = Trainer(tr.base_config(tiny_llama, packs, run, **{"train.steps": 2, "checkpoint.every": 1,
                                                          "checkpoint.allow_config_change": True}, **NO_EXPORT))
    t.setup()
    assert t.step == 1
    t.step = 2  # what the loop does after a step; the weights need not change for this test
    return t


class _Ops:
    """Wraps the file-system operations of a save, calling ``before(k, name)`` before the k-th one."""

    NAMES = ("torch.save", "save_file", "write_text", "os.replace")

    def __init__(self, monkeypatch, before):
        self.count = 0
        real = {"torch.save": torch.save, "save_file": ck.save_file, "write_text": Path.write_text,
                "os.replace": os.replace}

        def wrap(name):
            def op(*args, **kwargs):
                self.count += 1
                before(self.count, name)
                return real[name](*args, **kwargs)
            return op

        monkeypatch.setattr(ck.torch, "save", wrap("torch.save"))
        monkeypatch.setattr(ck, "save_file", wrap("save_file"))
        monkeypatch.setattr(Path, "write_text", wrap("write_text"))
        monkeypatch.setattr(os, "replace", wrap("os.replace"))


def _count_save_ops(tiny_llama, packs, run_after_step_1, tmp_path) -> int:
    run = copy_run(run_after_step_1, tmp_path / "count")
    t = _trainer_at_step_2(tiny_llama, packs, run)
    with pytest.MonkeyPatch.context() as mp:
        ops = _Ops(mp, lambda k, name: None)
        t.save()
    assert ck.verify_checkpoint(run / "checkpoints" / "step-00000002") is None
    return ops.count


def test_a_kill_at_any_point_of_a_save_resumes_from_a_complete_checkpoint(tiny_llama, packs, run_after_step_1,
                                                                          tmp_path):
    from longctx.train.trainer import Trainer

    n_ops = _count_save_ops(tiny_llama, packs, run_after_step_1, tmp_path)
    assert n_ops >= 6  # weights, optimizer, scheduler, rng, trainer.json, manifest, renames
    run = copy_run(run_after_step_1, tmp_path / "run")
    t = _trainer_at_step_2(tiny_llama, packs, run)
    snapshots: list[Path] = []

    def snapshot(k, name):  # the run directory as a SIGKILL just before operation k would leave it
        dst = tmp_path / f"killed-before-op-{k:02d}-{name}"
        shutil.copytree(run, dst, symlinks=True)
        snapshots.append(dst)

    with pytest.MonkeyPatch.context() as mp:
        _Ops(mp, snapshot)
        t.save()
    assert len(snapshots) == n_ops
    for snap in snapshots:
        chosen, _ = ck.choose_checkpoint(snap / "checkpoints")
        assert chosen is not None, snap.name
        assert ck.verify_checkpoint(chosen) is None, snap.name
        assert chosen.name in ("step-00000001", "step-00000002"), snap.name
        resumed = Trainer(tr.base_config(tiny_llama, packs, snap, **{"train.steps": 2, "checkpoint.every": 1,
                                                                      "checkpoint.allow_config_change": True},
                                         **NO_EXPORT))
        resumed.setup()  # removes the killed save's temporaries and resumes from the chosen checkpoint
        assert resumed.step == int(chosen.name.split("-")[1]), snap.name
        left = [p.name for p in (snap / "checkpoints").iterdir() if p.name.startswith(".")]
        assert left == [], f"{snap.name}: temporaries left after resume: {left}"


def test_an_io_error_at_any_point_of_a_save_leaves_only_complete_checkpoints(tiny_llama, packs, run_after_step_1,
                                                                            tmp_path):
    n_ops = _count_save_ops(tiny_llama, packs, run_after_step_1, tmp_path)
    for k_fail in range(1, n_ops + 1):
        run = copy_run(run_after_step_1, tmp_path / f"fail-at-op-{k_fail:02d}")
        t = _trainer_at_step_2(tiny_llama, packs, run)

        def fail(k, name, k_fail=k_fail):
            if k == k_fail:
                raise OSError(28, "No space left on device")

        saved = False
        with pytest.MonkeyPatch.context() as mp:
            _Ops(mp, fail)
            try:
                t.save()
                saved = True  # the failing operation was after the checkpoint was complete (pruning)
            except LongctxError as err:
                assert "\n" not in str(err) and "No space left on device" in str(err), str(err)
        root = run / "checkpoints"
        for _, path in ck.list_checkpoints(root):
            assert ck.verify_checkpoint(path) is None, f"op {k_fail}: {path.name} is not complete"
        names = [p.name for p in root.iterdir()]
        assert "step-00000001" in names or saved, f"op {k_fail}: the previous checkpoint is gone: {names}"
        assert not [n for n in names if n.startswith(".")], f"op {k_fail}: temporaries left: {names}"


class _KilledMidDelete(BaseException):
    """Stands for a SIGKILL: nothing in the trainer catches it."""


def test_a_kill_while_keep_last_deletes_an_old_checkpoint_leaves_no_half_deleted_step_dir(tiny_llama, packs,
                                                                                           tmp_path):
    """keep_last 2 at step 3 deletes step 1; killed after its first file is gone, every visible step-*
    directory is still complete, and a resume removes the leftover and starts from step 3."""
    from longctx.train.trainer import Trainer

    run = tmp_path / "run"
    sets = {"checkpoint.every": 1, "checkpoint.keep_last": 2, **NO_EXPORT}
    Trainer(tr.base_config(tiny_llama, packs, run, **{"train.steps": 2}, **sets)).run()
    real_rmtree = shutil.rmtree

    def rmtree_killed_after_one_file(path, *args, **kwargs):
        first = next(p for p in sorted(Path(path).iterdir()) if p.is_file())
        first.unlink()
        raise _KilledMidDelete(str(path))

    cfg = tr.base_config(tiny_llama, packs, run, **{"train.steps": 3, "checkpoint.allow_config_change": True}, **sets)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(shutil, "rmtree", rmtree_killed_after_one_file)
        with pytest.raises(_KilledMidDelete):
            Trainer(cfg).run()
    root = run / "checkpoints"
    assert [s for s, _ in ck.list_checkpoints(root)] == [2, 3]
    for _, path in ck.list_checkpoints(root):
        assert ck.verify_checkpoint(path) is None, path.name
    assert shutil.rmtree is real_rmtree
    resumed = Trainer(tr.base_config(tiny_llama, packs, run, **{"train.steps": 4, "checkpoint.allow_config_change": True},
                                     **sets))
    resumed.setup()
    assert resumed.step == 3
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []
    resumed.loop()
    resumed.save()  # what run() does after the last step
    assert [s for s, _ in ck.list_checkpoints(root)] == [3, 4]


@pytest.mark.parametrize("error", [RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 2048 vs 1990"),
                                   OSError(28, "No space left on device")])
def test_a_disk_that_fills_during_a_save_is_one_line_and_keeps_the_previous_checkpoint(
        tiny_llama, packs, run_after_step_1, tmp_path, monkeypatch, error):
    run = copy_run(run_after_step_1, tmp_path / "run")
    t = _trainer_at_step_2(tiny_llama, packs, run)

    def full(*args, **kwargs):
        raise error

    monkeypatch.setattr(ck.torch, "save", full)
    with pytest.raises(LongctxError) as err:
        t.save()
    assert "\n" not in str(err.value) and "step-00000002: cannot write" in str(err.value)
    monkeypatch.undo()
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-00000001"]
    assert ck.verify_checkpoint(run / "checkpoints" / "step-00000001") is None
