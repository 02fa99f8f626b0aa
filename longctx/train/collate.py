"""Train-time collation: pack rows into the tensors of one step (with ``cu_seqlens`` for varlen attention).

Which rows share a batch is decided before this (pack-time grouping: :mod:`packing.binpack`;
the step's units: :mod:`longctx.train.data`); this module only stacks them. Two layouts:

* **packs** (``mode: pack`` in the manifest): every row is ``pack_length`` tokens; real sequences
  first (``seq_lens``), then padding. Padding forms its own trailing pseudo-sequence: token
  ``pad_token_id``, label -100, weight 0, positions ``0..p-1`` (so position-based boundary
  detection sees it as a separate sequence and nothing attends across it), and it is *not* listed
  in ``seq_lens``. :func:`collate_packs` stacks rows and lists padding as an extra segment in
  ``cu_seqlens`` (varlen kernels need ``cu_seqlens[-1] == total tokens``); ``num_sequences``
  counts only real sequences.
* **sorted batching** (``mode: sorted``): every row is one sequence, no padding, with a
  ``batch_id``; rows of a batch are padded to the longest by :func:`collate_padded`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from longctx.core.labels import IGNORE_INDEX


def segment_lengths(seq_lens: Sequence[int], row_length: int) -> list[int]:
    """Segment lengths of one row: the real sequences, then the padding pseudo-sequence if any."""
    used = int(sum(seq_lens))
    if used > row_length:
        raise ValueError(f"seq_lens sum to {used} > row length {row_length}")
    segs = [int(n) for n in seq_lens]
    if used < row_length:
        segs.append(row_length - used)
    return segs


def cu_seqlens_from_rows(seq_lens_rows: Sequence[Sequence[int]], row_length: int) -> tuple[torch.Tensor, int]:
    """``cu_seqlens`` (int32, starts at 0, ends at B*row_length) over the flattened batch, and max_seqlen."""
    segs: list[int] = []
    for seq_lens in seq_lens_rows:
        segs.extend(segment_lengths(seq_lens, row_length))
    cu = torch.zeros(len(segs) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(torch.tensor(segs, dtype=torch.int64), 0).to(torch.int32)
    return cu, (max(segs) if segs else 0)


def collate_packs(rows: Sequence[Mapping]) -> dict:
    """Stack equal-length pack rows into a batch.

    Returns ``input_ids``, ``labels``, ``position_ids`` (int64, ``[B, T]``), ``loss_weights``
    (float32, ``[B, T]``), ``cu_seqlens`` (int32, over the flattened ``B*T`` tokens, padding as its
    own segment), ``max_seqlen`` (int), ``num_sequences`` (int: real sequences, the batch's share of M)
    and ``seq_lens`` (list of lists).
    """
    if not rows:
        raise ValueError("collate_packs: empty batch")
    lengths = {len(r["input_ids"]) for r in rows}
    if len(lengths) != 1:
        raise ValueError(f"collate_packs: rows have different lengths {sorted(lengths)}; use collate_padded")
    (T,) = lengths
    out = {
        "input_ids": torch.tensor(np.stack([np.asarray(r["input_ids"]) for r in rows]), dtype=torch.long),
        "labels": torch.tensor(np.stack([np.asarray(r["labels"]) for r in rows]), dtype=torch.long),
        "position_ids": torch.tensor(np.stack([np.asarray(r["position_ids"]) for r in rows]), dtype=torch.long),
        "loss_weights": torch.tensor(np.stack([np.asarray(r["loss_weights"], dtype=np.float32) for r in rows])),
    }
    return _add_segments(out, [[int(n) for n in r["seq_lens"]] for r in rows], T)


def _add_segments(out: dict, seq_lens: list[list[int]], row_length: int) -> dict:
    """The keys both layouts share beyond the tensors: ``cu_seqlens``, ``max_seqlen``, ``seq_lens``, ``num_sequences``."""
    out["cu_seqlens"], out["max_seqlen"] = cu_seqlens_from_rows(seq_lens, row_length)
    out["seq_lens"] = seq_lens
    out["num_sequences"] = sum(len(s) for s in seq_lens)
    return out


def collate_padded(rows: Sequence[Mapping], pad_token_id: int, pad_to_multiple_of: int = 1) -> dict:
    """Pad rows of different lengths (sorted batching) to the longest in the batch; same keys as packs.

    Padding follows the pack convention (label -100, weight 0, positions restarting at 0), so the
    result feeds the same model + loss code path as :func:`collate_packs`.
    """
    if not rows:
        raise ValueError("collate_padded: empty batch")
    T = max(len(r["input_ids"]) for r in rows)
    T = -(-T // pad_to_multiple_of) * pad_to_multiple_of
    B = len(rows)
    ids = np.full((B, T), pad_token_id, dtype=np.int64)
    labels = np.full((B, T), IGNORE_INDEX, dtype=np.int64)
    pos = np.zeros((B, T), dtype=np.int64)
    wts = np.zeros((B, T), dtype=np.float32)
    seq_lens = []
    for b, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[b, :n] = r["input_ids"]
        labels[b, :n] = r["labels"]
        pos[b, :n] = r["position_ids"]
        pos[b, n:] = np.arange(T - n)
        wts[b, :n] = r["loss_weights"]
        seq_lens.append([int(x) for x in r["seq_lens"]])
    out = {
        "input_ids": torch.from_numpy(ids),
        "labels": torch.from_numpy(labels),
        "position_ids": torch.from_numpy(pos),
        "loss_weights": torch.from_numpy(wts),
    }
    return _add_segments(out, seq_lens, T)
