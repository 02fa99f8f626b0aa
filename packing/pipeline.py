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
from longctx.io import check_can_write, check_out_vs_inputs
from packing import binpack
from packing.readers import BadRecord, fingerprint, read_records
from longctx.labels import IGNORE_INDEX
from packing.tokenize import TRAIN_ON, RecordError, Tokenized, tokenize_record
from packing.writer import CONVENTIONS, MANIFEST, MODES, make_manifest, rows_from_groups, tokenizer_info, write_packs

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


def pack_files(sources: list[str | Path], tokenizer_path: str | Path, out: str | Path, cfg: PackConfig,
               overwrite: bool = False, tokenizer=None) -> PackResult:
    """Tokenize ``sources``, pack them per ``cfg`` and write ``out`` (datasets dir + manifest + report + PNG)."""
    from packing.report import format_report, write_histogram

    sources = [Path(s) for s in sources]
    if not sources:
        raise LongctxError("DATA: give at least one input file or directory")
    out = Path(out)
    check_out_vs_inputs(out, [*sources, tokenizer_path])
    check_can_write(out, overwrite, legacy=(MANIFEST,))  # up front: before tokenizing everything
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
    tokens_packed = int(lengths.sum())
    if counts["tokens_in"] != tokens_packed + counts["tokens_dropped"]:  # the ledger: nothing lost silently
        raise AssertionError(f"token ledger broken: in {counts['tokens_in']} != packed {tokens_packed} + dropped {counts['tokens_dropped']}")
    seqs_per_group = np.array([len(g) for g in groups])
    manifest = make_manifest(
        cfg.mode, cfg.pack_length, n_rows, tokenizer_info(tokenizer, str(tokenizer_path), pad_id),
        config={k: v for k, v in asdict(cfg).items() if k != "progress"},
        sources=metas,
        counts={
            "records": sum(m["records"] for m in metas),
            "records_bad": sum(bad.values()),
            "bad_by_reason": dict(sorted(bad.items())),
            **{k: int(v) for k, v in sorted(counts.items())},
            "sequences": len(seqs),
            "packs" if cfg.mode == "pack" else "batches": len(groups),
            "tokens_packed": tokens_packed,
            "target_tokens": int(sum(t.num_targets for t in seqs)),
        },
        efficiency=efficiency,
        sequences_per_group={"mean": float(seqs_per_group.mean()), "min": int(seqs_per_group.min()),
                             "max": int(seqs_per_group.max())},
        conventions=CONVENTIONS,
    )

    def report(tmp: Path) -> None:
        write_histogram(tmp / "lengths.png", lengths, fill, cfg)
        (tmp / "report.txt").write_text(format_report(manifest) + "\n")

    write_packs(out, rows, manifest, overwrite=overwrite, progress=cfg.progress, extra_files=report)
    return PackResult(out, manifest, lengths, fill)
