"""The LongAlign oracle: a packed, weighted step equals the unpacked per-sequence-mean step.

Tiny Llama in float64. Sequences are packed two rows deep (with padding) and run with a
block-diagonal causal 4D mask built from cu_seqlens (the dense CPU twin of varlen attention).
Attention is "sdpa" (float64 throughout on CPU): HF's "eager" path computes the softmax in
float32, which alone puts ~1e-7 between packed and unpacked gradients.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from longctx.core.loss import chunked_lm_loss, shift_targets
from longctx.train.collate import collate_packs
from packing.weights import pack_loss_weights, token_loss_weights

PACK_LEN = 24
# (length, number of leading prompt tokens masked with -100): very different target counts.
SEQS = [(10, 3), (5, 1), (7, 5), (20, 2), (3, 1)]
ROWS = [[0, 1, 2], [3, 4]]  # two packs; row 0 has 2 pad tokens, row 1 has 1


class Float64Rope(torch.nn.Module):
    """Default RoPE with cos/sin in float64. HF computes them in float32, where vectorised and scalar
    cos differ by an ulp depending on a position's place in the tensor: ~1e-7 noise between the
    packed and unpacked runs that would hide the 1e-10 comparison. Same math, more digits."""

    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        self.inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)

    def forward(self, x, position_ids):
        emb = position_ids[..., None].double() * self.inv_freq
        emb = torch.cat([emb, emb], dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


@pytest.fixture(scope="module")
def model():
    from transformers import AutoModelForCausalLM

    from longctx.models.tiny import tiny_config

    torch.manual_seed(0)
    cfg = tiny_config("llama")
    m = AutoModelForCausalLM.from_config(cfg, dtype=torch.float64, attn_implementation="sdpa")
    m.model.rotary_emb = Float64Rope(cfg.head_dim, cfg.rope_parameters["rope_theta"])
    return m


def _sequences():
    g = torch.Generator().manual_seed(1)
    out = []
    for n, prompt in SEQS:
        ids = torch.randint(0, 258, (n,), generator=g)
        labels = ids.clone()
        labels[:prompt] = -100
        out.append((ids, labels))
    return out


def _pack_rows(seqs, weight_fn):
    rows = []
    for members in ROWS:
        seq_lens = [len(seqs[i][0]) for i in members]
        pad = PACK_LEN - sum(seq_lens)
        ids = np.concatenate([seqs[i][0].numpy() for i in members] + [np.full(pad, 257)])
        labels = np.concatenate([seqs[i][1].numpy() for i in members] + [np.full(pad, -100)])
        pos = np.concatenate([np.arange(n) for n in seq_lens] + [np.arange(pad)])
        rows.append({"input_ids": ids, "labels": labels, "position_ids": pos, "seq_lens": seq_lens,
                     "loss_weights": weight_fn(labels, seq_lens)})
    return rows


def _block_causal_mask(cu_seqlens, B, T, dtype):
    """Additive [B, 1, T, T] mask: causal inside each segment of cu_seqlens (flattened over the batch), -inf across."""
    allowed = torch.zeros(B * T, B * T, dtype=torch.bool)
    cu = cu_seqlens.tolist()
    for s, e in zip(cu[:-1], cu[1:]):
        allowed[s:e, s:e] = torch.tril(torch.ones(e - s, e - s, dtype=torch.bool))
    blocks = torch.stack([allowed[b * T:(b + 1) * T, b * T:(b + 1) * T] for b in range(B)])[:, None]
    return torch.zeros(B, 1, T, T, dtype=dtype).masked_fill(~blocks, torch.finfo(dtype).min)


def _packed_loss(model, batch, weights, n_div):
    B, T = batch["input_ids"].shape
    mask = _block_causal_mask(batch["cu_seqlens"], B, T, torch.float64)
    hidden = model.model(input_ids=batch["input_ids"], attention_mask=mask, position_ids=batch["position_ids"]).last_hidden_state
    targets, w = shift_targets(batch["labels"], weights, batch["position_ids"])
    return chunked_lm_loss(hidden, model.lm_head.weight, targets, w, chunk_size=7) / n_div


def _reference_loss(model, seqs):
    """Unpacked: each sequence alone, HF-style shifted mean CE, averaged over sequences."""
    losses = []
    for ids, labels in seqs:
        logits = model(input_ids=ids[None]).logits[0]
        losses.append(F.cross_entropy(logits[:-1], labels[1:], ignore_index=-100, reduction="mean"))
    return torch.stack(losses).mean()


def _loss_and_grads(model, loss_fn):
    model.zero_grad(set_to_none=True)
    loss = loss_fn()
    loss.backward()
    return loss.detach(), {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_weighted_packed_step_equals_unpacked_per_sequence_mean(model):
    """Loss and every parameter gradient agree to rel. error <= 1e-10 (weights computed in float64)."""
    seqs = _sequences()
    batch = collate_packs(_pack_rows(seqs, lambda lab, sl: pack_loss_weights(lab, sl, dtype=np.float64)))
    weights = torch.from_numpy(np.stack([pack_loss_weights(r, sl, np.float64) for r, sl in
                                         zip(batch["labels"].numpy(), batch["seq_lens"])]))
    M = batch["num_sequences"]
    assert M == len(SEQS)
    ref_loss, ref_grads = _loss_and_grads(model, lambda: _reference_loss(model, seqs))
    loss, grads = _loss_and_grads(model, lambda: _packed_loss(model, batch, weights, M))
    assert abs(loss.item() - ref_loss.item()) / abs(ref_loss.item()) <= 1e-10
    for name, g in ref_grads.items():
        assert _rel(grads[name], g) <= 1e-10, name


def test_float32_stored_weights_match_to_float32_rounding(model):
    """With the pack file's float32 weights the loss is within float32 rounding of 1/N_i (~1e-7)."""
    seqs = _sequences()
    batch = collate_packs(_pack_rows(seqs, pack_loss_weights))
    assert batch["loss_weights"].dtype == torch.float32
    ref_loss = _reference_loss(model, seqs).detach()
    loss = _packed_loss(model, batch, batch["loss_weights"].double(), batch["num_sequences"]).detach()
    assert abs(loss.item() - ref_loss.item()) / abs(ref_loss.item()) <= 2e-7


def test_unweighted_packed_loss_differs_from_per_sequence_mean(model):
    """Token-mean over packs (no weights) is biased towards sequences with many targets: not the oracle."""
    seqs = _sequences()
    batch = collate_packs(_pack_rows(seqs, lambda lab, sl: token_loss_weights(lab, np.float64)))
    n_targets = sum(int((lab[1:] != -100).sum()) for _, lab in seqs)
    ref_loss = _reference_loss(model, seqs).detach()
    token_mean = _packed_loss(model, batch, None, n_targets).detach()
    # Sanity: the unweighted packed loss is exactly the token mean of the unpacked sequences ...
    per_tok = torch.cat([F.cross_entropy(model(input_ids=i[None]).logits[0][:-1], l[1:], ignore_index=-100, reduction="none")[l[1:] != -100]
                         for i, l in seqs]).mean().detach()
    assert abs(token_mean.item() - per_tok.item()) / per_tok.item() <= 1e-10
    # ... and that differs from the per-sequence mean by far more than rounding.
    assert abs(token_mean.item() - ref_loss.item()) / ref_loss.item() > 1e-4
