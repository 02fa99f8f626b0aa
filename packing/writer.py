"""Write packs as a ``datasets`` Arrow directory + ``manifest.json``, and load them back validated.

Rows are streamed to an Arrow IPC file batch by batch (never the whole dataset in Python lists),
then memory-mapped and ``save_to_disk``-ed; the caller wraps everything in
:func:`longctx.io.atomic_dir`, so a crash leaves no directory that looks complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from longctx.errors import LongctxError
from longctx.io import atomic_write_json

FORMAT = "longctx-packs"
VERSION = 1
PACK_COLUMNS = ("input_ids", "labels", "position_ids", "seq_lens", "loss_weights")
SORTED_COLUMNS = PACK_COLUMNS + ("batch_id",)
MANIFEST = "manifest.json"


def features(mode: str):
    """The datasets Features of a pack file (``mode`` 'pack' or 'sorted')."""
    from datasets import Features, List, Value

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


def save_rows(rows: Iterable[Mapping], out_dir: Path, mode: str, batch_rows: int = 64) -> int:
    """Stream ``rows`` into ``out_dir`` as a saved datasets directory; returns the row count."""
    feats = features(mode)
    # Staged beside out_dir, not inside: save_to_disk refuses to write a dataset into its own directory.
    fd, staging = tempfile.mkstemp(prefix=f".{out_dir.name}.", suffix=".arrow", dir=out_dir.parent)
    os.close(fd)
    try:
        return _stream(rows, Path(staging), out_dir, feats, batch_rows)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging)


def _stream(rows, staging: Path, out_dir: Path, feats, batch_rows: int) -> int:
    import pyarrow as pa
    from datasets import Dataset

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
    import datasets

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


def write_manifest(out_dir: Path, manifest: dict) -> None:
    atomic_write_json(out_dir / MANIFEST, manifest)


def load_packs(path: str | os.PathLike):
    """Load a pack directory: ``(datasets.Dataset, manifest dict)``, validated.

    Raises :class:`LongctxError` naming the directory and the field when the manifest is missing,
    from another format/version, or disagrees with the data (columns, row count, pack length).
    """
    from datasets import load_from_disk

    path = Path(path)
    mpath = path / MANIFEST
    if not mpath.exists():
        raise LongctxError(f"{mpath}: missing (not a `longctx pack` output directory)")
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as e:
        raise LongctxError(f"{mpath}:{e.lineno}: malformed JSON ({e.msg})") from None
    if manifest.get("format") != FORMAT:
        raise LongctxError(f"{mpath}: format: expected {FORMAT!r}, got {manifest.get('format')!r}")
    if manifest.get("version") != VERSION:
        raise LongctxError(f"{mpath}: version: expected {VERSION}, got {manifest.get('version')!r}")
    mode = manifest.get("mode")
    if mode not in ("pack", "sorted"):
        raise LongctxError(f"{mpath}: mode: expected 'pack' or 'sorted', got {mode!r}")
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
        if first != manifest.get("pack_length"):
            raise LongctxError(f"{mpath}: pack_length: manifest says {manifest.get('pack_length')}, rows have {first}")
    return ds, manifest
