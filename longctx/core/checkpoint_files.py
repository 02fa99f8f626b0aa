"""Checking a checkpoint's weight files before trusting them: safetensors only, header, offsets, sizes.

A truncated download or a garbage file must be named in one line before it is hard-linked into a
new checkpoint (``longctx extend``) or handed to a loader whose error is a deep traceback
(``needle``, ``ppl``, ``train``). Only the header is read, never the tensors.
"""

from __future__ import annotations

import json
import logging
import math
import re
import os
import struct
from collections.abc import Iterable
from pathlib import Path

from longctx.core.errors import LongctxError

_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
                "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
"""Weight files that only unpickling can read (which runs arbitrary code): never loaded."""
_MAX_HEADER = 100 * 2**20  # the safetensors format's own limit on the JSON header

SAFE_LOAD_KWARGS = {"use_safetensors": True, "use_kernels": False}
"""Keyword arguments of every ``AutoModelForCausalLM.from_pretrained`` of ours: safetensors only, and no
Hub kernels. transformers >= 5.2x turns ``use_kernels`` on whenever the ``kernels`` package is installed
(5.17: off), and on CUDA ``model.train()`` then fetches remote kernel code (``kernels-community/rotary``):
code we did not ask to run, and an error on a machine without network. Found by the CUDA simulator
(tests/gpu_harness/test_gpu_sim.py, the trainer step); both versions accept the keyword."""


# transformers' RoPE validation accepts `original_max_position_embeddings` inside `rope_parameters` only for
# yarn, llama3 and longrope; for default (ntk, abf), linear and dynamic it logs "Unrecognized keys in
# `rope_parameters` ... {'original_max_position_embeddings'}" at every config build, i.e. several times per
# load, all through the quick start. We write the key for every method on purpose (README, `longctx
# extend`: config.json carries v5 rope_parameters WITH original_max_position_embeddings): for linear it is
# the only record of the trained length (max_position_embeddings is the new one), which the trainer's
# short-context guard reads (longctx.train.evaluate.original_window); for default (abf, ntk) and dynamic it
# tells a reader of config.json what the weights were trained at. transformers ignores it for these types.
# So we drop exactly that warning, and only when that key is the only one it names: any other unknown key
# still warns. Installed once, when this module (imported by every loader of ours) loads.
_OURS_ONLY = re.compile(r"Unrecognized keys in `rope_parameters` for 'rope_type'='[^']*': "
                        r"\{'original_max_position_embeddings'\}")


def _not_our_rope_key(record: logging.LogRecord) -> bool:
    return not _OURS_ONLY.fullmatch(record.getMessage())


def quiet_original_length_warning() -> None:
    """Silence transformers' warning about the ``original_max_position_embeddings`` we write (idempotent)."""
    log = logging.getLogger("transformers.modeling_rope_utils")
    if _not_our_rope_key not in log.filters:
        log.addFilter(_not_our_rope_key)


quiet_original_length_warning()


def check_safetensors(path: str | os.PathLike) -> dict:
    """The header of the safetensors file at ``path``; a bad file is ONE :class:`LongctxError` naming it.

    Checks: the 8-byte little-endian header length fits the file, the header is a JSON object, every
    tensor's ``data_offsets`` lie inside the data section and match its dtype x shape.
    """
    path = Path(path)
    bad = f"{path}: not a valid safetensors file"
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise LongctxError(f"{bad} ({size} bytes: too short for a header; truncated?)")
            (n,) = struct.unpack("<Q", head)
            if n > min(size - 8, _MAX_HEADER):
                raise LongctxError(f"{bad} (header length {n} > the file's {size} bytes; truncated or not safetensors)")
            raw = fh.read(n)
    except OSError as err:
        raise LongctxError(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise LongctxError(f"{bad} (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise LongctxError(f"{bad} (its header is not a JSON object)")
    data = size - 8 - n
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        try:
            start, end = (int(x) for x in meta["data_offsets"])
            shape = [int(d) for d in meta["shape"]]
            dtype = meta["dtype"]
        except (TypeError, ValueError, KeyError):
            raise LongctxError(f"{bad} (tensor {name!r}: malformed header entry)") from None
        if not 0 <= start <= end <= data:
            raise LongctxError(f"{bad} (tensor {name!r} ends at byte {end} of a {data}-byte data section; truncated?)")
        width = _DTYPE_BYTES.get(dtype)
        if width is not None and end - start != math.prod(shape) * width:
            raise LongctxError(f"{bad} (tensor {name!r}: {end - start} bytes for {dtype} {shape})")
    return header


def check_weight_files(files: Iterable[str | os.PathLike]) -> None:
    """:func:`check_safetensors` on every ``*.safetensors`` in ``files`` (others are not ours to check)."""
    for f in files:
        if str(f).endswith(".safetensors"):
            check_safetensors(f)


def check_model_weights(model_dir: str | os.PathLike) -> None:
    """:func:`check_safetensors` on every ``*.safetensors`` file directly in ``model_dir`` (before loading it)."""
    check_weight_files(sorted(Path(model_dir).glob("*.safetensors")))


def weight_files(src: Path) -> tuple[list[Path], list[Path]]:
    """``(safetensors files, pickle files)`` anywhere under ``src``."""
    files = [p for p in Path(src).rglob("*") if p.is_file()]
    return ([p for p in files if p.name.endswith(".safetensors")],
            [p for p in files if p.suffix in PICKLE_SUFFIXES])


def require_safetensors(src: str | os.PathLike) -> tuple[list[Path], list[Path]]:
    """``weight_files(src)``, refusing a checkpoint without safetensors weights (one line naming it).

    Every command that reads a model calls this: longctx never unpickles weights (that runs code).
    """
    safetensors, pickles = weight_files(Path(src))
    if not safetensors:
        if pickles:
            raise LongctxError(f"{src}: only pickle weights ({pickles[0].name}); longctx never unpickles or re-pickles "
                               "weights (unpickling runs arbitrary code). Convert first: "
                               "AutoModelForCausalLM.from_pretrained(src).save_pretrained(dst, safe_serialization=True)")
        raise LongctxError(f"{src}: no *.safetensors weights found")
    return safetensors, pickles
