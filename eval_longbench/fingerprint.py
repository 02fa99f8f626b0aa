"""Content fingerprints, so a resumed evaluation never reuses results of other weights or other text.

A results file names models by directory name; a different checkpoint saved under the same name (a
retrained ``runs/ckpt``, a re-extension with another factor, which only rewrites ``config.json``)
must not inherit the old scores. The fingerprint hashes what loading the model reads:

- every ``*.json``, tokenizer and chat-template file, and remote code, in full (small);
- each ``*.safetensors`` file's header (names, dtypes, shapes, offsets) and size, plus the first,
  middle and last :data:`SAMPLE` bytes of *every tensor*. Training changes essentially every
  element of a tensor it touches, so this tells trained weights apart while reading a few MB of a
  many-GB checkpoint; a hand edit of single elements in the middle of a tensor is not detected.
  A file whose header does not parse is hashed in full (loading it will then fail with its own error).

File names are hashed, times are not: copying, touching or hard-linking a checkpoint keeps its
fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

SAMPLE = 4096
"""Bytes hashed at the start, middle and end of each tensor."""

HASHED_SUFFIXES = (".safetensors", ".json", ".model", ".txt", ".tiktoken", ".py", ".jinja")
"""Files of a checkpoint directory that loading reads (weights, configs, tokenizer, chat template, code)."""

_MAX_HEADER = 100 * 1024 * 1024


def model_fingerprint(path: str | Path) -> str:
    """A short hex digest of the checkpoint directory ``path``'s content (see the module doc)."""
    h = hashlib.sha256()
    root = Path(path)
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix in HASHED_SUFFIXES) if root.is_dir() else []
    for f in files:
        h.update(f.name.encode() + b"\0")
        if f.suffix == ".safetensors":
            _safetensors_digest(f, h)
        else:
            _full_digest(f, h)
        h.update(b"\0")
    return h.hexdigest()[:16]


def text_fingerprint(text: str | None) -> str | None:
    """A short hex digest of ``text`` (``None`` stays ``None``: the built-in noise)."""
    return None if text is None else hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _full_digest(f: Path, h) -> None:
    with f.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)


def _safetensors_digest(f: Path, h) -> None:
    size = f.stat().st_size
    try:
        with f.open("rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if not 0 < n <= min(_MAX_HEADER, size - 8):
                raise ValueError("header size")
            header = fh.read(n)
            spans = sorted(
                (v["data_offsets"][0], v["data_offsets"][1]) for k, v in json.loads(header).items() if k != "__metadata__"
            )
            h.update(struct.pack("<Q", size) + header)
            base = 8 + n
            for begin, end in spans:
                length = end - begin
                for at in sorted({0, max(0, length // 2 - SAMPLE // 2), max(0, length - SAMPLE)}):
                    fh.seek(base + begin + at)
                    h.update(fh.read(min(SAMPLE, length - at)))
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, struct.error, UnicodeDecodeError):
        h.update(b"unparsed\0")
        _full_digest(f, h)


def file_fingerprint(path: str | Path) -> str:
    """A short hex digest of the bytes of the file at ``path`` (a data file an evaluation reads)."""
    h = hashlib.sha256()
    _full_digest(Path(path), h)
    return h.hexdigest()[:16]
