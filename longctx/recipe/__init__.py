"""``longctx recipe``: staged context extension from one YAML file (GLM-4's 2K -> 32K -> 128K, EasyContext's scripts).

A recipe names a base checkpoint and a list of stages; each stage extends RoPE, builds and packs its
data, continues training from the previous stage's model and evaluates it. :mod:`longctx.recipe.spec`
reads and validates the file, :mod:`longctx.recipe.runner` runs it (resumable, stage hashes),
:mod:`longctx.recipe.steps` holds the pipeline steps shared with the quick start.
"""
