"""longctx.core.loss: next-token shift within sequences, and the chunked weighted LM loss."""

import pytest
import torch
import torch.nn.functional as F

from longctx.core.loss import chunked_lm_loss, shift_targets


def _problem(seed=0, dtype=torch.float64, B=2, T=9, H=6, V=13):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, T, H, generator=g, dtype=dtype, requires_grad=True)
    weight = torch.randn(V, H, generator=g, dtype=dtype, requires_grad=True)
    bias = torch.randn(V, generator=g, dtype=dtype, requires_grad=True)
    targets = torch.randint(0, V, (B, T), generator=g)
    targets[0, 1] = targets[1, 4] = targets[1, 8] = -100
    weights = torch.rand(B, T, generator=g, dtype=torch.float64)
    return hidden, weight, bias, targets, weights


def _reference(hidden, weight, bias, targets, weights):
    """Full logits, torch's own cross_entropy: an independent formula."""
    logits = hidden @ weight.T + bias
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="none")
    return (ce * weights.reshape(-1)).sum()


@pytest.mark.parametrize("chunk_size", [1, 4, 1000])
def test_chunked_loss_equals_full_logits_loss_and_grads(chunk_size):
    """Value and gradients (hidden, head weight, head bias) equal the full-logits loss in float64."""
    h, w, b, y, wt = _problem()
    ours = chunked_lm_loss(h, w, y, wt, head_bias=b, chunk_size=chunk_size)
    ref = _reference(h, w, b, y, wt)
    g_ours = torch.autograd.grad(ours, [h, w, b])
    g_ref = torch.autograd.grad(ref, [h, w, b])
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=0)
    for a, r in zip(g_ours, g_ref):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-13)


def test_token_mode_is_plain_sum_of_cross_entropy():
    """weights=None sums the cross entropy of every non-ignored target (the trainer divides by their count)."""
    h, w, b, y, _ = _problem(seed=1)
    ours = chunked_lm_loss(h, w, y, None, head_bias=b, chunk_size=5)
    ref = F.cross_entropy((h @ w.T + b).reshape(-1, w.shape[0]), y.reshape(-1), ignore_index=-100, reduction="sum")
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=0)


def test_chunked_loss_never_saves_full_logits_for_backward():
    """No tensor saved for backward has tokens x vocab elements: logits are recomputed per chunk."""
    h, w, _, y, wt = _problem(T=64, H=4, V=50)
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = chunked_lm_loss(h, w, y, wt, chunk_size=8)
    loss.backward()
    n_tokens = y.numel()
    assert sizes, "the loss saved nothing for backward?"
    assert max(sizes) < n_tokens * w.shape[0] / 4, f"something the size of the logits was saved: {max(sizes)}"
    # The plain full-logits reference does save them: the check above can fail.
    sizes.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _reference(h, w, torch.zeros(w.shape[0], dtype=w.dtype), y, wt)
    assert max(sizes) >= n_tokens * w.shape[0]


def test_bf16_inputs_give_float32_loss_close_to_float64():
    """bf16 hidden/head: the log-softmax runs in float32; the result is close to the float64 loss."""
    h, w, _, y, wt = _problem(seed=2, T=32, V=40)
    ours = chunked_lm_loss(h.detach().bfloat16(), w.detach().bfloat16(), y, wt.float(), chunk_size=7)
    assert ours.dtype == torch.float32
    ref = _reference(h.detach().bfloat16().double(), w.detach().bfloat16().double(), torch.zeros(40, dtype=torch.float64), y, wt)
    assert abs(ours.item() - ref.item()) / ref.item() < 2e-2


def test_shift_targets_never_crosses_a_sequence_boundary():
    """targets[t] = labels[t+1] inside a sequence; -100 (weight 0) at each sequence's last token."""
    labels = torch.tensor([-100, 11, 12, -100, 21, -100, 31, 32])
    weights = torch.tensor([0, 0.5, 0.5, 0, 1.0, 0, 0.5, 0.5])
    pos = torch.tensor([0, 1, 2, 0, 1, 0, 1, 2])  # sequences [0:3], [3:5], [5:8] (last one may be padding)
    t, w = shift_targets(labels, weights, pos)
    assert t.tolist() == [11, 12, -100, 21, -100, 31, 32, -100]
    assert w.tolist() == [0.5, 0.5, 0, 1.0, 0, 0.5, 0.5, 0]


def test_shift_targets_batched_equals_row_by_row():
    """[B, T] input gives the same result as shifting each row on its own."""
    g = torch.Generator().manual_seed(3)
    labels = torch.randint(-1, 5, (3, 12), generator=g).masked_fill_(torch.rand(3, 12, generator=g) < 0.3, -100)
    weights = torch.rand(3, 12, generator=g)
    pos = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 0, 1, 2, 3, 4]] * 3)
    t, w = shift_targets(labels, weights, pos)
    for r in range(3):
        tr, wr = shift_targets(labels[r], weights[r], pos[r])
        assert torch.equal(t[r], tr) and torch.equal(w[r], wr)
