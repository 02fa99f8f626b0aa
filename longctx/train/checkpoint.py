"""Resumable checkpoints: atomic, periodic, keep-last-N, exact resume.

A checkpoint is ``<out>/checkpoints/step-00000012/`` holding the model weights (safetensors), the
optimizer and scheduler states and every rank's RNG states (tensors and plain numbers, read back
with ``torch.load(weights_only=True)``: nothing in a checkpoint can run code when loaded), and
``trainer.json`` (step, data position, config).
It is written through :func:`longctx.io.atomic_dir`, so a crash (even SIGKILL) mid-write leaves
only a hidden temporary directory, never a directory that looks complete; resume picks the
newest ``step-*`` directory. Parameters are replicated on every rank (DP x SP without FSDP), so
rank 0 writes them and every rank reads them back.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file

from longctx.errors import LongctxError
from longctx.io import atomic_dir

STEP_DIR = re.compile(r"^step-(\d{8})$")


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
    ckpts = list_checkpoints(root)
    return ckpts[-1][1] if ckpts else None


def _gather_rng() -> list[dict]:
    state = rng_state()
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return [state]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, state)
    return out


def save_checkpoint(root: str | Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, trainer_state: dict, keep_last: int = 2, sharded: bool = False) -> Path | None:
    """Write checkpoint ``step`` atomically on rank 0 (collective: every rank must call it).

    ``sharded``: the model is FSDP-sharded; full state dicts are gathered first (same files on disk).
    """
    rngs = _gather_rng()
    if sharded:
        from longctx.train.parallelize import full_state

        msd, osd = full_state(model, optimizer)
    else:
        msd, osd = model.state_dict(), optimizer.state_dict()
    rank = dist.get_rank() if dist.is_initialized() else 0
    final = Path(root) / f"step-{step:08d}"
    if rank == 0:
        with atomic_dir(final, overwrite=True, command="train checkpoint", legacy=("trainer.json",)) as tmp:
            save_file(_unshared(msd), tmp / "model.safetensors")
            torch.save(osd, tmp / "optimizer.pt")
            torch.save(scheduler.state_dict() if scheduler is not None else {}, tmp / "scheduler.pt")
            torch.save(rngs, tmp / "rng.pt")  # tensors + plain numbers only (see rng_state)
            (tmp / "trainer.json").write_text(json.dumps({"step": step, **trainer_state}, indent=2) + "\n")
        for _, old in list_checkpoints(root)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    if dist.is_initialized():
        dist.barrier()
    return final if rank == 0 else None


def load_checkpoint(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                    world_size: int = 1, rank: int = 0, sharded: bool = False) -> dict:
    """Restore model, optimizer, scheduler and this rank's RNG; return trainer.json's dict."""
    path = Path(path)
    try:
        state = json.loads((path / "trainer.json").read_text())
        msd = load_file(path / "model.safetensors", device="cpu")
        osd = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
        if sharded:
            from longctx.train.parallelize import load_full_state

            load_full_state(model, optimizer, msd, osd)
        else:
            model.load_state_dict(msd)
            optimizer.load_state_dict(osd)
        if scheduler is not None:
            scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))  # plain numbers
        rngs = torch.load(path / "rng.pt", weights_only=True)
    except (OSError, RuntimeError, ValueError, KeyError) as err:
        raise LongctxError(f"{path}: cannot resume from this checkpoint ({str(err).splitlines()[0]})") from None
    if len(rngs) != world_size:
        raise LongctxError(f"{path}: saved with {len(rngs)} ranks, resuming with {world_size}: "
                           f"set checkpoint.resume: false or use the same world size")
    set_rng_state(rngs[rank])
    return state
