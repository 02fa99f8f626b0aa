"""``longctx needle`` (moving here from eval_longbench/cli.py)."""

from eval_longbench.cli import needle_main as main

__all__ = ["main"]
