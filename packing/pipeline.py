"""read -> chat-tokenize + label mask -> overlong policy -> bin-pack -> weights -> write.

:func:`pack_files` is the library entry point behind ``longctx pack``. Every source record ends
in exactly one outcome that the report counts (packed whole, truncated, split into k chunks,
dropped as overlong, or skipped as bad); the token ledger ``tokens_in == tokens_packed +
tokens_dropped`` is checked before anything is written.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from longctx.errors import LongctxError
from longctx.io import atomic_dir
from packing import binpack
from packing.collate import sorted_batches
from packing.readers import BadRecord, fingerprint, read_records
from packing.tokenize import IGNORE_INDEX, TRAIN_ON, RecordError, Tokenized, tokenize_record
from packing.weights import pack_loss_weights
from packing.writer import FORMAT, PACK_COLUMNS, SORTED_COLUMNS, VERSION, save_rows, write_manifest

OVERLONG = ("error", "drop", "truncate", "split")
MODES = ("pack", "sorted")


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


@dataclass
class PackResult:
    out: Path
    manifest: dict
    lengths: np.ndarray = field(repr=False)  # packed sequence lengths
    pack_fill: np.ndarray = field(repr=False)  # real tokens per row


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path))
    except Exception as e:  # noqa: BLE001
        raise LongctxError(f"--tokenizer {path}: cannot load a tokenizer ({type(e).__name__}: {e})") from None


def _apply_overlong(tok: Tokenized, cfg: PackConfig, where: str, counts: Counter) -> list[Tokenized]:
    """The sequences that go into packs for one record (counts its outcome and dropped tokens)."""
    L, P = len(tok.input_ids), cfg.pack_length
    if L <= P:
        counts["records_packed_whole"] += 1
        return [tok]
    if cfg.overlong == "error":
        raise LongctxError(f"{where}: {L} tokens > --pack-length {P} (choose --overlong drop|truncate|split)")
    if cfg.overlong == "drop":
        counts["records_dropped_overlong"] += 1
        counts["tokens_dropped"] += L
        return []
    pieces = [(0, P)] if cfg.overlong == "truncate" else [(s, min(s + P, L)) for s in range(0, L, P)]
    kept = []
    for s, e in pieces:
        labels = tok.labels[s:e].copy()
        labels[0] = IGNORE_INDEX
        piece = Tokenized(tok.input_ids[s:e], labels)
        if piece.num_targets:
            kept.append(piece)
        else:
            counts["tokens_dropped"] += e - s
            counts["chunks_dropped_no_targets"] += 1
    if cfg.overlong == "truncate":
        counts["tokens_dropped"] += L - P
        counts["records_truncated" if kept else "records_dropped_no_targets_after_truncate"] += 1
    else:
        counts["records_split" if kept else "records_dropped_no_targets_after_split"] += 1
        counts["split_chunks"] += len(kept)
    return kept


def tokenize_sources(sources: list[Path], tokenizer, cfg: PackConfig, tokenizer_name: str):
    """All sequences to pack, the source fingerprints, counters and bad-record reasons."""
    from tqdm.auto import tqdm

    seqs: list[Tokenized] = []
    counts: Counter = Counter()
    bad: Counter = Counter()
    metas = []
    bar = tqdm(desc="tokenize", unit="rec", disable=not cfg.progress)
    for src in sources:
        meta = fingerprint(src) | {"records": 0}
        for rec in read_records(src):
            meta["records"] += 1
            bar.update(1)
            try:
                if isinstance(rec, BadRecord):
                    raise RecordError(rec.reason, rec.message)
                tok = tokenize_record(tokenizer, rec.data, cfg.train_on, tokenizer_name)
            except RecordError as e:
                if not cfg.skip_bad:
                    raise LongctxError(f"{rec.where}: {e.message} (pass --skip-bad to skip and count such records)") from None
                bad[e.reason] += 1
                continue
            except LongctxError as e:
                raise LongctxError(f"{rec.where}: {e}") from None
            counts["tokens_in"] += len(tok.input_ids)
            seqs.extend(_apply_overlong(tok, cfg, rec.where, counts))
        metas.append(meta)
    bar.close()
    return seqs, metas, counts, bad


def _pack_rows(seqs: list[Tokenized], groups: list[np.ndarray], P: int, pad_id: int):
    for g in groups:
        parts = [seqs[i] for i in g]
        seq_lens = np.array([len(t.input_ids) for t in parts], dtype=np.int32)
        used = int(seq_lens.sum())
        ids = np.full(P, pad_id, dtype=np.int32)
        labels = np.full(P, IGNORE_INDEX, dtype=np.int32)
        pos = np.empty(P, dtype=np.int32)
        if parts:
            ids[:used] = np.concatenate([t.input_ids for t in parts])
            labels[:used] = np.concatenate([t.labels for t in parts])
            pos[:used] = np.concatenate([np.arange(n, dtype=np.int32) for n in seq_lens])
        pos[used:] = np.arange(P - used, dtype=np.int32)  # padding: its own trailing pseudo-sequence
        yield {"input_ids": ids, "labels": labels, "position_ids": pos, "seq_lens": seq_lens,
               "loss_weights": pack_loss_weights(labels, seq_lens)}


def _sorted_rows(seqs: list[Tokenized], batches: list[np.ndarray]):
    for b, g in enumerate(batches):
        for i in g:
            t = seqs[i]
            n = len(t.input_ids)
            yield {"input_ids": t.input_ids, "labels": t.labels, "position_ids": np.arange(n, dtype=np.int32),
                   "seq_lens": np.array([n], dtype=np.int32), "loss_weights": pack_loss_weights(t.labels, [n]),
                   "batch_id": b}


def pack_files(sources: list[str | Path], tokenizer_path: str | Path, out: str | Path, cfg: PackConfig,
               overwrite: bool = False, tokenizer=None) -> PackResult:
    """Tokenize ``sources``, pack them per ``cfg`` and write ``out`` (datasets dir + manifest + report + PNG)."""
    from tqdm.auto import tqdm

    from packing.report import format_report, write_histogram

    sources = [Path(s) for s in sources]
    if not sources:
        raise LongctxError("DATA: give at least one input file or directory")
    out = Path(out)
    if out.exists() and not overwrite:
        raise LongctxError(f"{out}: already exists (choose another --out or pass --overwrite)")
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(str(tokenizer_path))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)

    seqs, metas, counts, bad = tokenize_sources(sources, tokenizer, cfg, str(tokenizer_path))
    if not seqs:
        raise LongctxError(f"{', '.join(map(str, sources))}: no sequence left to pack (bad: {dict(bad)}, counts: {dict(counts)})")
    lengths = np.array([len(t.input_ids) for t in seqs], dtype=np.int64)
    rng = np.random.default_rng(cfg.seed)
    if cfg.mode == "pack":
        groups = binpack.STRATEGIES[cfg.strategy](lengths, cfg.pack_length)
        groups = [groups[i] for i in rng.permutation(len(groups))]  # no long-to-short order in training
        rows, n_rows, columns = _pack_rows(seqs, groups, cfg.pack_length, pad_id), len(groups), PACK_COLUMNS
        fill = np.array([int(lengths[g].sum()) for g in groups])
        efficiency = binpack.packing_efficiency(lengths, groups, cfg.pack_length)
    else:
        groups = sorted_batches(lengths, cfg.batch_size, cfg.seed)
        rows, n_rows, columns = _sorted_rows(seqs, groups), len(lengths), SORTED_COLUMNS
        fill = lengths
        efficiency = binpack.padded_efficiency(lengths, groups)
    tokens_packed = int(lengths.sum())
    if counts["tokens_in"] != tokens_packed + counts["tokens_dropped"]:  # the ledger: nothing lost silently
        raise AssertionError(f"token ledger broken: in {counts['tokens_in']} != packed {tokens_packed} + dropped {counts['tokens_dropped']}")
    seqs_per_group = np.array([len(g) for g in groups])
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "mode": cfg.mode,
        "columns": list(columns),
        "pack_length": cfg.pack_length,
        "num_rows": n_rows,
        "config": {k: v for k, v in asdict(cfg).items() if k != "progress"},
        "sources": metas,
        "tokenizer": {
            "path": str(tokenizer_path),
            "class": type(tokenizer).__name__,
            "vocab_size": len(tokenizer),
            "pad_token_id": pad_id,
            "eos_token_id": tokenizer.eos_token_id,
        },
        "counts": {
            "records": sum(m["records"] for m in metas),
            "records_bad": sum(bad.values()),
            "bad_by_reason": dict(sorted(bad.items())),
            **{k: int(v) for k, v in sorted(counts.items())},
            "sequences": len(seqs),
            "packs" if cfg.mode == "pack" else "batches": len(groups),
            "tokens_packed": tokens_packed,
            "target_tokens": int(sum(t.num_targets for t in seqs)),
        },
        "efficiency": efficiency,
        "sequences_per_group": {"mean": float(seqs_per_group.mean()), "min": int(seqs_per_group.min()),
                                "max": int(seqs_per_group.max())},
        "conventions": {
            "labels": "aligned with input_ids (not shifted); -100 where no loss; the first token of every sequence is -100",
            "loss_weights": "float32, 1/N_i on the N_i labelled tokens of sequence i (N_i = its next-token targets), 0 elsewhere; each sequence sums to 1, so the number of sequences M of a step = len(seq_lens) summed",
            "padding": "mode pack: trailing pad tokens form their own pseudo-sequence: label -100, weight 0, position_ids 0..p-1, not in seq_lens; mode sorted: no padding in the file, rows of one batch_id are contiguous and padded at collate time (packing.collate.collate_padded)",
        },
    }
    with atomic_dir(out, overwrite=overwrite) as tmp:
        written = save_rows(tqdm(rows, total=n_rows, desc="write", unit="row", disable=not cfg.progress), tmp, cfg.mode)
        assert written == n_rows
        write_manifest(tmp, manifest)
        write_histogram(tmp / "lengths.png", lengths, fill, cfg)
        (tmp / "report.txt").write_text(format_report(manifest) + "\n")
    return PackResult(out, manifest, lengths, fill)
