"""``longctx extend`` and ``longctx inspect``: parse, validate, report; the work is in
:mod:`rope_scaling.extend` and :mod:`rope_scaling.inspect_ckpt`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from longctx.errors import LongctxError
from rope_scaling.explain import format_table
from rope_scaling.registry import METHODS

EXTEND_EPILOG = """\
examples:
  longctx extend runs/tiny --method yarn --target-length 1024 --out runs/tiny-yarn
  longctx extend meta-llama-dir --method auto --factor 4 --dry-run
  longctx extend model --method abf --target-length 32768 --out model-abf        # base chosen for you
  longctx extend phi3-dir --method longrope --factor 4 --long-factor factors.json --out phi3-long

methods (training needs at the chosen factor are printed by --dry-run):
""" + "\n".join(f"  {n:<9} {m.summary}" for n, m in METHODS.items() if n != "default") + """

The output is an ordinary Hugging Face folder: config.json gets v5 `rope_parameters` (with
original_max_position_embeddings) and the new max_position_embeddings; safetensors weights are
hard-linked or copied unchanged; tokenizer and other files are copied. transformers alone loads it.
"""


def _float_list(text: str) -> list[float]:
    """``1,1.5,2`` or ``@file.json`` / ``file.json`` holding a JSON list."""
    try:
        if text.startswith("@") or text.endswith(".json"):
            p = Path(text.lstrip("@"))
            values = json.loads(p.read_text())
        else:
            values = [float(x) for x in text.split(",") if x.strip()]
    except (OSError, ValueError) as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers or a JSON list file: {err}")
    if not isinstance(values, list) or not all(isinstance(v, (int, float)) for v in values):
        raise argparse.ArgumentTypeError("expected a list of numbers")
    return [float(v) for v in values]


def _extend_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="longctx extend", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXTEND_EPILOG,
        description="Rescale a checkpoint's rotary position embedding (RoPE) for a longer context and write a "
                    "new checkpoint that plain transformers loads. Give the new length with --target-length or "
                    "--factor (relative to the trained length).",
    )
    p.add_argument("model_dir", metavar="MODEL_DIR", help="Hugging Face checkpoint folder (config.json + safetensors)")
    p.add_argument("--out", help="output folder (required unless --dry-run)")
    p.add_argument("--method", default="auto", choices=["auto", *[n for n in METHODS if n != "default"]],
                   help="RoPE method; auto picks one and says why (default: auto)")
    p.add_argument("--target-length", type=int, help="new context length in tokens")
    p.add_argument("--factor", type=float, help="new length / trained length (>= 1)")
    p.add_argument("--rope-theta", type=float, help="abf: the new base (default: the larger of the 2405.14591 lower "
                                                  "bound and the 2310.05209 critical base for the target)")
    p.add_argument("--dry-run", action="store_true", help="print the parameters and the per-pair table; write nothing")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    g = p.add_argument_group("method parameters (only for the method named)")
    g.add_argument("--beta-fast", type=float, help="yarn: pairs with more turns than this in the original window are kept (32)")
    g.add_argument("--beta-slow", type=float, help="yarn: pairs with fewer turns are fully interpolated (1)")
    g.add_argument("--mscale", type=float, help="yarn: DeepSeek-style attention scale numerator")
    g.add_argument("--mscale-all-dim", type=float, help="yarn: DeepSeek-style attention scale denominator")
    g.add_argument("--attention-factor", type=float, help="yarn/longrope: fixed cos/sin multiplier")
    g.add_argument("--no-truncate", dest="truncate", action="store_const", const=False,
                   help="yarn: do not round the ramp ends to whole pairs")
    g.add_argument("--low-freq-factor", type=float, help="llama3: wavelengths above L0/low are divided by the factor (1)")
    g.add_argument("--high-freq-factor", type=float, help="llama3: wavelengths below L0/high are kept (4)")
    g.add_argument("--long-factor", type=_float_list, help="longrope: per-pair factors beyond L0 (a,b,... or a JSON file)")
    g.add_argument("--short-factor", type=_float_list, help="longrope: per-pair factors inside L0 (default all 1)")
    return p


def extend_main(argv: list[str]) -> int:
    from rope_scaling.checkpoint_config import read_config
    from rope_scaling.extend import plan_extension, write_extension

    a = _extend_parser().parse_args(argv)
    if not a.dry_run and not a.out:
        raise LongctxError("--out is required (or pass --dry-run to only print the plan)")
    if a.dry_run and a.overwrite:
        raise LongctxError("--dry-run writes nothing; --overwrite contradicts it")
    params = dict(beta_fast=a.beta_fast, beta_slow=a.beta_slow, mscale=a.mscale, mscale_all_dim=a.mscale_all_dim,
                  attention_factor=a.attention_factor, truncate=a.truncate, low_freq_factor=a.low_freq_factor,
                  high_freq_factor=a.high_freq_factor, long_factor=a.long_factor, short_factor=a.short_factor)
    params = {k: v for k, v in params.items() if v is not None}
    raw, path = read_config(a.model_dir)
    plan = plan_extension(raw, path, method=a.method, target_length=a.target_length, factor=a.factor,
                          rope_theta=a.rope_theta, **params)
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


def inspect_main(argv: list[str]) -> int:
    from rope_scaling.inspect_ckpt import format_report, inspect_checkpoint

    p = argparse.ArgumentParser(
        prog="longctx inspect",
        description="Show a checkpoint's architecture, its RoPE parameters (whatever config.json form it uses), "
                    "the context it was trained at and the context its config now claims.",
        epilog="example:\n  longctx inspect runs/tiny-yarn\n  longctx inspect runs/tiny-yarn --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model_dir", metavar="MODEL_DIR", help="Hugging Face checkpoint folder")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")
    a = p.parse_args(argv)
    info = inspect_checkpoint(a.model_dir)
    print(json.dumps(info, indent=2) if a.json else format_report(info))
    return 0
