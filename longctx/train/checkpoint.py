"""Resumable checkpoints: atomic, periodic, keep-last-N, exact resume.

A checkpoint is ``<out>/checkpoints/step-00000012/`` holding the model weights (safetensors), the
optimizer and scheduler states and every rank's RNG states (tensors and plain numbers, read back
with ``torch.load(weights_only=True)``: nothing in a checkpoint can run code when loaded), and
``trainer.json`` (step, data position, config), and last ``manifest.json``: the size and sha256
of every other file.
It is written through :func:`longctx.core.io.atomic_dir`, so a crash (even SIGKILL) mid-write leaves
only a hidden temporary directory, never a directory that looks complete. A checkpoint damaged
after it was written (truncated, overwritten, a hand-edited ``trainer.json``) fails
:func:`verify_checkpoint`; resume takes the newest checkpoint that passes
(:func:`choose_checkpoint`), saying why it skipped any newer one. Parameters are replicated on
every rank (DP x SP without FSDP), so rank 0 writes them and every rank reads them back.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from longctx.core.errors import LongctxError
from longctx.core.io import atomic_dir, atomic_write_json
from longctx.train.lora import load_trainable, trainable_parameters
from longctx.train.parallelize import full_state, load_full_state

STEP_DIR = re.compile(r"^step-(\d{8})$")
MANIFEST = "manifest.json"
FILES = ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng.pt", "trainer.json")
"""What a complete checkpoint holds besides its manifest."""


def rng_state() -> dict:
    """Every RNG's state as tensors, lists and numbers (so it loads with ``weights_only=True``)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": [version, list(internal), gauss_next],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _unshared(state_dict: dict) -> dict:
    """safetensors refuses tensors that share storage (tied embeddings): give repeats their own copy."""
    seen: set[int] = set()
    out = {}
    for k, v in state_dict.items():
        v = v.detach().contiguous()
        ptr = v.untyped_storage().data_ptr()
        out[k] = v.clone() if ptr in seen else v
        seen.add(ptr)
    return out


def list_checkpoints(root: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``root`` as (step, path), oldest first (temporary dirs are hidden)."""
    root = Path(root)
    if not root.is_dir():
        return []
    out = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := STEP_DIR.match(p.name))]
    return sorted(out)


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest ``step-*`` directory, verified or not (see :func:`choose_checkpoint` for resuming)."""
    ckpts = list_checkpoints(root)
    return ckpts[-1][1] if ckpts else None


def remove_partial_saves(root: str | Path, name: str = r"step-\d{8}") -> list[Path]:
    """Delete the temporary directories that killed saves of ``name`` (a regex) left in ``root``.

    ``atomic_dir`` writes ``.NAME.XXXX.tmp`` and moves a replaced output to ``.NAME.old-PID``, and
    :func:`prune_checkpoints` moves an old checkpoint to ``.deleting-NAME-PID`` before deleting it; a
    SIGKILL mid-save or mid-delete leaves them behind. Returns what was removed.
    """
    root = Path(root)
    pattern = re.compile(rf"^\.({name}\.(.+\.tmp|old-\d+)|deleting-{name}-\d+)$")
    gone = [p for p in root.iterdir() if p.is_dir() and pattern.match(p.name)] if root.is_dir() else []
    for p in gone:
        shutil.rmtree(p, ignore_errors=True)
    return gone


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_manifest(directory: Path) -> None:
    """Record the size and sha256 of every file in ``directory`` in its manifest (written last, atomically)."""
    files = {p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)}
             for p in sorted(directory.iterdir()) if p.is_file() and p.name != MANIFEST}
    atomic_write_json(directory / MANIFEST, {"format": 1, "files": files})


def verify_checkpoint(path: str | Path) -> str | None:
    """Why the checkpoint at ``path`` cannot be trusted (one phrase), or None when it is complete.

    Checks the manifest against every file's size and sha256 and that ``trainer.json`` holds the
    step its directory is named after: a checkpoint is trusted only as it was at save time.
    """
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
        if not isinstance(files, dict):
            raise TypeError
    except FileNotFoundError:
        return f"no {MANIFEST} (an incomplete save, or written by an older longctx)"
    except (OSError, ValueError, KeyError, TypeError):
        return f"{MANIFEST} is unreadable"
    for name in FILES:
        if name not in files:
            return f"{MANIFEST} does not list {name}"
    for name, rec in files.items():
        f = path / name
        try:
            size = f.stat().st_size
            if not isinstance(rec, dict) or size != rec.get("bytes"):
                return f"{name} has {size} bytes, {rec.get('bytes') if isinstance(rec, dict) else '?'} were saved"
            if _sha256(f) != rec.get("sha256"):
                return f"{name} changed since it was saved (sha256 differs)"
        except OSError as err:
            return f"{name} is missing or unreadable ({err.strerror or err})"
    try:
        state = json.loads((path / "trainer.json").read_text(encoding="utf-8"))
        step, position = state["step"], state["position"]
    except (OSError, ValueError, KeyError, TypeError):
        return "trainer.json has no step/position"
    m = STEP_DIR.match(path.name)
    if not isinstance(step, int) or not isinstance(position, int) or (m and int(m.group(1)) != step):
        return f"trainer.json's step {step!r} does not match the directory"
    return None


