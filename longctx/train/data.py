"""Training data: packs from `longctx pack`, split into micro-batches per data-parallel rank.

The order is a pure function of (seed, position): the stream of *units* (one pack in pack mode,
one batch of sequences in sorted/padded mode) is the concatenation of per-epoch permutations, and
optimizer step ``s`` of data-parallel rank ``d`` reads units ``pos + a*dp*mb + d*mb + j``. The
only data state a checkpoint needs is ``position`` (units consumed), so resume is exact. Every
rank of one sequence-parallel group reads the same units (the trainer shards them afterwards), and
2 DP ranks x 1 accumulation read the same units as 1 rank x 2 accumulations.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from longctx.core.errors import LongctxError
from longctx.train.collate import collate_packs, collate_padded
from packing.binpack import batches_in_order, sorted_batches
from packing.writer import Packs, load_packs


def open_packs(path: str | Path) -> Packs:
    """Open a pack directory for training: :func:`packing.writer.load_packs`, rows as numpy arrays."""
    path = Path(path)
    if not path.is_dir():
        raise LongctxError(f"{path}: data.path: pack directory not found (run `longctx pack` first)")
    packs = load_packs(path)
    if len(packs) == 0:
        raise LongctxError(f"{path}: data.path: the pack dataset has no rows")
    return replace(packs, dataset=packs.dataset.with_format("numpy"))


def split_sequences(src: Packs) -> list[tuple[int, int, int]]:
    """Every real sequence as (row, start, length): packs are cut at their ``seq_lens``."""
    out = []
    for r, lens in enumerate(src.seq_lens):
        start = 0
        for n in lens:
            out.append((r, start, n))
            start += n
    return out


class StepData:
    """Deterministic micro-batches of one optimizer step for one data-parallel rank."""

    def __init__(self, src: Packs, mode: str, micro_batch: int, grad_accum: int, dp_degree: int, dp_rank: int,
                 seed: int = 0, shuffle: bool = True, batch_tokens: int = 0):
        self.src, self.mode, self.seed, self.shuffle = src, mode, seed, shuffle
        self.accum, self.dp, self.dp_rank = grad_accum, dp_degree, dp_rank
        if mode == "pack":
            self.mb = micro_batch
            self.units: list[list[Any]] = [[r] for r in range(len(src.dataset))]
        else:  # sorted / padded: units are batches of sequences, one unit per micro-batch
            self.mb = 1
            seqs = split_sequences(src)
            lengths = [s[2] for s in seqs]
            budget = batch_tokens or src.pack_length
            if mode == "sorted" and src.mode == "sorted" and not batch_tokens:  # the pack stage's own batches
                ids = np.asarray(src.dataset["batch_id"])
                groups = [np.flatnonzero(ids == b) for b in dict.fromkeys(ids.tolist())]
            elif mode == "sorted":  # LongAlign sorted batching (similar lengths share a batch); shuffled per epoch below
                groups = sorted_batches(lengths, max_tokens=budget, shuffle=False)
            else:  # naive: random order, pad to the longest of each batch
                groups = batches_in_order(lengths, np.random.default_rng(seed).permutation(len(lengths)), max_tokens=budget)
            self.units = [[seqs[i] for i in g] for g in groups]
        self.per_step = self.dp * self.accum * self.mb  # small datasets wrap around into the next epoch
        self._perm_epoch: int | None = None
        self._perm = np.empty(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.units)

    def unit_index(self, g: int) -> int:
        """Global stream position ``g`` -> unit index (epoch-wise permutation, seeded)."""
        n = len(self.units)
        epoch, k = divmod(g, n)
        if not self.shuffle:
            return k
        return int(self._permutation(epoch)[k])

    def _permutation(self, epoch: int) -> np.ndarray:
        """The epoch's unit order, drawn once per epoch (not once per lookup: every step asks again)."""
        if self._perm_epoch != epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.units))
            self._perm_epoch = epoch
        return self._perm

    def epoch(self, position: int) -> float:
        return position / len(self.units)

    def step_units(self, position: int) -> list[list[int]]:
        """Unit indices of each micro-batch (accumulation order) of this DP rank for the step at ``position``."""
        out = []
        for a in range(self.accum):
            base = position + (a * self.dp + self.dp_rank) * self.mb
            out.append([self.unit_index(base + j) for j in range(self.mb)])
        return out

    def micro_batches(self, position: int) -> list[dict]:
        """Collated tensors of each micro-batch of this step (see :mod:`longctx.train.collate`)."""
        batches = []
        for units in self.step_units(position):
            if self.mode == "pack":
                batches.append(collate_packs([self.src.row(self.units[u][0]) for u in units]))
            else:
                rows = [self._sequence_row(s) for u in units for s in self.units[u]]
                batches.append(collate_padded(rows, self.src.pad_token_id))
        return batches

    def _sequence_row(self, seq: tuple[int, int, int]) -> dict:
        r, start, n = seq
        row = self.src.row(r)
        sl = slice(start, start + n)
        return {"input_ids": row["input_ids"][sl], "labels": row["labels"][sl], "position_ids": row["position_ids"][sl],
                "loss_weights": row["loss_weights"][sl], "seq_lens": [n]}
