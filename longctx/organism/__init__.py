"""The shipped tiny pretrained model ("organism"): its data, recipe, reproduction and check.

``longctx organism train`` reproduces longctx/assets/organism with the project's own trainer;
``longctx organism check`` measures passkey accuracy per context length.
"""

from longctx.organism.cli import main

__all__ = ["main"]
