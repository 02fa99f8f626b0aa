"""The pack format's one home: row columns, padding, the manifest schema; writing and loading packs.

A pack directory is a ``datasets`` Arrow directory (``save_to_disk``) plus ``manifest.json``.
Rows are built here and only here:

* :func:`pack_row` (mode ``pack``): whole sequences back to back, then padding up to
  ``pack_length`` as its own trailing pseudo-sequence (token ``pad_token_id``, label -100, weight
  0, positions ``0..p-1``, not listed in ``seq_lens``);
* :func:`sorted_row` (mode ``sorted``): one sequence, no padding, with its ``batch_id``.

Both are pure (numpy only, no ``datasets``): GPU checks and tests build rows with them too.
:func:`write_packs` streams rows to an Arrow IPC file batch by batch (never the whole dataset in
Python lists), memory-maps and ``save_to_disk``-s it and writes the manifest, all inside
:func:`longctx.core.io.atomic_dir`, so a crash leaves no directory that looks complete.
:func:`load_packs` reads a directory back, validated, as one :class:`Packs` object.
"""

from __future__ import annotations

import contextlib
import numbers
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from longctx.core.errors import LongctxError
from longctx.core.io import atomic_dir, atomic_write_json, read_json
from longctx.core.labels import IGNORE_INDEX
from packing.weights import pack_loss_weights

FORMAT = "longctx-packs"
VERSION = 1
MODES = ("pack", "sorted")
PACK_COLUMNS = ("input_ids", "labels", "position_ids", "seq_lens", "loss_weights")
SORTED_COLUMNS = PACK_COLUMNS + ("batch_id",)
MANIFEST = "manifest.json"
CONVENTIONS = {
    "labels": "aligned with input_ids (not shifted); -100 where no loss; the first token of every sequence is -100",
    "loss_weights": "float32, 1/N_i on the N_i labelled tokens of sequence i (N_i = its next-token targets), 0 elsewhere; each sequence sums to 1, so the number of sequences M of a step = len(seq_lens) summed",
    "padding": "mode pack: trailing pad tokens form their own pseudo-sequence: label -100, weight 0, position_ids 0..p-1, not in seq_lens; mode sorted: no padding in the file, rows of one batch_id are contiguous and padded at collate time (longctx.train.collate.collate_padded)",
}
"""The manifest's ``conventions`` entry for rows built by :func:`pack_row` / :func:`sorted_row`."""


# ---------------------------------------------------------------- rows (pure)
def pack_row(sequences: Sequence[Mapping], pack_length: int, pad_token_id: int) -> dict[str, np.ndarray]:
    """One ``mode: pack`` row from whole sequences, padded to ``pack_length``.

    Each sequence is a mapping with ``input_ids`` and ``labels`` (aligned, -100 = no loss) and
    optionally ``loss_weights``; a sequence without them gets LongAlign's 1/N_i on its N_i
    labelled tokens (:func:`packing.weights.pack_loss_weights`). Returns int32 ``input_ids``,
    ``labels``, ``position_ids`` (restarting at 0 per sequence and for the padding),
    ``seq_lens`` (padding excluded) and float32 ``loss_weights`` (0 on padding).
    """
    seq_lens = np.array([len(s["input_ids"]) for s in sequences], dtype=np.int32)
    for s, n in zip(sequences, seq_lens.tolist()):
        if len(s["labels"]) != n:
            raise ValueError(f"a sequence has {n} input_ids but {len(s['labels'])} labels")
    used = int(seq_lens.sum())
    if used > pack_length:
        raise ValueError(f"sequences of {used} tokens do not fit a pack of {pack_length}")
    ids = np.full(pack_length, pad_token_id, dtype=np.int32)
    labels = np.full(pack_length, IGNORE_INDEX, dtype=np.int32)
    pos = np.empty(pack_length, dtype=np.int32)
    if len(sequences):
        ids[:used] = np.concatenate([s["input_ids"] for s in sequences])
        labels[:used] = np.concatenate([s["labels"] for s in sequences])
        pos[:used] = np.concatenate([np.arange(n, dtype=np.int32) for n in seq_lens])
    pos[used:] = np.arange(pack_length - used, dtype=np.int32)  # padding: its own trailing pseudo-sequence
    if any(s.get("loss_weights") is not None for s in sequences):
        weights = np.zeros(pack_length, dtype=np.float32)
        weights[:used] = np.concatenate([_weights_of(s) for s in sequences])
    else:
        weights = pack_loss_weights(labels, seq_lens)
    return {"input_ids": ids, "labels": labels, "position_ids": pos, "seq_lens": seq_lens, "loss_weights": weights}


def _weights_of(seq: Mapping) -> np.ndarray:
    w = seq.get("loss_weights")
    if w is None:
        return pack_loss_weights(seq["labels"], [len(seq["labels"])])
    if len(w) != len(seq["input_ids"]):
        raise ValueError(f"loss_weights has {len(w)} entries for {len(seq['input_ids'])} tokens")
    return np.asarray(w, dtype=np.float32)