def choose_checkpoint(root: str | Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest checkpoint under ``root`` that passes :func:`verify_checkpoint`, and the newer ones
    skipped with the reason for each (newest first)."""
    rejected: list[tuple[Path, str]] = []
    for _, path in reversed(list_checkpoints(root)):
        why = verify_checkpoint(path)
        if why is None:
            return path, rejected
        rejected.append((path, why))
    return None, rejected


def _gather_rng() -> list[dict]:
    state = rng_state()
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return [state]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, state)
    return out


def _write(save, obj: Any, path: Path) -> None:
    """``save(obj, path)``, its writer's failure made an OSError for :func:`longctx.core.io.atomic_dir` (one line).

    torch's zip writer reports a disk that fills mid-file as ``RuntimeError: ... unexpected pos``,
    safetensors as a SafetensorError: neither is an OSError, so atomic_dir would not name the output.
    """
    try:
        save(obj, path)
    except (RuntimeError, SafetensorError) as err:
        cause = (str(err).strip().splitlines() or [type(err).__name__])[-1].strip()
        raise OSError(f"{path.name}: write failed, is the disk full? ({cause})") from None


def save_checkpoint(root: str | Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, trainer_state: dict, keep_last: int = 2, sharded: bool = False,
                    trainable_only: bool = False) -> Path | None:
    """Write checkpoint ``step`` atomically on rank 0 (collective: every rank must call it).

    ``sharded``: the model is FSDP-sharded; full state dicts are gathered first (same files on disk).
    ``trainable_only`` (LoRA): model.safetensors holds the trainable parameters only (the adapters, and the
    embeddings/norms when they train); the frozen base is model.path's, which the resume check pins.
    """
    rngs = _gather_rng()
    if sharded:
        msd, osd = full_state(model, optimizer)
    else:
        msd, osd = model.state_dict(), optimizer.state_dict()
    if trainable_only:
        keep = trainable_parameters(model)
        msd = {k: v for k, v in msd.items() if k in keep}
    rank = dist.get_rank() if dist.is_initialized() else 0
    final = Path(root) / f"step-{step:08d}"
    if rank == 0:
        with atomic_dir(final, overwrite=True, command="train checkpoint", legacy=("trainer.json",)) as tmp:
            _write(save_file, _unshared(msd), tmp / "model.safetensors")
            _write(torch.save, osd, tmp / "optimizer.pt")
            _write(torch.save, scheduler.state_dict() if scheduler is not None else {}, tmp / "scheduler.pt")
            _write(torch.save, rngs, tmp / "rng.pt")  # tensors + plain numbers only (see rng_state)
            (tmp / "trainer.json").write_text(json.dumps({"step": step, **trainer_state}, indent=2) + "\n")
            write_manifest(tmp)  # last: a checkpoint with a valid manifest was saved completely
        # (a full disk or read-only location: atomic_dir removed the temporary and raised one line)
        # keep the newest keep_last up to this step; newer ones (left by a run resumed from an older
        # checkpoint) are overwritten when the run gets there
        prune_checkpoints(root, step, keep_last)
    if dist.is_initialized():
        dist.barrier()
    return final if rank == 0 else None


def prune_checkpoints(root: str | Path, step: int, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` checkpoints up to ``step`` (newer ones, left by a run
    resumed from an older checkpoint, are overwritten when the run gets there).

    Each is first renamed to ``.deleting-step-N-PID``, then deleted: a kill mid-delete leaves a hidden
    directory (removed by :func:`remove_partial_saves` at the next save or start), never a half-deleted
    ``step-*`` directory that resume or ``ls`` would take for a checkpoint.
    """
    remove_partial_saves(root)  # what an earlier killed delete left
    for _, old in [c for c in list_checkpoints(root) if c[0] <= step][:-keep_last]:
        aside = old.with_name(f".deleting-{old.name}-{os.getpid()}")
        try:
            os.rename(old, aside)
        except OSError:
            continue  # cannot move it: leave the complete old checkpoint as it is
        shutil.rmtree(aside, ignore_errors=True)


def load_checkpoint(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                    world_size: int = 1, rank: int = 0, sharded: bool = False, trainable_only: bool = False) -> dict:
    """Restore model (``trainable_only``: its trainable parameters), optimizer, scheduler and this rank's RNG;
    return trainer.json's dict."""
    path = Path(path)
    try:
        state = json.loads((path / "trainer.json").read_text())
        msd = load_file(path / "model.safetensors", device="cpu")
        osd = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
        if trainable_only and not sharded:
            load_trainable(model, msd, str(path))
        if sharded:
            load_full_state(model, optimizer, msd, osd, strict=not trainable_only)
        else:
            if not trainable_only:
                model.load_state_dict(msd)
            optimizer.load_state_dict(osd)
        if scheduler is not None:
            scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))  # plain numbers
        rngs = torch.load(path / "rng.pt", weights_only=True)
    except (OSError, RuntimeError, ValueError, KeyError, TypeError, EOFError, pickle.UnpicklingError, SafetensorError) as err:
        raise LongctxError(f"{path}: cannot resume from this checkpoint ({str(err).splitlines()[0]})") from None
    if len(rngs) != world_size:
        raise LongctxError(f"{path}: saved with {len(rngs)} ranks, resuming with {world_size}: "
                           f"set checkpoint.resume: false or use the same world size")
    set_rng_state(rngs[rank])
    return state
