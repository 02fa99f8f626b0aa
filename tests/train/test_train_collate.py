"""longctx.train.collate: batches of tensors with cu_seqlens."""

import numpy as np
import torch

from longctx.train.collate import collate_packs, collate_padded


def _row(seq_lens, T):
    used = sum(seq_lens)
    pos = np.concatenate([np.arange(n) for n in seq_lens] + [np.arange(T - used)])
    return {"input_ids": np.arange(T), "labels": np.arange(T), "position_ids": pos, "seq_lens": seq_lens,
            "loss_weights": np.ones(T, dtype=np.float32)}


def test_cu_seqlens_cover_the_flattened_batch_with_padding_as_its_own_segment():
    """cu_seqlens start at 0, end at B*T, put a boundary at every position-id reset, and count M without padding."""
    batch = collate_packs([_row([3, 4], 10), _row([10], 10)])
    assert batch["cu_seqlens"].dtype == torch.int32
    assert batch["cu_seqlens"].tolist() == [0, 3, 7, 10, 20]
    starts = (batch["position_ids"].reshape(-1) == 0).nonzero().flatten().tolist()
    assert starts == batch["cu_seqlens"][:-1].tolist()
    assert batch["max_seqlen"] == 10 and batch["num_sequences"] == 3


def test_collate_padded_pads_to_longest_with_ignored_zero_weight_tokens():
    """Sorted batching rows are padded to the longest: pad label -100, weight 0, positions restart."""
    rows = [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7], "position_ids": [0, 1, 2], "seq_lens": [3],
             "loss_weights": [0, 0.5, 0.5]},
            {"input_ids": [8, 9], "labels": [-100, 9], "position_ids": [0, 1], "seq_lens": [2], "loss_weights": [0, 1.0]}]
    batch = collate_padded(rows, pad_token_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 9, 0]]
    assert batch["labels"][1, 2].item() == -100 and batch["loss_weights"][1, 2].item() == 0
    assert batch["position_ids"][1].tolist() == [0, 1, 0]
    assert batch["cu_seqlens"].tolist() == [0, 3, 5, 6]
