"""The ALST memory set in the trainer (tiled MLP, checkpoint offload, the automatic loss chunk).

Oracle: the unpatched model's own step (same weights, same batch) for the gradients. That `longctx plan`'s
options are `longctx train`'s config keys is tests/plan/test_plan_matches_trainer.py.
"""

from __future__ import annotations

import copy

import pytest
import torch

from longctx.core.errors import LongctxError
from longctx.core.loss import chunked_lm_loss
from longctx.plan import plan_run, shape_from_config
from longctx.core.sizing import LOGITS_BLOCK_ELEMENTS, MATMUL_MIN_TOKENS, auto_loss_chunk, auto_mlp_tiles
from longctx.plan.shapes import RunShape
from longctx.models.tiny import tiny_config
from longctx.train.config import load_config
from longctx.train.parallelize import apply_checkpoint_offload, apply_tiled_mlp, enable_checkpointing

from support import train_ranks as tr

T = 96  # tokens of the test batch


def _model(family: str, checkpointing: bool = False):
    cfg = tiny_config(family, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=80,
                      vocab_size=300)
    cfg._attn_implementation = "sdpa"
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg).float().train()
    if checkpointing:
        enable_checkpointing(model, {"use_reentrant": False})
    return model


def _step(model, ids) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss and every parameter gradient of one forward/backward of the model's own loss."""
    model.zero_grad(set_to_none=True)
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    return out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def _ids(seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 300, (1, T), generator=torch.Generator().manual_seed(seed))


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


# ---------------------------------------------------------------- tiled MLP


@pytest.mark.parametrize("family", ["llama", "qwen2"])
@pytest.mark.parametrize("tiles", [0, 5, T])
def test_tiled_mlp_gives_the_gradients_of_the_plain_step(family, tiles):
    """Loss and all parameter gradients within 1e-6 (float32) of the untiled model; tiles=0 is ALST's ceil(T/H)."""
    plain = _model(family)
    tiled = copy.deepcopy(plain)
    assert apply_tiled_mlp(tiled, tiles) == 2
    ids = _ids()
    l0, g0 = _step(plain, ids)
    l1, g1 = _step(tiled, ids)
    assert (l1 - l0).abs().item() <= 1e-6
    assert _max_diff(g0, g1) <= 1e-6


def test_tiled_mlp_keeps_only_its_input_for_backward():
    """No tensor with the MLP's intermediate width is saved for backward: each tile is recomputed."""
    model = _model("llama")
    apply_tiled_mlp(model, 4)
    sizes = []

    def pack(t):
        sizes.append(t.shape[-1] if t.dim() else 0)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        mlp = model.model.layers[0].mlp
        out = mlp(torch.randn(1, T, 32, requires_grad=True))
    assert sizes == [32], sizes  # the input x only, never a T x I tensor
    out.sum().backward()
    plain_sizes = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: plain_sizes.append(t.shape[-1]) or t, lambda t: t):
        type(mlp).forward(mlp, torch.randn(1, T, 32, requires_grad=True))
    assert 80 in plain_sizes  # the untiled MLP does save intermediate activations: the check above can fail


def test_tiled_mlp_is_the_plain_forward_without_grad():
    """Evaluation (no grad) runs the module's own forward: bitwise the same output."""
    model = _model("llama")
    mlp = model.model.layers[0].mlp
    x = torch.randn(1, T, 32)
    with torch.no_grad():
        ref = mlp(x)
        apply_tiled_mlp(model, 4)
        assert torch.equal(mlp(x), ref)


def test_auto_mlp_tiles_is_ceil_tokens_over_hidden():
    assert [auto_mlp_tiles(t, 4096) for t in (1, 4096, 4097, 500_000)] == [1, 1, 2, 123]


# ---------------------------------------------------------------- checkpoint offload


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_checkpoint_offload_gives_the_gradients_of_checkpointing_bitwise(family):
    """Offloading the checkpointed layer inputs copies them and back: the same arithmetic, bitwise equal
    gradients; and within 1e-6 of the plain (uncheckpointed) step."""
    plain = _model(family)
    ckpt = copy.deepcopy(plain)
    enable_checkpointing(ckpt, {"use_reentrant": False})
    off = copy.deepcopy(ckpt)
    stats: dict = {}
    assert apply_checkpoint_offload(off, pin_memory=False, min_bytes=0, stats=stats) == 2
    ids = _ids()
    _, g0 = _step(plain, ids)
    l1, g1 = _step(ckpt, ids)
    l2, g2 = _step(off, ids)
    assert torch.equal(l1, l2) and all(torch.equal(g1[k], g2[k]) for k in g1)
    assert _max_diff(g0, g2) <= 1e-6
    # What was offloaded is exactly each layer's input hidden state (L x T x H float32), nothing else.
    assert stats == {"tensors": 2, "bytes": 2 * T * 32 * 4}


def test_checkpoint_offload_and_tiled_mlp_together_give_the_plain_gradients():
    plain = _model("llama")
    both = copy.deepcopy(plain)
    enable_checkpointing(both, {"use_reentrant": False})
    apply_checkpoint_offload(both, pin_memory=False, min_bytes=0)
    apply_tiled_mlp(both, 3)
    ids = _ids()
    assert _max_diff(_step(plain, ids)[1], _step(both, ids)[1]) <= 1e-6


