"""The shipped tiny pretrained model ("organism"): its reproduction recipe.

``longctx organism train`` reproduces longctx/assets/organism with the project's own trainer
(:func:`longctx.organism.train.train_organism`); its data is :mod:`longctx.recipe.pretrain_data`,
its location :mod:`longctx.models.organism`, and ``longctx organism check`` measures it with
:mod:`eval_longbench.passkey`. The CLI is ``longctx.cli.organism``.
"""
