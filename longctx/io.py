"""Atomic file and directory writes, and reading a user's JSON file with a one-line error.

Every output of longctx (checkpoints, pack datasets, manifests, eval results) is written to a
temporary sibling and then renamed into place, so a crash never leaves a half-written output
that looks complete. Renames within one directory are atomic on POSIX file systems.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from longctx.errors import LongctxError, where


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory + ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    # mkstemp makes 0600 files; give the output the permissions a plain open() would.
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``final`` only if the block finishes.

    On an exception the temporary directory is removed and ``final`` is untouched. With
    ``overwrite=True`` an existing ``final`` is replaced (old one moved aside, then deleted).
    """
    final = Path(final)
    if final.exists() and not overwrite:
        raise LongctxError(f"{final}: already exists (choose another output or pass --overwrite)")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 dirs; outputs are meant to be shared
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


_JSON_KINDS = {dict: "object", list: "list"}


def read_json(path: str | os.PathLike, *, kind: type | None = dict, missing: str = "missing") -> Any:
    """The parsed JSON file at ``path``; any problem is ONE :class:`LongctxError` naming the file.

    Users hand us config.json, manifests and few-shot files: a missing, unreadable, non-UTF-8 or
    malformed file must say which file and line, never end in a decoder traceback. ``kind`` (dict,
    list, or None for anything) is the top-level type the caller needs; ``missing`` ends the message
    for an absent file (say what the file should have been).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LongctxError(f"{path}: {missing}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise LongctxError(f"{path}: cannot read ({err})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise LongctxError(f"{where(path, err.lineno)}: not valid JSON ({err.msg})") from None
    if kind is not None and not isinstance(data, kind):
        raise LongctxError(f"{path}: expected a JSON {_JSON_KINDS.get(kind, kind.__name__)}, got {type(data).__name__}")
    return data
