"""Methods transformers does not implement (static NTK, ABF), the registry and the validators.

References are float64 math written here independently of the package, from the papers' formulas.
"""

from __future__ import annotations

import math

import pytest
import torch

from longctx.core.errors import LongctxError
from rope_scaling.registry import METHODS, compute, get_method, validate_params


def _reference_inv_freq(base: float, dim: int) -> torch.Tensor:
    return torch.tensor([base ** (-(2 * i) / dim) for i in range(dim // 2)], dtype=torch.float64)


@pytest.mark.parametrize("head_dim,partial", [(64, 1.0), (80, 1.0), (128, 0.5), (256, 1.0)])
@pytest.mark.parametrize("factor", [2, 8, 64])
def test_ntk_matches_reference_base_change(head_dim, partial, factor):
    """Static NTK = plain RoPE with base b * s^(d/(d-2)) (bloc97; YaRN paper §3.1), rel. err <= 1e-12."""
    dim = int(head_dim * partial)
    ref = _reference_inv_freq(1e4 * factor ** (dim / (dim - 2)), dim)
    ours, attn = compute("ntk", base=1e4, head_dim=head_dim, partial_rotary_factor=partial, factor=factor, original_length=4096)
    assert attn == 1.0
    assert float(((ours - ref).abs() / ref).max()) <= 1e-12


def test_ntk_keeps_the_fastest_pair_and_slows_the_slowest_by_the_factor():
    """The point of NTK-aware scaling: theta_0 unchanged, theta_{d/2-1} divided by exactly s."""
    base, dim, s = 5e5, 128, 16
    old = _reference_inv_freq(base, dim)
    new, _ = compute("ntk", base=base, head_dim=dim, factor=s, original_length=4096)
    assert float(new[0]) == pytest.approx(float(old[0]), rel=1e-15)
    assert float(old[-1] / new[-1]) == pytest.approx(s, rel=1e-12)


def test_abf_is_plain_rope_with_the_new_base():
    """ABF inv_freq is base'^(-2i/d) for the given rope_theta, independent of the factor."""
    ours, attn = compute("abf", base=1e4, head_dim=128, rope_theta=5e5, factor=8, original_length=4096)
    ref = _reference_inv_freq(5e5, 128)
    assert attn == 1.0 and float(((ours - ref).abs() / ref).max()) <= 1e-12


def test_abf_refuses_a_base_that_is_not_larger():
    """A new base at or below the old one is not an extension: LongctxError, not a warning."""
    with pytest.raises(LongctxError, match="rope_theta"):
        compute("abf", base=1e4, head_dim=64, rope_theta=5e3, factor=2, original_length=2048)


def test_dynamic_leaves_frequencies_alone_inside_the_original_window():
    """Dynamic NTK at any seq_len <= L0 gives exactly the default frequencies."""
    default, _ = compute("default", base=1e4, head_dim=64)
    for seq in (1, 100, 2048):
        dyn, _ = compute("dynamic", base=1e4, head_dim=64, factor=4, original_length=2048, seq_len=seq)
        assert torch.equal(dyn, default)


def test_yarn_stays_between_interpolation_and_the_original():
    """Every YaRN frequency lies in [theta/s, theta] (transformers' own property test, here in float64)."""
    old, _ = compute("default", base=1e4, head_dim=128)
    new, _ = compute("yarn", base=1e4, head_dim=128, factor=16, original_length=4096)
    assert bool((new <= old * (1 + 1e-15)).all()) and bool((new >= old / 16 * (1 - 1e-15)).all())


def test_yarn_attention_factor_is_0_1_ln_s_plus_1():
    """YaRN eq. 22: sqrt(1/t) = 0.1 ln(s) + 1; at s = e it is exactly 1.1."""
    _, attn = compute("yarn", base=1e4, head_dim=64, factor=math.e, original_length=2048)
    assert attn == pytest.approx(1.1, rel=1e-15)


def test_factor_below_one_raises():
    """transformers only warns on factor < 1; we refuse it."""
    for name in ("linear", "ntk", "yarn", "llama3", "dynamic"):
        with pytest.raises(LongctxError, match="factor"):
            compute(name, base=1e4, head_dim=64, factor=0.5, original_length=2048)


def test_unknown_method_lists_the_valid_names():
    """An unknown name names every registered method."""
    with pytest.raises(LongctxError) as err:
        get_method("ntk-by-parts")
    for name in METHODS:
        assert name in str(err.value)


def test_unknown_parameter_is_refused():
    """A parameter the method does not take is an error that names what it does take."""
    with pytest.raises(LongctxError, match="beta_fast"):
        validate_params("linear", {"beta_fast": 32})
    validate_params("yarn", {"beta_fast": 16.0, "truncate": False})


def test_longrope_factor_list_must_match_the_pair_count():
    """A long_factor list of the wrong length is refused (transformers only warns)."""
    with pytest.raises(LongctxError, match="long_factor"):
        compute("longrope", base=1e4, head_dim=64, factor=4, original_length=2048, long_factor=[1.0] * 31, seq_len=8192)


def test_llama3_needs_low_below_high():
    """low_freq_factor >= high_freq_factor has no ramp: refused."""
    with pytest.raises(LongctxError, match="low_freq_factor"):
        compute("llama3", base=5e5, head_dim=128, factor=8, original_length=8192, low_freq_factor=4, high_freq_factor=1)
