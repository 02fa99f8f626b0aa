"""LongAlign loss weights: every sequence counts equally, whatever its length or pack.

Plain token-mean loss over a pack lets long answers (and sequences in crowded packs) dominate;
LongAlign (arXiv 2401.18058, sec. 3.1) weights the N_i target tokens of sequence i by 1/N_i so
each sequence contributes its *mean* token loss, and the trainer averages over the M sequences
of the optimizer step.

N_i counts the tokens that actually receive a loss after the next-token shift. The tokenizer
always leaves the first token of a sequence unlabelled (nothing predicts it), so N_i is simply
the number of labels != -100 inside the sequence, and the weights of a sequence sum to 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from longctx.core.labels import IGNORE_INDEX


def target_counts(labels: np.ndarray, seq_lens: Sequence[int]) -> np.ndarray:
    """N_i for each sequence of one pack row (labels != -100 inside the sequence)."""
    labels = np.asarray(labels)
    bounds = np.concatenate([[0], np.cumsum(np.asarray(seq_lens, dtype=np.int64))])
    mask = (labels[: bounds[-1]] != IGNORE_INDEX).astype(np.int64)
    csum = np.concatenate([[0], np.cumsum(mask)])
    return csum[bounds[1:]] - csum[bounds[:-1]]


def pack_loss_weights(labels: np.ndarray, seq_lens: Sequence[int], dtype=np.float32) -> np.ndarray:
    """Per-token weights of one pack row: 1/N_i on the target tokens of sequence i, 0 elsewhere.

    ``labels`` is aligned with ``input_ids`` (not shifted); tokens after ``sum(seq_lens)``
    (padding) get 0. A sequence with N_i == 0 is a caller bug (the tokenizer never emits one).
    """
    labels = np.asarray(labels)
    counts = target_counts(labels, seq_lens)
    if (counts == 0).any():
        raise ValueError(f"sequence {int(np.argmax(counts == 0))} of the pack has no target tokens")
    per_token = np.zeros(labels.shape[0], dtype=np.float64)
    used = int(np.sum(seq_lens))
    per_token[:used] = np.repeat(1.0 / counts, np.asarray(seq_lens, dtype=np.int64))
    per_token[labels == IGNORE_INDEX] = 0.0
    return per_token.astype(dtype)


def token_loss_weights(labels: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Token-mean mode for comparison: weight 1 on every target token (divide by the target count)."""
    return (np.asarray(labels) != IGNORE_INDEX).astype(dtype)
