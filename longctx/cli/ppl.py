"""``longctx ppl`` (moving here from eval_longbench/cli.py)."""

from eval_longbench.cli import ppl_main as main

__all__ = ["main"]
