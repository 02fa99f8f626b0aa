"""The automatic sizes of the ALST memory set, as pure integer rules shared by the trainer and the planner.

``train.loss_chunk: auto`` and ``train.mlp_tiles: 0`` resolve through these functions in the trainer
(``longctx.core.loss``, ``longctx.train.parallelize``) and in ``longctx plan``, so both use the same numbers.
"""

from __future__ import annotations

LOGITS_BLOCK_ELEMENTS = 1 << 23
"""Cap of the automatic chunk: one chunk's logits block holds at most 2^23 elements (32 MiB in fp32)."""

MIN_CHUNK = 64

MATMUL_MIN_TOKENS = 256
"""Floor of the automatic chunk (when the hidden size allows): each chunk's head matmul reads the whole
head (V x H) for c tokens, i.e. c multiply-adds per weight read; below ~256 a GPU's matmul is bound by
reading the head, not by compute (H100: ~300 FLOP per byte of bf16 at its peak). At a 128K vocabulary the
2^23 cap alone gave 64 tokens: 2,048 head reads per 128K-token step."""


def auto_loss_chunk(vocab_size: int, hidden_size: int) -> int:
    """The default tokens per loss chunk, from the vocabulary and hidden sizes (``train.loss_chunk: auto``).

    ``min(hidden_size, max(2^23 // vocab_size, 256))`` rounded down to a multiple of 64 (at least 64).
    Why: one chunk's fp32 logits block (c x V) then never exceeds the output head itself (V x H), whose
    fp32 gradient the step holds anyway; it stays within 32 MiB (the 2^23 cap) unless that would leave
    fewer than :data:`MATMUL_MIN_TOKENS` tokens per head read (large vocabularies: 128 MiB at 128K). A
    fixed 4096 built a 512 MiB block at a 32K vocabulary (0.52x HF's full-logits loss at 8K tokens);
    this rule gives 256 tokens there (H >= 256), and 256 (not 64) at 128K.
    """
    if vocab_size < 1 or hidden_size < 1:
        raise ValueError(f"vocab_size and hidden_size must be positive, got {vocab_size}, {hidden_size}")
    c = min(hidden_size, max(LOGITS_BLOCK_ELEMENTS // vocab_size, MATMUL_MIN_TOKENS))
    return max(MIN_CHUNK, c // MIN_CHUNK * MIN_CHUNK)


def auto_mlp_tiles(seq_len: int, hidden_size: int) -> int:
    """ALST's TiledMLP default: ``ceil(seq_len / hidden_size)`` tiles, so that one tile's
    intermediate activations (tile x I) are about as large as the MLP's input (seq_len x H)."""
    return max(1, -(-seq_len // hidden_size))