def sorted_row(sequence: Mapping, batch_id: int) -> dict[str, Any]:
    """One ``mode: sorted`` row: a single sequence, no padding (added at collate time), and its batch."""
    return pack_row([sequence], len(sequence["input_ids"]), 0) | {"batch_id": int(batch_id)}


def rows_from_groups(sequences: Sequence[Mapping], groups: Iterable[Sequence[int]], mode: str, pack_length: int,
                     pad_token_id: int) -> Iterator[dict]:
    """The rows of a pack file, lazily: one :func:`pack_row` per group, or (``sorted``) one
    :func:`sorted_row` per sequence with its group's index as ``batch_id`` (rows of a batch contiguous).

    ``groups`` are index lists into ``sequences``, from :mod:`packing.binpack`.
    """
    _check_mode(mode)
    for b, g in enumerate(groups):
        if mode == "pack":
            yield pack_row([sequences[i] for i in g], pack_length, pad_token_id)
        else:
            for i in g:
                yield sorted_row(sequences[i], b)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")


# ---------------------------------------------------------------- manifest
def tokenizer_info(tokenizer, path: str, pad_token_id: int | None = None) -> dict:
    """The manifest's ``tokenizer`` entry; ``pad_token_id`` defaults to the tokenizer's own."""
    pad = tokenizer.pad_token_id if pad_token_id is None else pad_token_id
    return {"path": str(path), "class": type(tokenizer).__name__, "vocab_size": len(tokenizer),
            "pad_token_id": pad, "eos_token_id": tokenizer.eos_token_id}


def make_manifest(mode: str, pack_length: int, num_rows: int, tokenizer: Mapping, **extra) -> dict:
    """A manifest: the keys :func:`load_packs` checks, then ``extra`` (config, counts, conventions, ...).

    ``tokenizer`` needs at least an integer ``pad_token_id`` (see :func:`tokenizer_info`).
    """
    _check_mode(mode)
    pad = tokenizer.get("pad_token_id")
    if not isinstance(pad, numbers.Integral) or isinstance(pad, bool):
        raise ValueError(f"tokenizer.pad_token_id must be an integer, got {pad!r}")
    core = {"format": FORMAT, "version": VERSION, "mode": mode,
            "columns": list(SORTED_COLUMNS if mode == "sorted" else PACK_COLUMNS), "pack_length": int(pack_length),
            "num_rows": int(num_rows), "tokenizer": dict(tokenizer) | {"pad_token_id": int(pad)}}
    clash = sorted(set(core) & set(extra))
    if clash:
        raise ValueError(f"manifest keys {clash} are set by the writer")
    return core | extra


# ---------------------------------------------------------------- writing
def write_packs(out: str | os.PathLike, rows: Iterable[Mapping], manifest: dict, *, overwrite: bool = False,
                progress: bool = False, desc: str = "write", unit: str = "row",
                extra_files: Callable[[Path], None] | None = None) -> Path:
    """Write ``rows`` and ``manifest`` (from :func:`make_manifest`) to ``out`` atomically.

    ``rows`` may be a generator (streamed, never held whole); it must yield
    ``manifest["num_rows"]`` rows. ``extra_files(tmp_dir)`` may add files (report, plots) before
    the directory appears at ``out``.
    """
    out = Path(out)
    n = manifest["num_rows"]
    with atomic_dir(out, overwrite=overwrite, command="pack", legacy=(MANIFEST,)) as tmp:  # pre-marker pack dirs
        with tqdm(rows, total=n, desc=desc, unit=unit, disable=not progress) as bar:  # closed before an error prints
            written = _save_rows(bar, tmp, manifest["mode"])
        if written != n:
            raise ValueError(f"{out}: wrote {written} rows, the manifest says num_rows {n}")
        atomic_write_json(tmp / MANIFEST, manifest)
        if extra_files is not None:
            extra_files(tmp)
    return out


def _features(mode: str):
    """The datasets Features of a pack file (``mode`` 'pack' or 'sorted')."""
    from datasets import Features, List, Value  # noqa: PLC0415  (datasets: not on GPU images; pack_row must import without it)

    cols = {
        "input_ids": List(Value("int32")),
        "labels": List(Value("int32")),
        "position_ids": List(Value("int32")),
        "seq_lens": List(Value("int32")),
        "loss_weights": List(Value("float32")),
    }
    if mode == "sorted":
        cols["batch_id"] = Value("int64")
    return Features(cols)


def _save_rows(rows: Iterable[Mapping], out_dir: Path, mode: str, batch_rows: int = 64) -> int:
    """Stream ``rows`` into ``out_dir`` as a saved datasets directory; returns the row count."""
    feats = _features(mode)
    # Staged beside out_dir, not inside: save_to_disk refuses to write a dataset into its own directory.
    fd, staging = tempfile.mkstemp(prefix=f".{out_dir.name}.", suffix=".arrow", dir=out_dir.parent)
    os.close(fd)
    try:
        return _stream(rows, Path(staging), out_dir, feats, batch_rows)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging)


