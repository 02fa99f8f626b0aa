"""``longctx train``: continue training a (RoPE-extended) checkpoint on packs.

Examples::

    longctx train --config configs/train_tiny_sp2.yaml                   # one process
    longctx train --config run.yaml --set optim.lr=1e-5 --set train.steps=200
    longctx train --config run.yaml --nproc 2                            # 2 local gloo ranks (CPU)
    torchrun --nproc-per-node 8 -m longctx train --config run.yaml       # GPUs (NCCL)
    accelerate launch -m longctx train --config run.yaml

Every config key is documented in ``longctx.train.config`` and can be overridden with
``--set section.key=value`` (``--set lr=1e-5`` works when the key name is unique).
"""

from __future__ import annotations

import argparse
import os
import textwrap

import torch.distributed as dist

from longctx.core.console import stderr_line
from longctx.core.errors import LongctxError
from longctx.train.config import SECTIONS, RunConfig, dump_yaml, field_docs, load_config
from longctx.train.run import launch_local, run_training


def _keys_help() -> str:
    docs = field_docs()
    root = RunConfig()
    names = {type(getattr(root, s)).__name__: s for s in SECTIONS} | {"RunConfig": ""}
    lines = []
    for key, doc in docs.items():
        cls, name = key.split(".")
        if cls in names:
            dotted = f"{names[cls]}.{name}" if names[cls] else name
            lines.append(textwrap.fill(doc, width=110, initial_indent=f"  {dotted:<28} ", subsequent_indent=" " * 31,
                                       break_on_hyphens=False))  # whole: a cut description hides the rule
    return "config keys (YAML sections / --set names):\n" + "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="longctx train",
        description="Continue training a Hugging Face causal LM at long context on packs from `longctx pack`: "
                    "LongAlign loss weighting, chunked loss (no full logits), ring-attention sequence parallelism "
                    "(parallel.sp_degree), data parallelism over the remaining ranks, atomic resumable checkpoints "
                    "and a final safetensors export in <checkpoint.out>/final.",
        epilog=_keys_help() + "\n\nLaunch with torchrun / accelerate launch for GPUs (RANK, WORLD_SIZE, LOCAL_RANK are "
               "read from the environment), or --nproc N for N local CPU ranks (gloo). SIGTERM/SIGINT save a "
               "checkpoint and exit; rerunning the same command resumes.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML run config (see configs/*.yaml); optional if everything is given with --set")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. --set optim.lr=1e-5 (repeatable)")
    p.add_argument("--nproc", type=int, default=0, help="spawn this many local ranks (gloo on CPU) instead of "
                   "using the torchrun environment")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return p


def _run_this_rank(cfg: RunConfig) -> dict:
    """Train this process's rank; a collective that fails (another rank or node died, or
    ``parallel.timeout_s`` passed) ends it with one line instead of a traceback per rank."""
    try:
        return run_training(cfg)
    except RuntimeError as err:  # NCCL raises DistError; gloo a plain RuntimeError naming its source file
        if not (isinstance(err, dist.DistError) or "/gloo/" in str(err)):
            raise
        rank = os.environ.get("RANK", "0")
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise LongctxError(f"rank {rank}: lost contact with another rank ({first}); rerun the same command on "
                           "every node to resume from the last checkpoint") from None


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print(dump_yaml(cfg), end="")
        return 0
    if args.nproc < 0:
        raise LongctxError(f"--nproc: must be >= 0, got {args.nproc}")
    if args.nproc > 1:
        if int(os.environ.get("WORLD_SIZE", 1)) > 1:
            raise LongctxError("--nproc: already running under a launcher (WORLD_SIZE is set); drop --nproc")
        summary = launch_local(cfg, args.nproc)[0]
    else:
        summary = _run_this_rank(cfg)
    if summary["status"] == "interrupted":
        stderr_line(f"longctx train: stopped by a signal after step {summary['step']}; checkpoint saved in "
                    f"{summary['out']}/checkpoints (rerun the same command to resume)")
    elif summary.get("exported"):
        print(f"longctx train: {summary['step']} steps done; model exported to {summary['exported']}")
    else:
        print(f"longctx train: {summary['step']} steps done; checkpoint in {summary['out']}/checkpoints "
              "(checkpoint.export is false: nothing written to final/)")
    return 0
