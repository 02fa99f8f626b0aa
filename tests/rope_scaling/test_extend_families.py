"""Proof per family: a tiny random checkpoint, extended, loaded by transformers alone.

transformers computes inv_freq in float32 at load time, so "equal to ours" means our float64
frequencies rounded to float32 agree within float32 rounding (rel. 1e-5; see test_rope_oracle for
the float64 comparison of the same functions).
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from longctx.models.tiny import make_tiny_checkpoint
from rope_scaling.checkpoint_config import read_config
from rope_scaling.extend import extend_checkpoint, plan_extension

# family, method, extra method params; together they cover every transformers rope_type we write
CASES = [
    ("llama", "yarn", {}),
    ("mistral", "dynamic", {}),
    ("qwen2", "linear", {}),
    ("qwen3", "llama3", {}),
    ("glm", "yarn", {}),  # partial_rotary_factor 0.5
    ("glm4", "ntk", {}),
    ("phi3", "longrope", {}),
]
TARGET = 1024  # tiny models are trained (configured) at 256


@pytest.fixture(scope="module")
def extended(tmp_path_factory):
    """family -> (source dir, extended dir, plan), built once."""
    out = {}
    for family, method, params in CASES:
        root = tmp_path_factory.mktemp(family)
        src = make_tiny_checkpoint(root / "src", family)
        raw, path = read_config(src)
        plan = plan_extension(raw, path, method=method, target_length=TARGET, **params)
        extend_checkpoint(src, root / "ext", method=method, target_length=TARGET, **params)
        out[family] = (src, root / "ext", plan)
    return out


def _load(path):
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def _close32(hf: torch.Tensor, ours: torch.Tensor) -> bool:
    return bool(((hf.double() - ours.double()).abs() <= 1e-5 * ours.double().abs()).all())


@pytest.mark.parametrize("family,method,params", CASES, ids=[c[0] for c in CASES])
def test_transformers_loads_our_frequencies(extended, family, method, params):
    """After from_pretrained(OUT), the rotary embedding's inv_freq (at the target length where it switches at
    run time) and attention scaling equal ours; config has the new length and the trained one."""
    src, ext, plan = extended[family]
    model = _load(ext)
    rotary = model.model.rotary_emb
    x = torch.zeros(1, dtype=torch.float32)
    rotary(x, torch.arange(TARGET)[None])  # dynamic/longrope pick their long-context frequencies here
    assert rotary.inv_freq.shape == plan.new_inv_freq.shape
    assert _close32(rotary.inv_freq, plan.new_inv_freq), (rotary.inv_freq, plan.new_inv_freq)
    assert rotary.attention_scaling == pytest.approx(plan.attention_factor, rel=1e-9)
    rp = model.config.rope_parameters
    assert rp["original_max_position_embeddings"] == 256
    assert model.config.max_position_embeddings == (256 if method == "dynamic" else TARGET)
    assert rp["partial_rotary_factor"] == (0.5 if family.startswith("glm") else 1.0)


def _logits(model, n):
    ids = torch.arange(n)[None] % 250
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_dynamic_leaves_logits_inside_the_original_window_unchanged(extended):
    """Dynamic NTK (mistral): logits for a 200-token prompt (< 256) are bit-identical to the source model's."""
    src, ext, _ = extended["mistral"]
    assert torch.equal(_logits(_load(src), 200), _logits(_load(ext), 200))


def test_longrope_with_unit_attention_factor_leaves_short_logits_unchanged(tmp_path):
    """LongRoPE (phi3) with short_factor all 1 and attention_factor 1: short prompts see the original RoPE exactly,
    while a prompt past the original window does change."""
    src = make_tiny_checkpoint(tmp_path / "src", "phi3")
    extend_checkpoint(src, tmp_path / "ext", method="longrope", factor=4, attention_factor=1.0)
    a, b = _load(src), _load(tmp_path / "ext")
    assert torch.equal(_logits(a, 200), _logits(b, 200))
    assert not torch.allclose(_logits(a, 300), _logits(b, 300))


def test_yarn_keeps_high_frequency_pairs_up_to_the_attention_scale(extended):
    """YaRN (llama): for the pairs it extrapolates, cos/sin inside the original window equal the source model's
    times the attention factor; the interpolated pairs differ."""
    src, ext, plan = extended["llama"]
    pos = torch.arange(256)[None]
    x = torch.zeros(1)
    cos_a, sin_a = _load(src).model.rotary_emb(x, pos)
    cos_b, sin_b = _load(ext).model.rotary_emb(x, pos)
    half = plan.new_inv_freq.numel()
    kept = [r.pair for r in plan.pairs() if r.action == "extrapolate"]
    moved = [r.pair for r in plan.pairs() if r.action == "interpolate"]
    assert kept and moved
    cols = kept + [half + k for k in kept]
    torch.testing.assert_close(cos_b[..., cols], cos_a[..., cols] * plan.attention_factor)
    torch.testing.assert_close(sin_b[..., cols], sin_a[..., cols] * plan.attention_factor)
    assert not torch.allclose(cos_b[..., moved], cos_a[..., moved] * plan.attention_factor)


def test_legacy_config_extends_like_the_v5_one(extended, tmp_path):
    """A config.json in the old form (top-level rope_theta, no rope_parameters) gives the same checkpoint RoPE, and
    the written file has no legacy keys left."""
    import json
    import shutil

    src, ext, _ = extended["llama"]
    legacy = tmp_path / "legacy"
    shutil.copytree(src, legacy)
    cfg = json.loads((legacy / "config.json").read_text())
    theta = cfg.pop("rope_parameters")["rope_theta"]
    cfg["rope_theta"], cfg["rope_scaling"] = theta, None
    (legacy / "config.json").write_text(json.dumps(cfg))
    extend_checkpoint(legacy, tmp_path / "out", method="yarn", target_length=TARGET)
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    assert "rope_theta" not in written and "rope_scaling" not in written
    assert written["rope_parameters"] == json.loads((ext / "config.json").read_text())["rope_parameters"]
    torch.testing.assert_close(_load(tmp_path / "out").model.rotary_emb.inv_freq, _load(ext).model.rotary_emb.inv_freq,
                               rtol=0, atol=0)
