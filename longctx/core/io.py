"""Atomic file and directory writes, and reading a user's JSON file with a one-line error.

Every output of longctx (checkpoints, pack datasets, manifests, eval results) is written to a
temporary sibling and then renamed into place, so a crash never leaves a half-written output
that looks complete. Renames within one directory are atomic on POSIX file systems.

Never lose a user's data: every output directory carries :data:`OUTPUT_MARKER`, ``--overwrite``
replaces only such a directory, and :func:`check_out_vs_inputs` refuses an output that is, holds or
lies inside an input. A full disk or read-only location is one :class:`LongctxError` line.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from longctx.core.errors import LongctxError, where


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


OUTPUT_MARKER = ".longctx-output"
"""The file :func:`atomic_dir` writes into every output directory: ``--overwrite`` replaces only these."""


def io_error(path: str | os.PathLike, err: OSError) -> LongctxError:
    """ONE line naming the output ``path`` and the cause (disk full, read-only, permission) of ``err``."""
    cause = err.strerror or (str(err).splitlines() or [type(err).__name__])[0]
    name = err.filename if isinstance(err.filename, str) else None
    detail = f" ({name})" if name and Path(name) != Path(path) else ""
    return LongctxError(f"{path}: cannot write: {cause}{detail}")


def check_out_vs_inputs(out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None], *,
                        flag: str = "--out") -> None:
    """Refuse an output that is, contains, or lies inside one of ``inputs`` (symlinks resolved).

    Replacing such an output (``--overwrite``) would delete the input, and writing into an input
    mixes our files with the user's. Inputs that do not exist on disk (hub names, ``builtin``) are
    skipped: nothing there can be lost.
    """
    o = Path(out).resolve()
    for inp in inputs:
        if inp is None or not Path(inp).exists():
            continue
        i = Path(inp).resolve()
        how = "is" if o == i else "contains" if o in i.parents else "is inside" if i in o.parents else None
        if how:
            raise LongctxError(f"{flag} {out}: {how} the input {inp}; write the output to a folder of its own")


def check_can_create(out: str | os.PathLike, *, flag: str = "--out") -> None:
    """Refuse up front an output whose nearest existing folder cannot take it (a file on the way, a
    read-only location), so that the error comes before the work, not at the first save."""
    at = Path(out).absolute()
    while not at.exists() and at != at.parent:
        at = at.parent
    if not at.is_dir():
        raise LongctxError(f"{flag} {out}: cannot write: {at} is a file, not a folder")
    if not os.access(at, os.W_OK | os.X_OK):
        raise LongctxError(f"{flag} {out}: cannot write: {at} is not writable")


def is_our_output(path: str | os.PathLike, legacy: Iterable[str] = ()) -> bool:
    """Whether the directory ``path`` was written by longctx: it holds :data:`OUTPUT_MARKER`, or
    (outputs written before the marker existed) every file named in ``legacy``."""
    path = Path(path)
    if not path.is_dir() or path.is_symlink():
        return False
    if (path / OUTPUT_MARKER).is_file():
        return True
    legacy = tuple(legacy)
    return bool(legacy) and all((path / name).is_file() for name in legacy)


def check_can_write(out: str | os.PathLike, overwrite: bool, legacy: Iterable[str] = ()) -> None:
    """Refuse an existing ``out`` unless ``overwrite`` and it is ours (:func:`is_our_output`).

    :func:`atomic_dir` calls it; entry points call it up front too, before hours of work.
    """
    out = Path(out)
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise LongctxError(f"{out}: already exists (choose another output or pass --overwrite)")
        if not is_our_output(out, legacy):
            raise LongctxError(f"{out}: --overwrite: not a folder written by longctx (no {OUTPUT_MARKER}); "
                               "refusing to delete it, choose another output")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory + ``os.replace``.

    Any I/O failure (disk full, read-only location) is one :class:`LongctxError` naming ``path``;
    the temp file is removed.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            # mkstemp makes 0600 files; give the output the permissions a plain open() would.
            os.chmod(tmp, 0o666 & ~_umask())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(err, OSError):
            raise io_error(path, err) from None
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike, overwrite: bool = False, *, command: str = "longctx",
               legacy: Iterable[str] = ()) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``final`` only if the block finishes.

    On an exception the temporary directory is removed and ``final`` is untouched; an I/O error
    (disk full, read-only location) becomes one :class:`LongctxError` naming ``final`` and the cause.
    The finished directory holds :data:`OUTPUT_MARKER` (naming ``command``). ``overwrite=True``
    replaces an existing ``final`` only if it is ours (:func:`is_our_output` with ``legacy``): a
    user's folder is never deleted, whatever the flags.
    """
    final = Path(final)
    check_can_write(final, overwrite, legacy)
    tmp = None
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 dirs; outputs are meant to be shared
        yield tmp
        atomic_write_json(tmp / OUTPUT_MARKER, {"tool": "longctx", "command": command})
        old = None
        if final.exists():
            old = final.parent / f".{final.name}.old-{os.getpid()}"
            os.replace(final, old)
        try:
            os.replace(tmp, final)
        except BaseException:
            if old is not None:
                os.replace(old, final)  # put the previous output back
            raise
    except BaseException as err:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError):
            raise io_error(final, err) from None
        if isinstance(err, LongctxError) and tmp is not None and str(tmp) in str(err):
            raise LongctxError(str(err).replace(str(tmp), str(final))) from None
        raise
    _fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_text(path: str | os.PathLike, *, missing: str = "no such file", what: str = "a text file") -> str:
    """The UTF-8 text of a user's file; missing, a directory, unreadable or not UTF-8 (a binary or
    Latin-1 file) is ONE :class:`LongctxError` naming the file and saying what was ``what`` expected."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LongctxError(f"{path}: {missing}") from None
    except IsADirectoryError:
        raise LongctxError(f"{path}: a directory; expected {what}") from None
    except UnicodeDecodeError as err:
        raise LongctxError(f"{path}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start}); "
                           f"expected {what} in UTF-8") from None
    except OSError as err:
        raise LongctxError(f"{path}: cannot read ({err.strerror or err})") from None


_JSON_KINDS = {dict: "object", list: "list"}


def read_json(path: str | os.PathLike, *, kind: type | None = dict, missing: str = "missing") -> Any:
    """The parsed JSON file at ``path``; any problem is ONE :class:`LongctxError` naming the file.

    Users hand us config.json, manifests and few-shot files: a missing, unreadable, non-UTF-8 or
    malformed file must say which file and line, never end in a decoder traceback. ``kind`` (dict,
    list, or None for anything) is the top-level type the caller needs; ``missing`` ends the message
    for an absent file (say what the file should have been).
    """
    path = Path(path)
    text = read_text(path, missing=missing, what="a JSON file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise LongctxError(f"{where(path, err.lineno)}: not valid JSON ({err.msg})") from None
    if kind is not None and not isinstance(data, kind):
        raise LongctxError(f"{path}: expected a JSON {_JSON_KINDS.get(kind, kind.__name__)}, got {type(data).__name__}")
    return data


def read_yaml(path: str | os.PathLike, *, missing: str = "config file not found") -> Any:
    """The parsed YAML file at ``path`` (``None`` for an empty file); a missing file or bad YAML is ONE
    :class:`LongctxError` naming the file and line (trainer configs, recipes)."""
    text = read_text(path, missing=missing, what="a YAML file")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise LongctxError(f"{path}{line}: invalid YAML ({getattr(err, 'problem', err)})") from None
