"""``longctx quickstart``: evaluate -> extend -> pack -> train (ring attention) -> evaluate, on CPU.

A recipe on the recipe runner (:mod:`longctx.quickstart.recipe` builds it from the flags,
:class:`longctx.quickstart.config.QuickstartConfig`) with the quick start's folder layout and report;
the library entry point is :func:`longctx.quickstart.pipeline.run_quickstart`, the CLI ``longctx.cli.quickstart``.
"""
