"""``longctx recipe``: the one pipeline: staged context extension from one YAML file (GLM-4's 2K -> 32K -> 128K).

A recipe names a base checkpoint and a list of stages; each stage extends RoPE, builds and packs its
data, continues training from the previous stage's model (or the base, or any earlier stage) and
evaluates it. :mod:`longctx.recipe.spec` reads and validates the file, :mod:`longctx.recipe.runner`
runs it (resumable, stage hashes; where files go: :mod:`longctx.recipe.layout`), :mod:`longctx.recipe.steps`
holds the steps, :mod:`longctx.recipe.synthetic` and :mod:`longctx.recipe.pretrain_data` the synthetic
data. The quick start, the shipped model's pretraining and the real-model benchmark's variants are recipes on it.
"""
