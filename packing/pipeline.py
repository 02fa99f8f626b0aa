"""read -> chat-tokenize + label mask -> overlong policy -> bin-pack -> weights -> write.

:func:`pack_files` is the library entry point behind ``longctx pack``. Every source record ends
in exactly one outcome that the report counts (packed whole, truncated, split into k chunks,
dropped as overlong, or skipped as bad), and every token and target token is packed or dropped
for a named reason (:class:`Ledger`); the ledger is checked before anything is written.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm
from transformers import AutoTokenizer

from longctx.core.errors import LongctxError
from longctx.core.io import check_can_write, check_out_vs_inputs
from longctx.core.labels import IGNORE_INDEX
from packing import binpack
from packing.readers import BadRecord, Record, fingerprint, read_records, source_kind
from packing.report import format_report, write_histogram
from packing.tokenize import TRAIN_ON, RecordError, Tokenized, tokenize_record
from packing.writer import (
    CONVENTIONS,
    MANIFEST,
    MODES,
    make_manifest,
    rows_from_groups,
    tokenizer_info,
    write_packs,
)

OVERLONG = ("error", "drop", "truncate", "split")


@dataclass
class PackConfig:
    pack_length: int
    """Tokens per pack (mode pack) / longest allowed sequence (mode sorted)."""
    train_on: str = "assistant"
    """Which tokens get labels: 'assistant' turns, only the 'last' assistant turn, or 'all'."""
    skip_bad: bool = False
    """Skip (and count) bad records instead of stopping at the first one."""
    overlong: str = "error"
    """Sequences longer than pack_length: 'error', 'drop', 'truncate' (keep the head), 'split' (chunks)."""
    strategy: str = "bfd"
    """'bfd' best-fit-decreasing (ours) or 'greedy' (LongAlign's in-order fill, a baseline)."""
    mode: str = "pack"
    """'pack' fixed-length packs, or 'sorted' LongAlign sorted batching (one row per sequence)."""
    batch_size: int = 8
    """Sequences per batch in mode 'sorted'."""
    seed: int = 0
    """Shuffles pack (or batch) order; the result is a pure function of inputs + seed."""
    progress: bool = True

    def __post_init__(self):
        if self.pack_length < 2:
            raise LongctxError(f"--pack-length: must be at least 2, got {self.pack_length}")
        for name, value, allowed in (("--train-on", self.train_on, TRAIN_ON), ("--overlong", self.overlong, OVERLONG),
                                     ("--strategy", self.strategy, tuple(binpack.STRATEGIES)), ("--mode", self.mode, MODES)):
            if value not in allowed:
                raise LongctxError(f"{name}: {value!r} is not one of {', '.join(allowed)}")
        if self.batch_size < 1:
            raise LongctxError(f"--batch-size: must be positive, got {self.batch_size}")
        if self.seed < 0:  # numpy's generators take non-negative seeds only
            raise LongctxError(f"--seed: must be >= 0, got {self.seed}")


@dataclass
class PackResult:
    out: Path
    manifest: dict
    lengths: np.ndarray = field(repr=False)  # packed sequence lengths
    pack_fill: np.ndarray = field(repr=False)  # real tokens per row


def load_tokenizer(path: str):
    try:
        return AutoTokenizer.from_pretrained(str(path))
    except Exception as e:  # noqa: BLE001
        raise LongctxError(f"--tokenizer {path}: cannot load a tokenizer ({type(e).__name__}: {e})") from None


@dataclass
class Ledger:
    """What happened to every record and every token, written to the manifest's ``counts``.

    Each record has exactly one outcome (``records_*``, or bad by reason), and every token / target
    token that went in is either packed or dropped for a named reason:

        records     == records_bad + records_packed_whole + records_truncated + records_split
                       + records_dropped_overlong + records_dropped_no_targets_after_{truncate,split}
        tokens_in        == tokens_packed + sum(tokens_dropped_by_reason)
        target_tokens_in == target_tokens + sum(target_tokens_dropped_by_reason)

    Target reasons: "overlong dropped" (the whole record), "truncated tail" (cut by --overlong truncate),
    "chunk start" (the first token of a split chunk: nothing in the chunk predicts it).
    """

    counts: Counter = field(default_factory=Counter)
    """Record outcomes, ``tokens_in``, ``target_tokens_in``, ``split_chunks``, ``chunks_dropped_no_targets``."""
    tokens_dropped: Counter = field(default_factory=Counter)
    """Dropped tokens per reason."""
    targets_dropped: Counter = field(default_factory=Counter)
    """Target tokens that lost their label (dropped, or unpredictable after a cut) per reason."""

    def to_counts(self) -> dict:
        return {
            **{k: int(v) for k, v in sorted(self.counts.items())},
            "tokens_dropped": int(sum(self.tokens_dropped.values())),
            "tokens_dropped_by_reason": {k: int(v) for k, v in sorted(self.tokens_dropped.items())},
            "target_tokens_dropped": int(sum(self.targets_dropped.values())),
            "target_tokens_dropped_by_reason": {k: int(v) for k, v in sorted(self.targets_dropped.items())},
        }


OUTCOMES = ("records_packed_whole", "records_truncated", "records_split", "records_dropped_overlong",
            "records_dropped_no_targets_after_truncate", "records_dropped_no_targets_after_split")


def check_ledger(counts: dict) -> None:
    """Raise AssertionError unless the manifest's counts account for every record, token and target."""
    outcomes = counts["records_bad"] + sum(counts.get(k, 0) for k in OUTCOMES)
    if counts["records"] != outcomes:
        raise AssertionError(f"record ledger broken: {counts['records']} records != {outcomes} outcomes")
    if counts["tokens_in"] != counts["tokens_packed"] + sum(counts["tokens_dropped_by_reason"].values()):
        raise AssertionError(f"token ledger broken: {counts}")
    if counts["target_tokens_in"] != counts["target_tokens"] + sum(counts["target_tokens_dropped_by_reason"].values()):
        raise AssertionError(f"target-token ledger broken: {counts}")


def _apply_overlong(tok: Tokenized, cfg: PackConfig, where: str, ledger: Ledger) -> list[Tokenized]:
    """The sequences that go into packs for one record; its outcome and lost tokens go to ``ledger``."""
    L, P = len(tok.input_ids), cfg.pack_length
    counts = ledger.counts
    counts["tokens_in"] += L
    counts["target_tokens_in"] += tok.num_targets
    if L <= P:
        counts["records_packed_whole"] += 1
        return [tok]
    if cfg.overlong == "error":
        raise LongctxError(f"{where}: {L} tokens > --pack-length {P} (choose --overlong drop|truncate|split)")
    if cfg.overlong == "drop":
        counts["records_dropped_overlong"] += 1
        ledger.tokens_dropped["overlong dropped"] += L
        ledger.targets_dropped["overlong dropped"] += tok.num_targets
        return []
    pieces = [(0, P)] if cfg.overlong == "truncate" else [(s, min(s + P, L)) for s in range(0, L, P)]
    kept = []
    for s, e in pieces:
        labels = tok.labels[s:e].copy()
        if labels[0] != IGNORE_INDEX:  # a chunk's first token: nothing before it in the chunk predicts it
            ledger.targets_dropped["chunk start"] += 1
        labels[0] = IGNORE_INDEX
        piece = Tokenized(tok.input_ids[s:e], labels)
        if piece.num_targets:
            kept.append(piece)
        else:
            ledger.tokens_dropped["chunk without targets"] += e - s
            counts["chunks_dropped_no_targets"] += 1
    if cfg.overlong == "truncate":
        ledger.tokens_dropped["truncated tail"] += L - P
        ledger.targets_dropped["truncated tail"] += int((tok.labels[P:] != IGNORE_INDEX).sum())
        counts["records_truncated" if kept else "records_dropped_no_targets_after_truncate"] += 1
    else:
        counts["records_split" if kept else "records_dropped_no_targets_after_split"] += 1
        counts["split_chunks"] += len(kept)
    return kept


def record_sequences(where: str, tokenize: Callable[[], Tokenized], cfg: PackConfig, ledger: Ledger,
                     bad: Counter) -> list[Tokenized]:
    """The sequences one record contributes: ``tokenize()`` then the overlong policy, every outcome in
    ``ledger``; a bad record (``RecordError``) stops the run naming ``where``, or with ``--skip-bad``
    is counted in ``bad`` by reason."""
    try:
        tok = tokenize()
    except RecordError as e:
        if not cfg.skip_bad:
            raise LongctxError(f"{where}: {e.message} (pass --skip-bad to skip and count such records)") from None
        bad[e.reason] += 1
        return []
    except LongctxError as e:
        raise LongctxError(f"{where}: {e}") from None
    return _apply_overlong(tok, cfg, where, ledger)


def _tokenizer_of(rec: Record | BadRecord, tokenizer, cfg: PackConfig, tokenizer_name: str) -> Callable[[], Tokenized]:
    def tokenize() -> Tokenized:
        if isinstance(rec, BadRecord):
            raise RecordError(rec.reason, rec.message)
        return tokenize_record(tokenizer, rec.data, cfg.train_on, tokenizer_name)

    return tokenize


def tokenize_sources(sources: list[Path], tokenizer, cfg: PackConfig, tokenizer_name: str):
    """All sequences to pack, the source fingerprints, the ledger and bad-record reasons."""
    seqs: list[Tokenized] = []
    ledger = Ledger()
    bad: Counter = Counter()
    metas = []
    with tqdm(desc="tokenize", unit="rec", disable=not cfg.progress) as bar:  # closed before an error prints
        for src in sources:
            meta = fingerprint(src) | {"records": 0}
            for rec in read_records(src):
                meta["records"] += 1
                bar.update(1)
                seqs.extend(record_sequences(rec.where, _tokenizer_of(rec, tokenizer, cfg, tokenizer_name), cfg, ledger,
                                             bad))
            metas.append(meta)
    return seqs, metas, ledger, bad


@dataclass
class Assembly:
    """Packs (or sorted batches) of the sequences, before anything is written."""

    rows: Iterator[dict]
    """The rows, lazily (:func:`packing.writer.rows_from_groups`)."""
    groups: list[np.ndarray]
    """Indices into the sequences of each pack / batch, in file order."""
    n_rows: int
    lengths: np.ndarray
    fill: np.ndarray
    """Real tokens per row."""
    efficiency: float
    counts: dict
    """The manifest's ``counts``: the ledger (checked by :func:`check_ledger`) and the totals."""


def assemble(seqs: list[Tokenized], ledger: Ledger, bad: Counter, records: int, cfg: PackConfig,
             pad_id: int) -> Assembly:
    """Group ``seqs`` into packs (or sorted batches), build the rows lazily and the checked counts.

    Pure (no files): what :func:`pack_files` writes, and what the property test of the packer checks.
    """
    lengths = np.array([len(t.input_ids) for t in seqs], dtype=np.int64)
    rng = np.random.default_rng(cfg.seed)
    if cfg.mode == "pack":
        groups = binpack.STRATEGIES[cfg.strategy](lengths, cfg.pack_length)
        groups = [groups[i] for i in rng.permutation(len(groups))]  # no long-to-short order in training
        n_rows = len(groups)
        fill = np.array([int(lengths[g].sum()) for g in groups])
        efficiency = binpack.packing_efficiency(lengths, groups, cfg.pack_length)
    else:
        groups = binpack.sorted_batches(lengths, cfg.batch_size, cfg.seed)
        n_rows = len(lengths)
        fill = lengths
        efficiency = binpack.padded_efficiency(lengths, groups)
    rows = rows_from_groups([{"input_ids": t.input_ids, "labels": t.labels} for t in seqs], groups, cfg.mode,
                            cfg.pack_length, pad_id)
    counts = {
        "records": records,
        "records_bad": sum(bad.values()),
        "bad_by_reason": dict(sorted(bad.items())),
        **ledger.to_counts(),
        "sequences": len(seqs),
        "packs" if cfg.mode == "pack" else "batches": len(groups),
        "tokens_packed": int(lengths.sum()),
        "target_tokens": int(sum(t.num_targets for t in seqs)),
    }
    check_ledger(counts)  # nothing lost silently: checked before anything is written
    return Assembly(rows, groups, n_rows, lengths, fill, efficiency, counts)


def pack_files(sources: list[str | Path], tokenizer_path: str | Path, out: str | Path, cfg: PackConfig,
               overwrite: bool = False, tokenizer=None) -> PackResult:
    """Tokenize ``sources``, pack them per ``cfg`` and write ``out`` (datasets dir + manifest + report + PNG)."""
    sources = [Path(s) for s in sources]
    if not sources:
        raise LongctxError("DATA: give at least one input file or directory")
    out = Path(out)
    check_out_vs_inputs(out, [*sources, tokenizer_path])
    check_can_write(out, overwrite, legacy=(MANIFEST,))  # up front: before tokenizing everything
    for src in sources:
        source_kind(src)  # a missing or unknown input is one line, before loading the tokenizer
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(str(tokenizer_path))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)

    seqs, metas, ledger, bad = tokenize_sources(sources, tokenizer, cfg, str(tokenizer_path))
    if not seqs:
        raise LongctxError(f"{', '.join(map(str, sources))}: no sequence left to pack "
                           f"(bad: {dict(bad)}, counts: {ledger.to_counts()})")
    a = assemble(seqs, ledger, bad, sum(m["records"] for m in metas), cfg, pad_id)
    lengths, fill, groups = a.lengths, a.fill, a.groups
    seqs_per_group = np.array([len(g) for g in groups])
    manifest = make_manifest(
        cfg.mode, cfg.pack_length, a.n_rows, tokenizer_info(tokenizer, str(tokenizer_path), pad_id),
        config={k: v for k, v in asdict(cfg).items() if k != "progress"},
        sources=metas,
        counts=a.counts,
        efficiency=a.efficiency,
        sequences_per_group={"mean": float(seqs_per_group.mean()), "min": int(seqs_per_group.min()),
                             "max": int(seqs_per_group.max())},
        conventions=CONVENTIONS,
    )

    def report(tmp: Path) -> None:
        write_histogram(tmp / "lengths.png", lengths, fill, cfg)
        (tmp / "report.txt").write_text(format_report(manifest) + "\n")

    write_packs(out, a.rows, manifest, overwrite=overwrite, progress=cfg.progress, extra_files=report)
    return PackResult(out, manifest, lengths, fill)
