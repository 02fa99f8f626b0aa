"""Llama-3.1 frequency scaling (Meta, "The Llama 3 Herd of Models", arXiv 2407.21783; reference
``apply_scaling`` in meta-llama/llama-models).

With L0 the original length: pairs whose wavelength is below ``L0 / high_freq_factor`` are kept,
pairs above ``L0 / low_freq_factor`` are divided by the factor, and in between the pair is blended
by ``smooth = (L0 / lambda - low_freq_factor) / (high_freq_factor - low_freq_factor)`` -- a ramp
over wavelength rather than over pair index (YaRN's ramp). No attention factor.
"""

from __future__ import annotations

import torch

from longctx.core.errors import LongctxError
from rope_scaling.common import RopeOutput, check_factor, check_length, default_inv_freq, rotary_dim, wavelengths
from rope_scaling.method import Param, RopeMethod


def llama3_rope(
    *, base: float, head_dim: int, factor: float, original_length: int, partial_rotary_factor: float = 1.0,
    low_freq_factor: float = 1.0, high_freq_factor: float = 4.0, **_: object,
) -> RopeOutput:
    """Llama-3 frequencies (defaults 1 / 4 are Meta's, with factor 8 and L0 = 8192 for Llama 3.1)."""
    check_factor(factor)
    check_length(original_length)
    if not (0 < low_freq_factor < high_freq_factor):
        raise LongctxError(
            f"low_freq_factor/high_freq_factor: need 0 < low < high, got {low_freq_factor}/{high_freq_factor}"
        )
    inv_freq = default_inv_freq(base, rotary_dim(head_dim, partial_rotary_factor))
    wavelen = wavelengths(inv_freq)
    low_freq_wavelen = original_length / low_freq_factor
    high_freq_wavelen = original_length / high_freq_factor
    smooth = (original_length / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    blended = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    out = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
    return torch.where(medium, blended, out), 1.0


LLAMA3 = RopeMethod(
    "llama3", llama3_rope, "llama3", "Llama-3.1: ramp over wavelength between original/high and original/low", "needed",
    params=(
        Param("low_freq_factor", float, "wavelengths above L0/low are divided by the factor", default=1.0, minimum=0.0,
              always_written=True),
        Param("high_freq_factor", float, "wavelengths below L0/high are kept", default=4.0, minimum=0.0,
              always_written=True),
    ),
)
