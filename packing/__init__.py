"""LongAlign-style packing of long SFT data: read -> chat-tokenize + label mask -> bin-pack -> weights.

Public pieces: :func:`packing.pipeline.pack_files` (``longctx pack``), :mod:`packing.binpack` (grouping:
bin packing and sorted batching), :mod:`packing.writer` (the pack format: rows, manifest,
:func:`~packing.writer.write_packs`, :func:`~packing.writer.load_packs`). Collation into tensors
(:mod:`longctx.train.collate`) and the loss (:mod:`longctx.core.loss`) belong to the trainer. Submodules are
imported on use so ``import packing`` stays light (no torch).
"""
