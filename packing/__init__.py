"""LongAlign-style packing of long SFT data: read -> chat-tokenize + label mask -> bin-pack -> weights.

Public pieces: :func:`packing.pipeline.pack_files` (``longctx pack``), :func:`packing.writer.load_packs`,
:mod:`packing.collate` (batches with ``cu_seqlens``), :mod:`packing.loss` (``shift_targets``,
``chunked_lm_loss``). Submodules are imported on use so ``import packing`` stays light.
"""
