"""ABF base selection against values worked by hand.

Lower bound (arXiv 2405.14591), rotary dim 4 so theta = (1, b^-1/2) and B(m) = cos m + cos(m / sqrt b):
  L = 2: B(1) = cos 1 + cos(1/sqrt b) > 0 for every b >= 1, and B(2) >= 0 <=> cos(2/sqrt b) >= -cos 2
         = cos(pi - 2) <=> 2/sqrt b <= pi - 2 <=> b >= (2 / (pi - 2))^2 = 3.06929.
  L = 3: m = 3 binds the same way: b >= (3 / (pi - 3))^2 = 448.912 (m = 2 then holds too).
Critical base (arXiv 2310.05209), d_extra = 2 ceil((d/2) log_b(T_train / 2 pi)), beta = (T / 2 pi)^(d / d_extra):
  Llama-2 (d 128, b 1e4, T_train 4096): (64 * ln 651.9 / ln 1e4) = 45.03 -> d_extra = 92, the paper's value.
  d 4, b 100, T_train = 2 pi * 10: 2 * 0.5 = 1 -> d_extra 2; target 2 pi * 1000 -> beta = 1000^(4/2) = 1e6,
  and target = T_train gives back b = 10^2 = 100.
"""

from __future__ import annotations

import math

import pytest

from longctx.core.errors import LongctxError
from rope_scaling.base_selection import critical_base, critical_dimension, decay_curve, decays_safely, lower_bound_base


def test_lower_bound_length_2_dim_4_is_worked_value():
    """Smallest base with B(m) >= 0 for m <= 2, rotary dim 4: (2/(pi-2))^2."""
    assert lower_bound_base(2, dim=4, rtol=1e-10) == pytest.approx((2 / (math.pi - 2)) ** 2, rel=1e-8)


def test_lower_bound_length_3_dim_4_is_worked_value():
    """Smallest base with B(m) >= 0 for m <= 3, rotary dim 4: (3/(pi-3))^2."""
    assert lower_bound_base(3, dim=4, rtol=1e-10) == pytest.approx((3 / (math.pi - 3)) ** 2, rel=1e-8)


def test_lower_bound_is_tight_on_a_realistic_head():
    """For d = 128, L = 4096 the returned base satisfies the condition and 0.1% less does not."""
    b = lower_bound_base(4096, dim=128, rtol=1e-5)
    assert decays_safely(b, 128, 4096) and not decays_safely(b * 0.999, 128, 4096)


def test_decay_curve_starts_at_the_pair_count():
    """B(0) = d/2 (every cosine is 1) and B(1) = sum cos(theta_i)."""
    curve = decay_curve(100.0, 4, 1)
    assert float(curve[0]) == 2.0
    assert float(curve[1]) == pytest.approx(math.cos(1) + math.cos(0.1), rel=1e-15)


def test_critical_dimension_of_llama2_is_92():
    """The paper's critical dimension for Llama-2 (d 128, base 1e4, 4K training)."""
    assert critical_dimension(128, 1e4, 4096) == 92


def test_critical_base_small_case_by_hand():
    """d 4, b 100, T_train 2pi*10: d_extra = 2, beta(2pi*1000) = 1e6 and beta(T_train) = 100."""
    t_train = 2 * math.pi * 10
    assert critical_base(2 * math.pi * 1000, dim=4, train_length=t_train, train_base=100) == pytest.approx(1e6, rel=1e-12)
    assert critical_base(t_train, dim=4, train_length=t_train, train_base=100) == pytest.approx(100, rel=1e-12)


def test_single_pair_has_no_lower_bound():
    """With one pair theta_0 = 1 whatever the base, so no base can help: a clear error."""
    with pytest.raises(LongctxError, match="pairs"):
        lower_bound_base(10, dim=2)
