"""``longctx longbench-v2`` (moving here from eval_longbench/cli.py)."""

from eval_longbench.cli import longbench_v2_main as main

__all__ = ["main"]
