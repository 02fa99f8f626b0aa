"""Our RoPE methods against transformers' own ``ROPE_INIT_FUNCTIONS``, driven by real configs.

transformers computes in float32, so a 1e-12 comparison needs its functions run in float64: we
swap the ``torch`` global of ``transformers.modeling_rope_utils`` for a proxy whose ``float`` /
``float32`` dtypes are float64 (and make ``Tensor.float()`` return float64) for the duration of a
call. Every line of transformers' code still runs; only the precision changes. A second test
checks the unmodified float32 functions at float32 tolerance.
"""

from __future__ import annotations

import contextlib
import itertools

import pytest
import torch
import transformers.modeling_rope_utils as hf_rope
from transformers import LlamaConfig

from rope_scaling.registry import compute

HEAD_DIMS = (64, 80, 128, 256)
BASES = (1e4, 5e5, 1e6)
PARTIALS = (1.0, 0.5)
FACTORS = (2, 4, 8, 16, 32, 64)
ORIGINALS = (2048, 4096, 32768)
GRID = list(itertools.product(HEAD_DIMS, BASES, PARTIALS, FACTORS, ORIGINALS))


class _Float64Torch:
    """``torch`` with its float32 dtypes replaced by float64; everything else delegates."""

    float = torch.float64
    float32 = torch.float64

    def __getattr__(self, name):
        return getattr(torch, name)


@contextlib.contextmanager
def hf_in_float64(monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(hf_rope, "torch", _Float64Torch())
        m.setattr(torch.Tensor, "float", lambda self, *a, **k: self.to(torch.float64))
        yield


def _config(head_dim: int, partial: float, max_pos: int, rope: dict) -> LlamaConfig:
    return LlamaConfig(hidden_size=head_dim * 2, num_attention_heads=2, num_key_value_heads=2, head_dim=head_dim,
                       intermediate_size=8, num_hidden_layers=1, vocab_size=8, max_position_embeddings=max_pos,
                       rope_parameters={**rope, "partial_rotary_factor": partial})


def _cases():
    """(our method, our kwargs, rope_type, hf config, hf seq_len) over the whole grid, for each type."""
    rng = torch.Generator().manual_seed(0)
    for head_dim, base, partial, factor, orig in GRID:
        ours = dict(base=base, head_dim=head_dim, partial_rotary_factor=partial, factor=factor, original_length=orig)
        target = orig * factor
        yield "linear", ours, _config(head_dim, partial, orig, {"rope_type": "linear", "rope_theta": base, "factor": float(factor)}), None
        for seq in (orig // 2, target):
            yield ("dynamic", {**ours, "seq_len": seq},
                   _config(head_dim, partial, orig, {"rope_type": "dynamic", "rope_theta": base, "factor": float(factor)}), seq)
        yarn = {"rope_type": "yarn", "rope_theta": base, "factor": float(factor), "original_max_position_embeddings": orig}
        yield "yarn", ours, _config(head_dim, partial, target, yarn), None
        llama3 = {"rope_type": "llama3", "rope_theta": base, "factor": float(factor), "original_max_position_embeddings": orig,
                  "low_freq_factor": 1.0, "high_freq_factor": 4.0}
        yield "llama3", {**ours, "low_freq_factor": 1.0, "high_freq_factor": 4.0}, _config(head_dim, partial, target, llama3), None
        n = int(head_dim * partial) // 2
        long_f = (1 + torch.rand(n, generator=rng, dtype=torch.float64) * factor).tolist()
        short_f = (0.5 + torch.rand(n, generator=rng, dtype=torch.float64)).tolist()
        lr = {"rope_type": "longrope", "rope_theta": base, "factor": float(factor), "original_max_position_embeddings": orig,
              "long_factor": long_f, "short_factor": short_f}
        for seq in (orig, target):
            yield ("longrope", {**ours, "long_factor": long_f, "short_factor": short_f, "seq_len": seq},
                   _config(head_dim, partial, target, lr), seq)
    # YaRN's optional knobs on a smaller grid
    for (head_dim, base, partial, factor, orig), knobs in itertools.product(
        GRID[::7], ({"beta_fast": 16.0, "beta_slow": 2.0}, {"mscale": 0.707, "mscale_all_dim": 0.707},
                    {"mscale": 1.0, "mscale_all_dim": 0.5}, {"attention_factor": 0.9}, {"truncate": False})
    ):
        ours = dict(base=base, head_dim=head_dim, partial_rotary_factor=partial, factor=factor, original_length=orig, **knobs)
        rope = {"rope_type": "yarn", "rope_theta": base, "factor": float(factor), "original_max_position_embeddings": orig, **knobs}
        yield "yarn", ours, _config(head_dim, partial, orig * factor, rope), None


CASES = list(_cases())


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a.double() - b.double()).abs() / b.double().abs()).max())


def test_oracle_grid_covers_every_transformers_type():
    """The grid exercises linear, dynamic, yarn, llama3 and longrope with both partial rotary factors."""
    types = {c[0] for c in CASES}
    assert types == {"linear", "dynamic", "yarn", "llama3", "longrope"} <= set(hf_rope.ROPE_INIT_FUNCTIONS)
    assert {c[1]["partial_rotary_factor"] for c in CASES} == {1.0, 0.5}
    assert len(CASES) > 2000


def test_methods_match_transformers_in_float64(monkeypatch):
    """inv_freq and attention factor equal transformers' (run in float64) to relative error <= 1e-12."""
    worst_f, worst_a = 0.0, 0.0
    with hf_in_float64(monkeypatch):
        for name, ours, cfg, seq in CASES:
            theirs, their_attn = hf_rope.ROPE_INIT_FUNCTIONS[cfg.rope_parameters["rope_type"]](cfg, "cpu", seq_len=seq)
            assert theirs.dtype == torch.float64, name  # the proxy really reached transformers' code
            mine, my_attn = compute(name, **ours)
            assert mine.shape == theirs.shape, (name, ours)
            worst_f = max(worst_f, _rel(mine, theirs))
            worst_a = max(worst_a, abs(my_attn - their_attn) / abs(their_attn))
    assert worst_f <= 1e-12 and worst_a <= 1e-12, (worst_f, worst_a)


def test_methods_match_unmodified_transformers_at_float32_tolerance():
    """Against transformers' own float32 computation, agreement is within float32 rounding (rel 1e-5)."""
    worst = 0.0
    for name, ours, cfg, seq in CASES[::5]:
        theirs, their_attn = hf_rope.ROPE_INIT_FUNCTIONS[cfg.rope_parameters["rope_type"]](cfg, "cpu", seq_len=seq)
        assert theirs.dtype == torch.float32
        mine, my_attn = compute(name, **ours)
        worst = max(worst, _rel(mine, theirs))
        assert my_attn == pytest.approx(their_attn, rel=1e-6)
    assert worst <= 1e-5, worst
