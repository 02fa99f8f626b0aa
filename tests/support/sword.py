"""A SWORD zText module written from text blocks: Debian's ``sword-text-web`` layout, small, for the tests
that read one (``eval_longbench.public_text``, ruler's default haystack)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path


def write_module(folder: Path, testament: str, blocks: list[str]) -> None:
    """SWORD zverse layout: <t>.bzs = (offset, size, uncompressed size) uint32 triples, <t>.bzz = zlib blocks."""
    data, index = b"", b""
    for b in blocks:
        z = zlib.compress(b.encode())
        index += struct.pack("<III", len(data), len(z), len(b.encode()))
        data += z
    (folder / f"{testament}.bzs").write_bytes(index)
    (folder / f"{testament}.bzz").write_bytes(data)
