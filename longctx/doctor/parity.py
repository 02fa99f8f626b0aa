"""Sequence-parallel parity: on W ranks, every layout gives the 1-rank loss and gradients.

Two kinds of rows, both run by every rank of an initialised process group (torchrun: NCCL on
GPUs; ``run_local``: gloo on CPUs):

* ``sp-attention <layout>``: the layout's attention on this rank's shard vs the dense float64
  oracle, forward and dq/dk/dv (the ring / Ulysses kernels: they need several ranks).
* ``sp-train <layout>``: one training step of a tiny random Llama **through the trainer**
  (``Trainer.setup`` builds the model, gradient checkpointing ON, ``LMLoss``, the SP groups; then
  ``train_step``) vs ``train_step`` of the same module on the same packs with no SP groups. Going
  through the trainer matters: how it hands the SP group to layers recomputed in backward is
  exactly what breaks under checkpointing (CUDA runs backward on another thread), and the doctor
  must test the code users run, not a copy of it. The optimizer is SGD with lr 0 and a hook that
  records the gradients, so the step leaves the weights as they were.

usp needs 4 ranks (2 Ulysses x 2 ring) and is SKIPped below that.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from longctx.attention import full_attention_reference
from longctx.distributed.layouts import LAYOUTS, get_layout
from longctx.distributed.mesh import Groups, Mesh
from longctx.distributed.sharding import local_indices
from longctx.doctor.oracle import TOL, compare, cu_from_lengths, doc_lengths, qkv, worst
from longctx.doctor.report import FAIL, PASS, Check, failed_with, skipped
from longctx.models.tiny import make_tiny_checkpoint
from longctx.train.config import load_config
from longctx.train.step import train_step
from longctx.train.trainer import Trainer
from packing.binpack import first_fit
from packing.writer import make_manifest, rows_from_groups, write_packs

# Relative error of SP vs 1 rank: float32 differs only by summation order (measured ~3e-7), bf16 autocast by bf16 rounding.
PARITY_TOL = {torch.float32: 1e-5, torch.bfloat16: TOL[torch.bfloat16]}
TINY_MODEL = dict(hidden_size=64, num_layers=2, num_heads=8, num_kv_heads=4, intermediate_size=128)
ATTENTION_LAYOUTS = tuple(name for name, row in LAYOUTS.items() if row.split is None)
"""Layouts whose kernel runs on the SP group alone; one that declares sub-groups (usp) is covered by its sp-train row."""
SPLIT_DEGREE = 2
"""The sub-group degree a split layout's sp-train row uses (usp: 2 Ulysses x world/2 ring)."""


