"""``longctx quickstart``: evaluate -> extend -> pack -> train (ring attention) -> evaluate, on CPU.

The library entry point is :func:`longctx.quickstart.pipeline.run_quickstart` with a
:class:`longctx.quickstart.config.QuickstartConfig`; the CLI is ``longctx.cli.quickstart``.
"""
