"""Checks and parsers of evaluation flags: one-line errors naming the flag, before any model loads.

Shared by the evaluation subcommands (``longctx.cli.<name>``), :mod:`eval_longbench.model_source` and
the benchmarks; here, below the commands, because library modules never import a ``cli`` module.
"""

from __future__ import annotations

import math

import torch

from longctx.core.errors import LongctxError


def parse_lengths(text: str) -> list[int]:
    """``"256,512,1k,32K"`` -> ``[256, 512, 1024, 32768]``."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        mult = 1024 if part[-1] in "kK" else 1
        try:
            out.append(int(part[:-1] if mult > 1 else part) * mult)
        except ValueError:
            raise LongctxError(f"--lengths: {part!r} is not a length (e.g. 512 or 4k)") from None
        if out[-1] < 1:
            raise LongctxError(f"--lengths: {part!r} must be a positive length")
    if not out:
        raise LongctxError("--lengths: empty")
    return out


def check_int(flag: str, value: int | None, minimum: int = 1) -> None:
    """One-line error unless ``value`` (when given) is at least ``minimum``."""
    if value is not None and value < minimum:
        raise LongctxError(f"{flag}: must be at least {minimum}, got {value}")


def check_seconds(flag: str, value: float) -> None:
    """One-line error unless ``value`` is a finite number of seconds above 0."""
    if not (math.isfinite(value) and value > 0):
        raise LongctxError(f"{flag}: must be a finite number of seconds above 0, got {value}")


def check_device(text: str) -> None:
    """One-line error unless ``text`` names a torch device that this machine has (cpu, cuda[:i], mps, ...)."""
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        raise LongctxError(f"--device: {text!r} is not a torch device (e.g. cpu, cuda, cuda:1, mps)") from None
    if dev.type == "cpu":
        return
    backend = getattr(torch, dev.type, None) if dev.type != "mps" else getattr(torch.backends, "mps", None)
    available = getattr(backend, "is_available", None)
    if available is None:
        raise LongctxError(f"--device: {text!r} cannot run an evaluation (use cpu, cuda[:i] or mps)")
    if not available():
        raise LongctxError(f"--device: {text!r}: no {dev.type} device is available on this machine")
    count = getattr(backend, "device_count", None)
    if dev.index is not None and count is not None and dev.index >= count():
        raise LongctxError(f"--device: {text!r}: this machine has {count()} {dev.type} device(s) (index from 0)")
