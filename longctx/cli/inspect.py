"""``longctx inspect``: a checkpoint's architecture, RoPE parameters and context; the work is in
:mod:`rope_scaling.inspect_ckpt`."""

from __future__ import annotations

import argparse
import json
import sys

from rope_scaling.inspect_ckpt import format_report, inspect_checkpoint


def main(argv: list[str]) -> int:
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
    if a.json:  # the table carries WARNING rows; JSON readers get the warnings on stderr too
        for conflict in info["config_conflicts"]:
            print(f"longctx inspect: warning: {conflict}", file=sys.stderr)
    print(json.dumps(info, indent=2) if a.json else format_report(info))
    return 0
