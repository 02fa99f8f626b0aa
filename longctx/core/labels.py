"""The label-mask value that packs and the loss agree on.

A label equal to :data:`IGNORE_INDEX` means "no loss on this token" (prompt tokens, the first
token of a sequence, padding). Packs are written with it (``packing``) and the loss skips it
(:mod:`longctx.core.loss`), so it lives in neither: here, in a module with no imports, which the numpy-only
pack stage can import without pulling in torch, and the loss can import without reaching back
down into ``packing``. -100 is also PyTorch's and Hugging Face's ``ignore_index`` default.
"""

IGNORE_INDEX = -100
