"""Turn pack rows into batches of tensors (with ``cu_seqlens`` for varlen attention).

Two layouts:

* **packs** (``mode: pack`` in the manifest): every row is ``pack_length`` tokens; real sequences
  first (``seq_lens``), then padding. Padding forms its own trailing pseudo-sequence: token
  ``pad_token_id``, label -100, weight 0, positions ``0..p-1`` (so position-based boundary
  detection sees it as a separate sequence and nothing attends across it), and it is *not* listed
  in ``seq_lens``. :func:`collate_packs` stacks rows and lists padding as an extra segment in
  ``cu_seqlens`` (varlen kernels need ``cu_seqlens[-1] == total tokens``); ``num_sequences``
  counts only real sequences.
* **sorted batching** (``mode: sorted``): every row is one sequence, no padding, with a
  ``batch_id``; rows of a batch are padded to the longest by :func:`collate_padded`.
  :func:`sorted_batches` is the pure grouping function (sort by length, group, shuffle groups).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch

from packing.weights import IGNORE_INDEX  # the one definition of the label-mask value


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


def sorted_batches(lengths: Sequence[int] | np.ndarray, batch_size: int, seed: int = 0) -> list[np.ndarray]:
    """LongAlign's sorted batching: sort by length, cut into groups of ``batch_size``, shuffle the groups.

    Sequences of similar length share a batch (little padding); shuffling the groups (seeded,
    deterministic) keeps the training order from running short-to-long.
    Returns a list of index arrays into ``lengths``.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    lengths = np.asarray(lengths)
    order = np.argsort(-lengths, kind="stable")
    groups = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    perm = np.random.default_rng(seed).permutation(len(groups))
    return [groups[i] for i in perm]


def iter_pack_batches(dataset, batch_size: int, *, seed: int | None = None) -> Iterator[dict]:
    """Yield :func:`collate_packs` batches of ``batch_size`` rows (the last one may be smaller).

    ``seed`` shuffles the pack order; ``None`` keeps the file order.
    """
    order = np.arange(len(dataset)) if seed is None else np.random.default_rng(seed).permutation(len(dataset))
    for i in range(0, len(order), batch_size):
        yield collate_packs([dataset[int(j)] for j in order[i : i + batch_size]])


def iter_sorted_batches(dataset, pad_token_id: int) -> Iterator[dict]:
    """Yield :func:`collate_padded` batches from a ``mode: sorted`` dataset, grouped by ``batch_id``.

    Rows of one batch are contiguous in the file (the writer stores them that way).
    """
    batch: list = []
    current = None
    for row in _rows(dataset):
        if current is not None and row["batch_id"] != current:
            yield collate_padded(batch, pad_token_id)
            batch = []
        current = row["batch_id"]
        batch.append(row)
    if batch:
        yield collate_padded(batch, pad_token_id)


def _rows(dataset) -> Iterable[Mapping]:
    for i in range(len(dataset)):
        yield dataset[i]
