"""``longctx quickstart``: evaluate -> extend -> pack -> train (ring attention) -> evaluate, on CPU."""

from longctx.quickstart.cli import main

__all__ = ["main"]
