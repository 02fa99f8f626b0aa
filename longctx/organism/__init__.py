"""The shipped tiny pretrained model ("organism"): its data, recipe, reproduction and check.

``longctx organism train`` reproduces longctx/assets/organism with the project's own trainer
(:func:`longctx.organism.train.train_organism`); ``longctx organism check`` measures passkey
accuracy per context length (:mod:`longctx.organism.check`). The CLI is ``longctx.cli.organism``.
"""