def _stream(rows, staging: Path, out_dir: Path, feats, batch_rows: int) -> int:
    import pyarrow as pa  # noqa: PLC0415  (datasets: not on GPU images; pack_row must import without it)
    from datasets import Dataset  # noqa: PLC0415  (datasets: not on GPU images; pack_row must import without it)

    schema = feats.arrow_schema
    names = list(feats)
    n = 0
    with pa.OSFile(str(staging), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        buf: dict[str, list] = {k: [] for k in names}

        def flush():
            if buf[names[0]]:
                arrays = [pa.array([np.asarray(v) for v in buf[k]] if k != "batch_id" else buf[k], type=schema.field(k).type) for k in names]
                writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=schema))
                for k in names:
                    buf[k].clear()

        for row in rows:
            for k in names:
                buf[k].append(row[k])
            n += 1
            if n % batch_rows == 0:
                flush()
        flush()
    import datasets  # noqa: PLC0415  (datasets: not on GPU images; pack_row must import without it)

    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # our own "write" bar already covers this step
    try:
        ds = Dataset.from_file(str(staging))
        ds.save_to_disk(str(out_dir))
        del ds
    finally:
        if was_enabled:
            datasets.enable_progress_bars()
    return n




# ---------------------------------------------------------------- reading
@dataclass(frozen=True)
class Packs:
    """A loaded pack directory: the rows (``datasets.Dataset``), the manifest, and where they came from.

    The properties read the manifest keys :func:`make_manifest` writes (checked by :func:`load_packs`).
    """

    path: Path
    dataset: Any
    manifest: dict

    @property
    def mode(self) -> str:
        """'pack' (fixed-length packs) or 'sorted' (one sequence per row, with ``batch_id``)."""
        return self.manifest["mode"]

    @property
    def pack_length(self) -> int:
        """Tokens per pack (mode pack); the longest allowed sequence (mode sorted)."""
        return int(self.manifest["pack_length"])

    @property
    def pad_token_id(self) -> int:
        return int(self.manifest["tokenizer"]["pad_token_id"])

    @cached_property
    def seq_lens(self) -> list[list[int]]:
        """Sequence lengths of every row (padding excluded), read once."""
        return [[int(n) for n in s] for s in self.dataset["seq_lens"]]

    def row(self, i: int) -> dict:
        return self.dataset[int(i)]

    def __len__(self) -> int:
        return len(self.dataset)


def load_packs(path: str | os.PathLike) -> Packs:
    """Load a pack directory as one validated :class:`Packs`.

    Raises :class:`LongctxError` naming the file and the field when the manifest is missing or
    garbled, from another format/version, or disagrees with the data (columns, row count, pack length).
    """
    from datasets import load_from_disk  # noqa: PLC0415  (datasets: not on GPU images; pack_row must import without it)

    path = Path(path)
    mpath = path / MANIFEST
    manifest = read_json(mpath, missing="missing (not a `longctx pack` output directory)")
    if manifest.get("format") != FORMAT:
        raise LongctxError(f"{mpath}: format: expected {FORMAT!r}, got {manifest.get('format')!r}")
    if manifest.get("version") != VERSION:
        raise LongctxError(f"{mpath}: version: expected {VERSION}, got {manifest.get('version')!r}")
    mode = manifest.get("mode")
    if mode not in MODES:
        raise LongctxError(f"{mpath}: mode: expected 'pack' or 'sorted', got {mode!r}")
    length = manifest.get("pack_length")
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        raise LongctxError(f"{mpath}: pack_length: expected a positive integer, got {length!r}")
    tok = manifest.get("tokenizer")
    if not isinstance(tok, dict) or not isinstance(tok.get("pad_token_id"), int):
        raise LongctxError(f"{mpath}: tokenizer.pad_token_id: expected an integer, got "
                           f"{tok.get('pad_token_id') if isinstance(tok, dict) else tok!r}")
    try:
        ds = load_from_disk(str(path))
    except Exception as e:  # noqa: BLE001
        raise LongctxError(f"{path}: cannot load the packs ({type(e).__name__}: {e})") from None
    want = SORTED_COLUMNS if mode == "sorted" else PACK_COLUMNS
    missing = [c for c in want if c not in ds.column_names]
    if missing:
        raise LongctxError(f"{path}: columns {missing} missing (have {ds.column_names})")
    if len(ds) != manifest.get("num_rows"):
        raise LongctxError(f"{mpath}: num_rows: manifest says {manifest.get('num_rows')}, data has {len(ds)}")
    if mode == "pack" and len(ds):
        first = len(ds[0]["input_ids"])
        if first != length:
            raise LongctxError(f"{mpath}: pack_length: manifest says {length}, rows have {first}")
    return Packs(path, ds, manifest)
