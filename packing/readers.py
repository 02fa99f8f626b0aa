"""Read SFT records from JSONL, JSON, Parquet files or saved ``datasets`` directories.

Every record comes with its location (``file:line`` for JSONL, ``file:record N`` otherwise) so that
any later error can name where the bad data is. Malformed input is not raised here but yielded as
a :class:`BadRecord`, so the caller decides between stopping (default) and ``--skip-bad``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import datasets
import pyarrow.parquet as pq  # direct, batch by batch: no copy into the datasets cache

from longctx.core.errors import LongctxError

SUFFIXES = (".jsonl", ".json", ".parquet")


@dataclass(frozen=True)
class Record:
    where: str  # "file:line" or "file:record N"
    data: dict


@dataclass(frozen=True)
class BadRecord:
    where: str
    reason: str  # short category, counted in the report
    message: str  # full one-line explanation

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def source_kind(path: Path) -> str:
    """'jsonl' | 'json' | 'parquet' | 'datasets' — or a LongctxError naming the path."""
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "state.json").exists():
            return "datasets"
        raise LongctxError(f"{path}: a directory but not a saved datasets directory (no dataset_info.json/state.json)")
    if not path.exists():
        raise LongctxError(f"{path}: no such file")
    for suffix in SUFFIXES:
        if path.name.endswith(suffix):
            return suffix[1:]
    raise LongctxError(f"{path}: unknown input format (expected {', '.join(SUFFIXES)} or a saved datasets directory)")


def fingerprint(path: Path) -> dict:
    """sha256 and size of a source (a directory: of its files, in sorted order) for the manifest."""
    h = hashlib.sha256()
    size = 0
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
                size += len(block)
    return {"path": str(path), "sha256": h.hexdigest(), "bytes": size}


def lone_surrogate_field(obj: object, field: str = "") -> str | None:
    """The path (``messages[1].content``) of the first string holding a lone UTF-16 surrogate, or None.

    JSON's ``"\\ud800"`` escape decodes to such a string: Python accepts it, but it is not Unicode text
    (it cannot be encoded as UTF-8), so the tokenizer or the writer would fail on it much later.
    """
    if isinstance(obj, str):
        try:
            obj.encode("utf-8")
        except UnicodeEncodeError:
            return field or "(the record)"
        return None
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = str(k)
            bad = lone_surrogate_field(key, f"{field}.{key}" if field else key)
            if bad is None:
                bad = lone_surrogate_field(v, f"{field}.{key}" if field else key)
            if bad is not None:
                return bad
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            bad = lone_surrogate_field(v, f"{field}[{i}]")
            if bad is not None:
                return bad
    return None


def _checked(where: str, obj: object, escapes: bool) -> Record | BadRecord:
    """A :class:`Record`, or a :class:`BadRecord` for a non-object or a string that is not Unicode text."""
    if not isinstance(obj, dict):
        return BadRecord(where, "not an object", f"expected a JSON object, got {type(obj).__name__}")
    bad = lone_surrogate_field(obj) if escapes else None  # only a \u escape can make a lone surrogate
    if bad is not None:
        return BadRecord(where, "lone surrogate", f"{bad}: a lone UTF-16 surrogate escape (e.g. \\ud800) is not valid text")
    return Record(where, obj)


def _not_utf8(raw: bytes, start: int) -> str:
    """The message for undecodable bytes at ``raw[start]``, with the 1-based byte column in its line."""
    column = start - (raw.rfind(b"\n", 0, start) + 1) + 1
    return f"not valid UTF-8 (byte 0x{raw[start]:02x} at byte column {column}); re-encode the file as UTF-8"


def _read_jsonl(path: Path) -> Iterator[Record | BadRecord]:
    # Bytes, decoded line by line: one undecodable line is one bad record, not a traceback for the file.
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                yield BadRecord(where, "not UTF-8", _not_utf8(raw, e.start))
                continue
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                yield BadRecord(where, "malformed JSON", f"malformed JSON ({e.msg} at column {e.colno})")
                continue
            yield _checked(where, obj, "\\u" in line)


def _read_json(path: Path) -> Iterator[Record | BadRecord]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        yield BadRecord(f"{path}:{line}", "not UTF-8", _not_utf8(raw, e.start))
        return
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        yield BadRecord(f"{path}:{e.lineno}", "malformed JSON", f"malformed JSON ({e.msg} at column {e.colno})")
        return
    if isinstance(obj, dict) and isinstance(obj.get("data"), list):
        obj = obj["data"]
    if not isinstance(obj, list):
        yield BadRecord(str(path), "not a list", "expected a JSON list of records (or {\"data\": [...]})")
        return
    escapes = "\\u" in text
    for i, rec in enumerate(obj):
        yield _checked(f"{path}:record {i}", rec, escapes)


def _read_parquet(path: Path) -> Iterator[Record | BadRecord]:
    try:
        pf = pq.ParquetFile(str(path))
    except Exception as e:  # noqa: BLE001 - any reader failure is the user's file
        raise LongctxError(f"{path}: cannot read parquet ({type(e).__name__}: {e})") from None
    i = 0
    for batch in pf.iter_batches(batch_size=1024):
        for rec in batch.to_pylist():
            yield Record(f"{path}:record {i}", rec)
            i += 1


def _read_datasets_dir(path: Path) -> Iterator[Record | BadRecord]:
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:  # noqa: BLE001 - any reader failure is the user's file
        raise LongctxError(f"{path}: cannot read the datasets directory ({type(e).__name__}: {e})") from None
    if isinstance(ds, datasets.DatasetDict):
        if "train" not in ds:
            raise LongctxError(f"{path}: a DatasetDict without a 'train' split (splits: {', '.join(ds)})")
        ds = ds["train"]
    for i, rec in enumerate(ds):
        yield Record(f"{path}:record {i}", rec)


def read_records(path: str | Path) -> Iterator[Record | BadRecord]:
    """Yield the records of one source, in file order."""
    path = Path(path)
    kind = source_kind(path)
    if kind == "jsonl":
        yield from _read_jsonl(path)
    elif kind == "json":
        yield from _read_json(path)
    elif kind == "parquet":
        yield from _read_parquet(path)
    else:
        yield from _read_datasets_dir(path)
