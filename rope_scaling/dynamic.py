"""Dynamic NTK (emozilla, 2023; the rule transformers applies at run time for ``rope_type="dynamic"``).

For a running sequence of length L > L0 (the trained length) the base becomes
``b * (s * L / L0 - (s - 1))^(d / (d - 2))``; for L <= L0 nothing changes, which is why it is
training-free and leaves short prompts bit-identical. transformers measures L0 by
``max_position_embeddings``, so an extended dynamic checkpoint keeps that field at L0.
"""

from __future__ import annotations

from rope_scaling.common import RopeOutput, check_base, check_factor, check_length, default_inv_freq, rotary_dim
from rope_scaling.method import Prepared, Request, RopeMethod


def dynamic_base(base: float, factor: float, dim: int, original_length: int, seq_len: int) -> float:
    """The base used for a sequence of ``seq_len`` tokens (unchanged at or below ``original_length``)."""
    check_base(base)
    check_factor(factor)
    check_length(original_length)
    seq_len = max(int(seq_len), original_length)
    if dim <= 2:
        return float(base)  # one pair, exponent 0: the base does not move it
    scale = factor * seq_len / original_length - (factor - 1)
    return float(base) * scale ** (dim / (dim - 2))


def dynamic_rope(
    *, base: float, head_dim: int, factor: float, original_length: int, seq_len: int | None = None,
    partial_rotary_factor: float = 1.0, **_: object,
) -> RopeOutput:
    """Frequencies for a sequence of ``seq_len`` tokens (default: the original length, i.e. unchanged)."""
    dim = rotary_dim(head_dim, partial_rotary_factor)
    seq_len = original_length if seq_len is None else seq_len
    return default_inv_freq(dynamic_base(base, factor, dim, original_length, seq_len), dim), 1.0


def prepare_dynamic(req: Request) -> Prepared:
    """max_position_embeddings stays at the trained length: the run-time rule measures L0 by it."""
    L0 = req.source.original_length
    return Prepared.unchanged(req).with_note(
        f"max_position_embeddings stays {L0}: transformers' dynamic rule measures the trained length by it; "
        f"frequencies rescale at run time beyond it", max_position_embeddings=L0)


DYNAMIC = RopeMethod(
    "dynamic", dynamic_rope, "dynamic", "dynamic NTK: base grows with the running length, untouched inside the "
    "original window", "free", prepare=prepare_dynamic, seq_len_dependent=True, keeps_trained_length=True,
    training_text="training-free: frequencies change only past the original length, at run time",
)
