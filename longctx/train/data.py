"""Training data: packs from `longctx pack`, split into micro-batches per data-parallel rank.

The order is a pure function of (seed, position): the stream of *units* (one pack in packed mode,
one batch of sequences in sorted/padded mode) is the concatenation of per-epoch permutations, and
optimizer step ``s`` of data-parallel rank ``d`` reads units ``pos + a*dp*mb + d*mb + j``. The
only data state a checkpoint needs is ``position`` (units consumed), so resume is exact. Every
rank of one sequence-parallel group reads the same units (the trainer shards them afterwards), and
2 DP ranks x 1 accumulation read the same units as 1 rank x 2 accumulations.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from longctx.errors import LongctxError


@dataclass
class PackSource:
    """An opened pack directory: the Arrow dataset, its manifest and the per-row sequence lengths."""

    path: Path
    dataset: Any
    manifest: dict
    seq_lens: list[list[int]]

    @property
    def pack_length(self) -> int:
        n = self.manifest.get("pack_length") or self.manifest.get("max_length")
        if n:
            return int(n)
        return max(len(self.dataset[i]["input_ids"]) for i in range(len(self.dataset)))

    @property
    def is_packed(self) -> bool:
        return "batch_id" not in self.dataset.column_names

    @property
    def pad_token_id(self) -> int:
        tok = self.manifest.get("tokenizer") or {}
        return int(tok.get("pad_token_id", self.manifest.get("pad_token_id", 0)) or 0)

    def row(self, i: int) -> dict:
        return self.dataset[int(i)]


REQUIRED = ("input_ids", "labels", "position_ids", "seq_lens", "loss_weights")


def open_packs(path: str | Path) -> PackSource:
    """Open a pack directory (datasets ``save_to_disk`` + manifest.json) and check its columns."""
    path = Path(path)
    if not path.is_dir():
        raise LongctxError(f"{path}: data.path: pack directory not found (run `longctx pack` first)")
    manifest_path = path / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    try:
        from packing.writer import load_packs  # the pack stage's own loader when present

        loaded = load_packs(path)
        dataset = loaded[0] if isinstance(loaded, tuple) else loaded
    except ImportError:
        import datasets

        dataset = datasets.load_from_disk(str(path))
    missing = [c for c in REQUIRED if c not in dataset.column_names]
    if missing:
        raise LongctxError(f"{path}: data.path: pack dataset lacks column(s) {', '.join(missing)}")
    if len(dataset) == 0:
        raise LongctxError(f"{path}: data.path: the pack dataset has no rows")
    seq_lens = [[int(n) for n in s] for s in dataset["seq_lens"]]
    return PackSource(path, dataset.with_format("numpy"), manifest, seq_lens)


def split_sequences(src: PackSource) -> list[tuple[int, int, int]]:
    """Every real sequence as (row, start, length): packs are cut at their ``seq_lens``."""
    out = []
    for r, lens in enumerate(src.seq_lens):
        start = 0
        for n in lens:
            out.append((r, start, n))
            start += n
    return out


def group_by_budget(lengths: Sequence[int], order: Sequence[int], budget: int) -> list[list[int]]:
    """Cut ``order`` into consecutive batches whose rows x longest-row stays within ``budget`` tokens."""
    batches: list[list[int]] = []
    cur: list[int] = []
    longest = 0
    for i in order:
        n = int(lengths[i])
        if cur and max(longest, n) * (len(cur) + 1) > budget:
            batches.append(cur)
            cur, longest = [], 0
        cur.append(int(i))
        longest = max(longest, n)
    if cur:
        batches.append(cur)
    return batches


class StepData:
    """Deterministic micro-batches of one optimizer step for one data-parallel rank."""

    def __init__(self, src: PackSource, mode: str, micro_batch: int, grad_accum: int, dp_degree: int, dp_rank: int,
                 seed: int = 0, shuffle: bool = True, batch_tokens: int = 0):
        self.src, self.mode, self.seed, self.shuffle = src, mode, seed, shuffle
        self.accum, self.dp, self.dp_rank = grad_accum, dp_degree, dp_rank
        if mode == "packed":
            self.mb = micro_batch
            self.units: list[list[Any]] = [[r] for r in range(len(src.dataset))]
        else:  # sorted / padded: units are batches of sequences, one unit per micro-batch
            self.mb = 1
            seqs = split_sequences(src)
            lengths = [s[2] for s in seqs]
            budget = batch_tokens or src.pack_length
            if mode == "sorted" and not src.is_packed and not batch_tokens:  # the pack stage's own batches
                ids = np.asarray(src.dataset["batch_id"])
                self.units = [[seqs[i] for i in np.flatnonzero(ids == b)] for b in dict.fromkeys(ids.tolist())]
            else:
                if mode == "sorted":  # LongAlign sorted batching: similar lengths share a batch
                    order = list(np.argsort(-np.asarray(lengths), kind="stable"))
                else:  # naive: random order, pad to the longest of each batch
                    order = list(np.random.default_rng(seed).permutation(len(lengths)))
                self.units = [[seqs[i] for i in b] for b in group_by_budget(lengths, order, budget)]
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
        """Collated tensors of each micro-batch of this step (see packing.collate)."""
        from packing.collate import collate_packs, collate_padded

        batches = []
        for units in self.step_units(position):
            if self.mode == "packed":
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
