"""``longctx ruler`` (moving here from eval_longbench/cli.py)."""

from eval_longbench.cli import ruler_main as main

__all__ = ["main"]
