"""A long public-domain English text that a system package ships, read offline as plain text.

Perplexity vs length and natural haystacks need real long prose, and nothing may download at run
time. Debian's ``sword-text-web`` (``apt-get install sword-text-web``) ships the World English
Bible (modern English, explicitly dedicated to the public domain by its translators; about 1M
tokens) as a SWORD "zText" module: zlib-compressed blocks of OSIS XML. :func:`read_sword_ztext`
decompresses the blocks in order and strips the markup (footnotes and cross-references removed),
so it needs no SWORD library.

zText layout (SWORD's ``zverse``): ``ot.bzs`` / ``nt.bzs`` hold one little-endian ``(offset, size,
uncompressed size)`` uint32 triple per block of ``ot.bzz`` / ``nt.bzz``; each block is a zlib
stream of consecutive verses.
"""

from __future__ import annotations

import html
import re
import struct
import zlib
from pathlib import Path

from longctx.core.errors import LongctxError

WEB_MODULE = Path("/usr/share/sword/modules/texts/ztext/engWEB2015eb")
"""Where Debian's ``sword-text-web`` installs the World English Bible."""
WEB_INSTALL = "apt-get install sword-text-web"

_DROP = re.compile(r"<(note|rdg)\b[^>]*>.*?</\1>", re.DOTALL)  # footnotes and variant readings: not running text
_BREAK = re.compile(r"</?(div|chapter|verse|lb|l|lg|title|milestone|item|list|p|q)\b[^>]*>")  # between words
_TAG = re.compile(r"<[^>]*>")  # inside words' runs: <w>, <seg>, <name>, ...
_BLOCK_ENTRY = struct.Struct("<III")


def _blocks(index: Path, data: Path) -> list[bytes]:
    raw, blob = index.read_bytes(), data.read_bytes()
    if len(raw) % _BLOCK_ENTRY.size:
        raise LongctxError(f"{index}: not a SWORD block index (size {len(raw)} is not a multiple of 12)")
    out = []
    for i in range(0, len(raw), _BLOCK_ENTRY.size):
        offset, size, _ = _BLOCK_ENTRY.unpack_from(raw, i)
        if size == 0:
            continue
        try:
            out.append(zlib.decompress(blob[offset:offset + size]))
        except zlib.error as err:
            raise LongctxError(f"{data}: block {i // 12} does not decompress ({err})") from None
    return out


def osis_to_text(osis: str) -> str:
    """Plain running text of OSIS markup: notes dropped, tags removed, entities decoded, spaces collapsed."""
    return " ".join(html.unescape(_TAG.sub("", _BREAK.sub(" ", _DROP.sub(" ", osis)))).split())


def read_sword_ztext(module: str | Path) -> str:
    """The whole text of a SWORD zText module directory (Old then New Testament) as plain text."""
    module = Path(module)
    parts = []
    for testament in ("ot", "nt"):
        index, data = module / f"{testament}.bzs", module / f"{testament}.bzz"
        if index.is_file() and data.is_file():
            parts += _blocks(index, data)
    if not parts:
        raise LongctxError(f"{module}: no SWORD zText module here (ot.bzs/ot.bzz or nt.bzs/nt.bzz); "
                           f"for the World English Bible: {WEB_INSTALL}")
    text = osis_to_text(b"".join(parts).decode("utf-8", "replace"))
    if not text:
        raise LongctxError(f"{module}: the module holds no text")
    return text


def world_english_bible(module: str | Path | None = None) -> str:
    """The World English Bible from Debian's ``sword-text-web``; one line with the install command if absent."""
    module = Path(module) if module is not None else WEB_MODULE
    if not module.is_dir():
        raise LongctxError(f"{module}: the World English Bible is not installed; {WEB_INSTALL} "
                           "(or pass --text with your own long English text)")
    return read_sword_ztext(module)