def test_trainer_with_the_memory_set_takes_the_plain_trainers_step(tiny_llama, packs, tmp_path):
    """One optimizer step with tiled MLP + checkpointing + offload + the auto loss chunk: the loss and the
    reduced gradients the optimizer sees equal the plain trainer's (1e-6, float32). (Weights after AdamW
    are not compared: Adam divides by sqrt(v), so a 1e-10 change in a near-zero gradient moves a weight by lr.)"""
    sets = {"checkpoint.export": False}
    _, plain = tr.run_capturing(tr.base_config(tiny_llama, packs, tmp_path / "a", **sets))
    t, alst = tr.run_capturing(tr.base_config(tiny_llama, packs, tmp_path / "b", **sets, **{
        "model.gradient_checkpointing": True, "model.checkpoint_offload": True, "train.tiled_mlp": True,
        "train.mlp_tiles": 3}))
    layer = t.model.model.layers[0]  # patched: the MLP's forward, the checkpoint function (offload around it)
    assert "forward" in vars(layer.mlp) and layer._gradient_checkpointing_func.__name__ == "offloaded"
    assert alst["losses"] == pytest.approx(plain["losses"], rel=1e-6)
    assert plain["grads"].keys() == alst["grads"].keys()
    for k, v in plain["grads"].items():
        assert abs(alst["grads"][k] - v).max() <= 1e-6, k


# ---------------------------------------------------------------- loss chunk rule


def test_auto_loss_chunk_keeps_a_chunk_of_logits_below_the_head_and_32_mib():
    for vocab, hidden in [(32768, 256), (32000, 4096), (128256, 4096), (152064, 3584), (512, 64), (300, 32)]:
        c = auto_loss_chunk(vocab, hidden)
        assert c % 64 == 0 and c >= 64
        assert c * vocab <= max(LOGITS_BLOCK_ELEMENTS, MATMUL_MIN_TOKENS * vocab) and c <= max(hidden, 64)
    assert auto_loss_chunk(32768, 4096) == 256  # the 8K x 32K case: 32 MiB blocks, not 512 MiB


def test_auto_loss_chunk_reads_the_head_for_at_least_256_tokens_at_large_vocabularies():
    """Each chunk re-reads the whole head: at 128K vocabulary the 32 MiB cap alone gave 64 tokens per read
    (a memory-bound matmul on a GPU); the floor keeps 256 where the hidden size allows."""
    assert auto_loss_chunk(128256, 4096) == 256
    assert auto_loss_chunk(152064, 3584) == 256
    assert auto_loss_chunk(128256, 128) == 128  # never more tokens than the hidden size


def test_chunk_size_zero_is_the_automatic_chunk():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(300, 64, generator=g, dtype=torch.float64)
    w = torch.randn(512, 64, generator=g, dtype=torch.float64)
    y = torch.randint(0, 512, (300,), generator=g)
    auto = chunked_lm_loss(h, w, y, chunk_size=0)
    assert torch.equal(auto, chunked_lm_loss(h, w, y, chunk_size=auto_loss_chunk(512, 64)))
    ref = torch.nn.functional.cross_entropy(h @ w.T, y, reduction="sum")
    torch.testing.assert_close(auto, ref, rtol=1e-12, atol=0)


# ---------------------------------------------------------------- config validation


def test_loss_chunk_auto_is_read_as_zero_and_an_explicit_chunk_is_kept():
    assert load_config(None, ["train.loss_chunk=auto"]).train.loss_chunk == 0
    assert load_config(None, []).train.loss_chunk == 0
    assert load_config(None, ["train.loss_chunk=1024"]).train.loss_chunk == 1024


@pytest.mark.parametrize("sets, key", [
    (["model.checkpoint_offload=true"], "model.checkpoint_offload"),
    (["train.mlp_tiles=4"], "train.mlp_tiles"),
    (["train.tiled_mlp=true", "train.mlp_tiles=-1"], "train.mlp_tiles"),
    (["train.tiled_mlp=true", "parallel.fsdp=true"], "train.tiled_mlp"),
    (["train.loss_chunk=-1"], "train.loss_chunk"),
])
def test_invalid_memory_set_configs_are_refused_naming_the_key(sets, key):
    with pytest.raises(LongctxError, match=f"config: {key}: "):
        load_config(None, sets)


# ---------------------------------------------------------------- the memory set in the plan


def test_checkpoint_offload_saves_memory_on_a_gpu_and_nothing_on_cpu():
    shape = shape_from_config(tiny_config("llama", num_layers=8))
    for device, saves in (("cuda", True), ("cpu", False)):
        run = RunShape(seq_len=8192, checkpointing="full", device=device, loss_chunk=256)
        on, off = plan_run(shape, run.replace(checkpoint_offload=True)), plan_run(shape, run)
        assert (on.total_bytes < off.total_bytes) is saves, device
        if not saves:
            assert on.total_bytes == off.total_bytes


def test_tiled_mlp_backward_recomputes_in_the_autocast_dtype():
    """Autocast reaches a custom autograd function's forward, not its backward: the tiled MLP's recompute
    must re-enter it, or its backward matmuls run in float32 (2-3x slower on a GPU). Plain CPU bf16 autocast."""
    from longctx.train.parallelize import tiled_mlp_forward
    from sim.runtime import CountingMode, Counters

    torch.manual_seed(0)

    class MLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.up, self.down = torch.nn.Linear(16, 32, bias=False), torch.nn.Linear(32, 16, bias=False)

        def forward(self, x):
            return self.down(torch.nn.functional.silu(self.up(x)))

    mlp = MLP()
    mlp.forward = tiled_mlp_forward(mlp, 4)
    x = torch.randn(1, 64, 16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = mlp(x)
    counters = Counters()
    with CountingMode(counters):
        y.float().sum().backward()
    assert counters.matmul_dtypes.get(torch.float32, 0) == 0, counters.matmul_dtypes
    assert counters.matmul_dtypes[torch.bfloat16] > 0
