"""``longctx doctor``: prove the CUDA kernels and sequence-parallel parity on this machine.

    longctx doctor                                             # one GPU: environment, kernels, probe (~2 min)
    torchrun --nproc-per-node 4 -m longctx doctor --json d.json  # + SP parity of every layout on 4 GPUs (NCCL)
    longctx doctor --device cpu                                # the same checks, small, on the CPU
    torchrun --nproc-per-node 2 -m longctx doctor --device cpu   # + SP parity on 2 gloo ranks

Checks, one table row each (PASS / FAIL / SKIP with the reason):

  env           python, torch, transformers, CUDA runtime, cuDNN, NCCL, the GPU; whether
                flash_attn and ring_flash_attn import
  kernel ...    every single-process attention kernel (packed varlen, the block kernels, torch's
                flash / efficient / cuDNN SDPA ops, FlexAttention, flash-attn) and the chunked
                loss, outputs and gradients vs a float64 CPU oracle (rel. error <= 2e-2 bf16, 1e-4 fp32)
  sp-attention  (>= 2 ranks) each layout's ring / Ulysses attention on its shard vs the oracle
  sp-train      (>= 2 ranks) one step of a tiny Llama through the trainer, gradient checkpointing on,
                each layout (zigzag, varlen, ulysses; usp from 4 ranks) == the 1-rank loss and gradients
  probe         one training step of --model at --seq-len (--layers of them): tokens/s, MFU,
                measured peak memory beside the planner's prediction (tiny shape on the CPU)

Exit status 1 when any check FAILED, else 0. Under torchrun every rank checks its own GPU; a row
fails if it failed on any rank, and rank 0 prints the table and writes --json.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from typing import Any

import torch
import torch.distributed as dist

from longctx.distributed.mesh import env_world
from longctx.doctor.env import environment, summary
from longctx.doctor.kernels import run_kernel_checks
from longctx.doctor.parity import run_parity_checks
from longctx.doctor.probe import parse_tokens, run_probe
from longctx.doctor.report import (
    FAIL,
    PASS,
    Check,
    exit_status,
    render_table,
    skipped,
    write_json,
)

GROUPS = ("env", "kernels", "parity", "probe")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="longctx doctor", description=__doc__, formatter_class=_Formatter)
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                   help="where the kernels run: auto = cuda when available, else cpu (small sizes)")
    p.add_argument("--json", metavar="FILE", default=None, help="also write every check and the environment here (atomically)")
    p.add_argument("--model", default="llama-3-8b", help="the probe's model: a planner preset or a config.json / checkpoint dir")
    p.add_argument("--seq-len", type=parse_tokens, default=parse_tokens("32k"), metavar="TOKENS",
                   help="the probe's sequence length (32k = 32768)")
    p.add_argument("--layers", type=int, default=2,
                   help="the probe's decoder layers (fewer than the model's keeps it short; 0 = all of them)")
    p.add_argument("--skip", default="", metavar="CHECKS",
                   help=f"comma-separated check groups not to run, of {', '.join(GROUPS)}")
    return p


def _device(choice: str, local_rank: int):
    if choice == "cpu" or not torch.cuda.is_available():  # --device cuda without CUDA: the env row says so
        return torch.device("cpu")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def _join_group(device) -> tuple[int, int, bool]:
    """(rank, world, whether we created the group): an existing group (``run_local``) or torchrun's env."""
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    rank, world, _ = env_world()
    if world == 1:
        return 0, 1, False
    # a rank stuck in a collective (another rank crashed) ends with an error instead of hanging for 30 min
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(minutes=5))
    return dist.get_rank(), dist.get_world_size(), True


def merge_ranks(per_rank: list[list[Check]]) -> list[Check]:
    """One row per check name (rank 0's order): the first rank where it FAILED, else rank 0's row."""
    merged = []
    for row in per_rank[0]:
        bad = [(r, c) for r, rows in enumerate(per_rank) for c in rows if c.name == row.name and c.status == FAIL]
        if bad:
            r, c = bad[0]
            merged.append(Check(c.name, FAIL, c.numbers, f"rank {r}: {c.detail}" if len(per_rank) > 1 else c.detail, c.seconds))
        else:
            merged.append(row)
    return merged


def run_checks(args: argparse.Namespace, device, rank: int, world: int, env: dict[str, Any]) -> list[Check]:
    """This rank's rows (collective: the parity rows need every rank)."""
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    rows: list[Check] = []
    no_cuda = args.device == "cuda" and device.type != "cuda"
    if "env" not in skip:
        status = FAIL if no_cuda or "gpu_error" in env else PASS
        why = "--device cuda but torch.cuda.is_available() is False; " if no_cuda else ""
        rows.append(Check("env", status, {"world": world}, why + env.get("gpu_error", summary(env))))
    if no_cuda:
        return rows + [skipped(g, "no CUDA device") for g in GROUPS[1:] if g not in skip]
    small = device.type == "cpu"
    if "kernels" not in skip:
        rows += run_kernel_checks(device.type, small)
    if "parity" not in skip:
        rows += run_parity_checks(rank, world, device, small)
    if "probe" not in skip:
        rows.append(run_probe(str(device), args.model, args.seq_len, args.layers or None) if rank == 0
                    else skipped("probe", "rank 0 probes"))
    return rows


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    unknown = {s.strip() for s in args.skip.split(",") if s.strip()} - set(GROUPS)
    if unknown:
        build_parser().error(f"--skip: unknown {', '.join(sorted(unknown))}; choose from {', '.join(GROUPS)}")
    t0 = time.perf_counter()
    device = _device(args.device, env_world()[2])
    rank, world, created = _join_group(device)
    env = environment()
    try:
        rows = run_checks(args, device, rank, world, env)
        if world > 1:
            gathered: list[Any] = [None] * world
            dist.all_gather_object(gathered, rows)
            rows = merge_ranks(gathered)
    finally:
        if created:
            dist.destroy_process_group()
    if rank == 0:
        print(render_table(rows), flush=True)
        if args.json:
            meta = {"device": str(device), "world_size": world, "argv": argv, "seconds": round(time.perf_counter() - t0, 1)}
            write_json(args.json, rows, env, meta)
            print(f"wrote {args.json}")
    return exit_status(rows)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