def sp_attention_local(rank: int, world: int, layout: str, device: torch.device, dtype: torch.dtype,
                       t: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """This rank's outputs (out, dq, dk, dv of its shard) of ``layout``'s attention on the seeded
    inputs ``qkv(t, 4, 2, 32, dtype, seed=3)``, and the global token indices of the shard."""
    q, k, v, dout = qkv(t, 4, 2, 32, dtype, seed=3)
    idx = local_indices(t, layout, rank, world)
    loc = [x[:, :, idx].to(device, dtype).requires_grad_(True) for x in (q, k, v)]
    spec = get_layout(layout)  # the registry names the attention function and whether it takes documents
    kw = {"cu_seqlens": sp_attention_cu(t).to(device)} if spec.multi_document else {}
    out = spec.attention(*loc, **kw)
    out.backward(dout[:, :, idx].to(device, dtype))
    return {"out": out.detach(), **{f"d{n}": x.grad for n, x in zip("qkv", loc)}}, idx


def sp_attention_cu(t: int) -> torch.Tensor:
    """The documents of the SP attention case (several, crossing the shard boundaries)."""
    return cu_from_lengths(doc_lengths(t, t // 3))


def sp_attention_check(layout: str, rank: int, world: int, device: torch.device, dtype: torch.dtype, t: int) -> Check:
    """One ``sp-attention`` row: this rank's slices of the outputs and gradients vs the float64 oracle's."""
    name = f"sp-attention {layout}"
    got, idx = sp_attention_local(rank, world, layout, device, dtype, t)
    q, k, v, dout = qkv(t, 4, 2, 32, dtype, seed=3)
    leaves = [x.clone().requires_grad_(True) for x in (q, k, v)]
    ref = full_attention_reference(*leaves, sp_attention_cu(t) if get_layout(layout).multi_document else None)
    ref.backward(dout)
    want = {"out": ref.detach(), **{f"d{n}": x.grad for n, x in zip("qkv", leaves)}}
    tol = TOL[dtype]
    comps = {key: compare(got[key], want[key][:, :, idx], tol) for key in got}
    which, c = worst(comps)
    return Check(name, PASS if all(x.ok for x in comps.values()) else FAIL, {"rel_err": c.rel, "tol": tol},
                 f"{which} of {'/'.join(comps)} on {world} ranks, {t} tokens" + (f": {c.detail}" if c.detail else ""))


def write_inputs(work: Path, pack_length: int, seed: int = 0) -> tuple[Path, Path, Path]:
    """A tiny random Llama checkpoint, packs of several documents, and packs of one document each
    (the zigzag layout treats a pack as one causal sequence). Deterministic: every rank writes its own
    copy and gets the same bytes, so no shared filesystem is needed."""
    ckpt = make_tiny_checkpoint(work / "model", "llama", seed=seed, overwrite=True,
                                max_position_embeddings=pack_length, **TINY_MODEL)
    rng = np.random.default_rng(seed)

    def packs(out: Path, lengths: list[int]) -> Path:
        seqs = [{"input_ids": rng.integers(0, 256, n), "labels": np.concatenate([[-100, -100], rng.integers(0, 256, n - 2)])}
                for n in lengths]
        groups = first_fit(lengths, pack_length)
        manifest = make_manifest("pack", pack_length, len(groups), {"pad_token_id": 257})
        return write_packs(out, rows_from_groups(seqs, groups, "pack", pack_length, 257), manifest)

    many = [int(n) for n in rng.integers(pack_length // 8, pack_length // 3, 12)]
    return ckpt, packs(work / "packs", many), packs(work / "one_doc", [pack_length - 3, pack_length - 5])


def _step(trainer: Any, batches: list[dict], groups: Any) -> tuple[float, dict[str, torch.Tensor]]:
    """``train_step`` of the trainer's loss module with ``groups``: (loss, gradients before the optimizer)."""
    named = [(n, p) for n, p in trainer.loss_module.named_parameters() if p.requires_grad]
    grads: dict[str, torch.Tensor] = {}
    optimizer = torch.optim.SGD([p for _, p in named], lr=0.0)  # lr 0: the step leaves the weights as they were
    optimizer.register_step_pre_hook(lambda *_: grads.update(
        {n: p.grad.detach().to("cpu", torch.float64).clone() for n, p in named if p.grad is not None}))
    stats = train_step(trainer.loss_module, optimizer, None, batches, groups, trainer.step_opts, trainer.device)
    return stats["loss"], grads


def sp_train_check(layout: str, work: Path, inputs: tuple[Path, Path, Path], world: int) -> Check:
    """One ``sp-train`` row: a step on ``world`` SP ranks through the trainer vs the same step without SP."""
    ckpt, many, one_doc = inputs
    row = get_layout(layout)
    sets = {"model.path": ckpt, "data.path": many if row.multi_document else one_doc, "checkpoint.out": work / layout,
            "log.progress": "false", "log.tensorboard": "false", "train.steps": 1, "checkpoint.export": "false",
            "checkpoint.resume": "false", "data.shuffle": "false", "model.gradient_checkpointing": "true",
            "optim.grad_clip": 0, "optim.warmup_steps": 0, "parallel.sp_degree": world, "parallel.layout": layout}
    if row.split is not None:
        sets[f"parallel.{row.split.key}"] = SPLIT_DEGREE
    trainer = Trainer(load_config(None, [f"{k}={v}" for k, v in sets.items()]))
    trainer.setup()
    batches = trainer.data.micro_batches(0)
    ref_loss, ref_grads = _step(trainer, batches, Groups(Mesh.from_world(1, 1, 0)))
    loss, grads = _step(trainer, batches, trainer.groups)
    dtype = trainer.step_opts.autocast_dtype or torch.float32
    tol = PARITY_TOL.get(dtype, TOL[torch.bfloat16])
    names = sorted(ref_grads)
    comps = {"loss": compare(torch.tensor(loss), torch.tensor(ref_loss), tol)}
    if sorted(grads) != names:
        comps["grads"] = compare(torch.zeros(len(grads)), torch.zeros(len(names)), tol)  # a shape mismatch: FAIL
    else:
        comps["grads"] = compare(torch.cat([grads[n].flatten() for n in names]),
                                 torch.cat([ref_grads[n].flatten() for n in names]), tol)
    which, c = worst(comps)
    model = trainer.model  # transformers 5 name first, the older one as a fallback (as the trainer enables it)
    checkpointing = bool(getattr(model, "is_activation_checkpointing", None) or getattr(model, "is_gradient_checkpointing", False))
    return Check(f"sp-train {layout}", PASS if all(x.ok for x in comps.values()) and checkpointing else FAIL,
                 {"rel_err": c.rel, "tol": tol, "loss": loss},
                 f"{which} of loss/grads vs 1 rank, {world} ranks, grad checkpointing "
                 f"{'on' if checkpointing else 'OFF (not what was asked)'}" + (f": {c.detail}" if c.detail else ""))


def run_parity_checks(rank: int, world: int, device: torch.device, small: bool) -> list[Check]:
    """Every parity row on this rank (collective: every rank calls it in the same order)."""
    if world < 2:
        why = "one rank: run under torchrun --nproc-per-node N (N >= 2) to check sequence parallelism"
        return [skipped(f"sp-attention {lay}", why) for lay in ATTENTION_LAYOUTS] + \
               [skipped(f"sp-train {lay}", why) for lay in LAYOUTS]
    rows = []
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    t = (64 if small else 512) * world
    for layout in ATTENTION_LAYOUTS:
        why = get_layout(layout).check_heads(world, 4, 2)
        rows.append(skipped(f"sp-attention {layout}", why) if why else _timed(
            f"sp-attention {layout}", lambda lay=layout: sp_attention_check(lay, rank, world, device, dtype, t)))
    with shared_workdir(rank) as work:
        why = ""
        try:
            inputs = write_inputs(work, (32 if small else 256) * world) if rank == 0 else None
        except Exception as err:
            inputs, why = None, f"rank 0 could not write the tiny model and packs: {failed_with('', err).detail}"
        inputs, why = _broadcast((inputs, why))
        if inputs is not None and not _everywhere(all(p.exists() for p in inputs)):
            why = f"the ranks do not share {work} (the doctor's SP check runs on one node)"
        if why:
            return rows + [Check(f"sp-train {lay}", FAIL, detail=why) for lay in LAYOUTS]
        for layout in LAYOUTS:
            row = get_layout(layout)
            why = row.check_heads(world, TINY_MODEL["num_heads"], TINY_MODEL["num_kv_heads"])
            if row.split is not None and (world <= SPLIT_DEGREE or row.split.check(SPLIT_DEGREE, world, TINY_MODEL["num_heads"])):
                why = (f"{layout} is checked with parallel.{row.split.key} {SPLIT_DEGREE}: it needs a multiple of "
                       f"{SPLIT_DEGREE} ranks, at least {2 * SPLIT_DEGREE} (a real split), this run has {world}")
            rows.append(skipped(f"sp-train {layout}", why) if why else _timed(
                f"sp-train {layout}", lambda lay=layout: sp_train_check(lay, work, inputs, world)))
    return rows


@contextlib.contextmanager
def shared_workdir(rank: int) -> Iterator[Path]:
    """A temporary directory made by rank 0 and named to every rank, removed when all are done with it.

    Rank 0 writes the tiny model and packs once: transformers' ``save_pretrained`` writes on rank 0
    only when a process group is up, so each rank cannot write its own copy.
    """
    tmp = tempfile.mkdtemp(prefix="longctx-doctor-") if rank == 0 else None
    path = Path(_broadcast(tmp))
    try:
        yield path
    finally:
        dist.barrier()
        if rank == 0:
            shutil.rmtree(path, ignore_errors=True)


def _broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (gloo and NCCL: ``broadcast_object_list`` picks the device)."""
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _everywhere(flag: bool) -> bool:
    """True when ``flag`` holds on every rank."""
    box: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(box, bool(flag))
    return all(box)


def _timed(name: str, fn) -> Check:
    t0 = time.perf_counter()
    try:
        row = fn()
    except Exception as err:  # a layout that crashes is a finding, and the other layouts still run
        row = failed_with(name, err)
    row.seconds = time.perf_counter() - t0
    return row
