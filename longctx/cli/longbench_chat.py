"""``longctx longbench-chat`` (moving here from eval_longbench/cli.py)."""

from eval_longbench.cli import longbench_chat_main as main

__all__ = ["main"]
