"""The automatic sizes of the ALST memory set, as pure integer rules shared by the trainer and the planner.

``train.loss_chunk: auto`` and ``train.mlp_tiles: 0`` resolve through these functions in the trainer
(``longctx.loss``, ``longctx.train.parallelize``) and in ``longctx plan``, so both use the same numbers.
"""

from __future__ import annotations

LOGITS_BLOCK_ELEMENTS = 1 << 23
"""Cap of the automatic chunk: one chunk's logits block holds at most 2^23 elements (32 MiB in fp32)."""

MIN_CHUNK = 64


def auto_loss_chunk(vocab_size: int, hidden_size: int) -> int:
    """The default tokens per loss chunk, from the vocabulary and hidden sizes (``train.loss_chunk: auto``).

    ``min(hidden_size, 2^23 // vocab_size)`` rounded down to a multiple of 64 (at least 64). Why: one
    chunk's fp32 logits block (c x V) then never exceeds the output head itself (V x H), whose fp32
    gradient the step holds anyway, nor 32 MiB (the 2^23 cap, which matters for small heads over large
    vocabularies): the loss adds at most about one head-gradient of memory at any sequence length. A
    fixed 4096 built a 512 MiB block at a 32K vocabulary (0.52x HF's full-logits loss at 8K tokens);
    this rule gives 256 tokens there (H >= 256). The matmul per chunk stays large enough for the
    device (c x H x V multiply-adds, 2^23 x H).
    """
    if vocab_size < 1 or hidden_size < 1:
        raise ValueError(f"vocab_size and hidden_size must be positive, got {vocab_size}, {hidden_size}")
    c = min(hidden_size, LOGITS_BLOCK_ELEMENTS // vocab_size)
    return max(MIN_CHUNK, c // MIN_CHUNK * MIN_CHUNK)


def auto_mlp_tiles(seq_len: int, hidden_size: int) -> int:
    """ALST's TiledMLP default: ``ceil(seq_len / hidden_size)`` tiles, so that one tile's
    intermediate activations (tile x I) are about as large as the MLP's input (seq_len x H)."""
    return max(1, -(-seq_len // hidden_size))
