"""``longctx extend``: parse, validate, report; the work is in :mod:`rope_scaling.extend`."""

from __future__ import annotations

import argparse
import json
import sys

from longctx.core.errors import LongctxError
from rope_scaling.checkpoint_config import read_config
from rope_scaling.explain import format_table
from rope_scaling.extend import plan_extension, write_extension
from rope_scaling.flags import add_method_flags, method_params
from rope_scaling.registry import extending_methods, get_method

def _epilog() -> str:
    """Examples and the method list, read from the registry when the parser is built."""
    methods = "\n".join(f"  {n:<9} {get_method(n).summary}" for n in extending_methods())
    return f"""\
examples:
  longctx extend runs/tiny --method yarn --target-length 1024 --out runs/tiny-yarn
  longctx extend meta-llama-dir --method auto --factor 4 --dry-run
  longctx extend model --method abf --target-length 32768 --out model-abf        # base chosen for you
  longctx extend phi3-dir --method longrope --factor 4 --long-factor factors.json --out phi3-long

methods (training needs at the chosen factor are printed by --dry-run):
{methods}

Each method flag applies only to the methods its group names. --method auto picks the method that a
flag you gave belongs to (--rope-theta: abf), else yarn (longrope for Phi-3).

The output is an ordinary Hugging Face folder: config.json gets v5 `rope_parameters` (with
original_max_position_embeddings) and the new max_position_embeddings; safetensors weights are
hard-linked or copied unchanged; tokenizer and other files are copied. transformers alone loads it.
"""


def _extend_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="longctx extend", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_epilog(),
        description="Rescale a checkpoint's rotary position embedding (RoPE) for a longer context and write a "
                    "new checkpoint that plain transformers loads. Give the new length with --target-length or "
                    "--factor (relative to the trained length).",
    )
    p.add_argument("model_dir", metavar="MODEL_DIR", help="Hugging Face checkpoint folder (config.json + safetensors)")
    p.add_argument("--out", help="output folder (required unless --dry-run)")
    p.add_argument("--method", default="auto", choices=["auto", *extending_methods()],
                   help="RoPE method; auto picks one and says why (default: auto)")
    p.add_argument("--target-length", type=int, help="new context length in tokens")
    p.add_argument("--factor", type=float, help="new length / trained length (>= 1)")
    p.add_argument("--dry-run", action="store_true", help="print the parameters and the per-pair table; write nothing")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    add_method_flags(p)
    return p


def main(argv: list[str]) -> int:
    a = _extend_parser().parse_args(argv)
    if not a.dry_run and not a.out:
        raise LongctxError("--out is required (or pass --dry-run to only print the plan)")
    if a.dry_run and a.overwrite:
        raise LongctxError("--dry-run writes nothing; --overwrite contradicts it")
    params = method_params(a)
    raw, path = read_config(a.model_dir)
    plan = plan_extension(raw, path, method=a.method, target_length=a.target_length, factor=a.factor, **params)
    rc = plan.source
    print(f"model      {rc.model_type}, head_dim {rc.head_dim}, rotary dim {rc.rotary_dim}, base {rc.rope_theta:g}")
    print(f"context    {rc.original_length} trained -> {plan.target_length} target (factor {plan.factor:g})")
    print(f"method     {plan.method}  ({plan.reason})")
    print(f"training   {plan.training}")
    for note in plan.notes:
        print(f"note       {note}")
    shown = {k: (f"[{len(v)} values]" if isinstance(v, list) else v) for k, v in plan.rope_parameters.items()}
    print(f"config     max_position_embeddings = {plan.max_position_embeddings}")
    print(f"           rope_parameters = {json.dumps(shown)}")
    print(f"           attention factor = {plan.attention_factor:.6g}")
    if a.dry_run:
        print()
        print(format_table(plan.pairs(), max_rows=0 if len(plan.pairs()) <= 32 else 24))
        print("\n(dry run: nothing written)")
        return 0
    write_extension(a.model_dir, a.out, raw, path, plan, overwrite=a.overwrite)
    print(f"wrote {a.out}")
    return 0
