"""The CUDA path, run without a GPU: our trainer's step on fake ``cuda`` tensors (``tests/sim``).

Each test runs one case of :mod:`sim.cases` in a child process with the simulator's shim
preloaded (~5-10 s each, mostly imports), and asserts on what the simulator's counters saw. What the
simulator cannot know (kernel numerics, real timings, allocator behaviour) is tested by
``tests/gpu`` and ``longctx doctor`` on a real GPU. Skipped where no C++ compiler can build the shim.
"""

from __future__ import annotations

import pytest

from sim.harness import run_case

LAYOUTS = [("varlen", 2), ("ulysses", 2), ("zigzag", 2), ("usp", 4)]


@pytest.mark.parametrize("layout,sp", LAYOUTS, ids=[name for name, _ in LAYOUTS])
def test_checkpoint_recompute_runs_the_layouts_attention_on_the_backward_thread(layout, sp):
    """With gradient checkpointing, every forward AND every recompute of every layer runs the layout's
    sequence-parallel attention — including the recomputes CUDA runs on autograd's worker thread, where
    a contextvar set by the step is invisible (the bug: they fell back to single-process attention)."""
    layers = 2
    r = run_case("sim.cases:sp_step", layout=layout, sp=sp, layers=layers)
    kernels = [label for label, _, _ in r["calls"]]
    threads = {thread for _, thread, _ in r["calls"]}
    assert "single-process varlen" not in kernels
    assert len(kernels) == 2 * layers  # forward + recompute, per layer
    assert len(set(kernels)) == 1
    assert threads - {r["main_thread"]}, "the simulator must run backward on a worker thread, as CUDA does"


def test_a_step_under_bf16_autocast_runs_every_matmul_in_bf16():
    """Attention, MLP (tiled, recomputed in backward), and the output head (forward and backward) all
    run their matmuls in bf16 under autocast with float32 weights: none falls back to float32."""
    r = run_case("sim.cases:sp_step", layout="varlen", sp=2, layers=2, tiled_mlp=True)
    dtypes = r["counters"]["matmul_dtypes"]
    assert dtypes.get("float32", 0) == 0, dtypes
    assert dtypes["bfloat16"] > 0


def test_the_chunked_loss_head_follows_autocast_in_forward_and_backward():
    """The head matmuls of the chunked loss (a custom autograd function) run in bf16 under autocast; the
    log-softmax and the head gradient stay float32."""
    r = run_case("sim.cases:loss_head_dtypes")
    assert set(r["counters"]["matmul_dtypes"]) == {"bfloat16"}, r["counters"]
    assert r["loss_dtype"] == "torch.float32"
    assert r["grad_w_dtype"] == "torch.float32"


def test_device_to_host_syncs_per_step_do_not_grow_with_depth():
    """Boundaries stay on the host: a step reads the device a fixed number of times (the step's own
    statistics), never once per attention layer."""
    shallow = run_case("sim.cases:sp_step", layout="varlen", sp=2, layers=1)["counters"]
    deep = run_case("sim.cases:sp_step", layout="varlen", sp=2, layers=4)["counters"]
    assert deep["syncs"] == shallow["syncs"], (shallow, deep)
    assert deep["h2d"] == shallow["h2d"], (shallow, deep)
    assert deep["syncs"] <= 4, deep  # normaliser, loss, grad norm, token count


SMALL = {"hidden_size": 1024, "num_layers": 4, "num_heads": 8, "num_kv_heads": 8, "head_dim": 128,
         "intermediate_size": 4096, "vocab_size": 8192}


def test_the_planner_predicts_the_traced_peak_of_a_one_gpu_step_within_10_percent():
    """``longctx plan`` models the run the trainer makes: float32 weights, bf16 autocast (float32 residual
    stream, so float32 checkpoints), checkpointing + tiled MLP; activation-heavy (4 layers, 32K tokens)
    so that a wrong activation dtype shows. The traced peak is MemTracker's over a real trainer step."""
    r = run_case("sim.cases:traced_peak", shape=SMALL, layers=4, seq_len=32768)
    assert abs(r["planned_gib"] - r["traced_gib"]) <= 0.10 * r["traced_gib"], r


def test_fsdp2_with_sequence_parallelism_computes_in_bf16_through_its_mixed_precision_policy():
    """FSDP2 x SP (8 fake ranks, zigzag): all-gathers cast the float32 weights to bf16, so every matmul
    runs in bf16 without autocast; the planner's peak for that rank is within 10 % of the traced one."""
    r = run_case("sim.cases:traced_peak", shape=SMALL, layers=2, seq_len=8192, sp=8, layout="zigzag", fsdp=True)
    dtypes = r["counters"]["matmul_dtypes"]
    assert dtypes.get("float32", 0) == 0 and dtypes["bfloat16"] > 0, dtypes
    assert abs(r["planned_gib"] - r["traced_gib"]) <= 0.10 * r["traced_gib"], r


def test_checkpoint_offload_copies_on_a_side_stream_without_host_syncs():
    """ALST checkpoint offload on CUDA: each checkpointed layer input goes to pinned host memory by an
    asynchronous copy on the offload stream (which first waits for compute), its device memory is kept
    until the copy ends (record_stream), and the copy back waits on an event — no device->host sync added."""
    plain = run_case("sim.cases:sp_step", layout="varlen", sp=2, layers=2)["counters"]
    r = run_case("sim.cases:sp_step", layout="varlen", sp=2, layers=2, offload=True)
    c, calls = r["counters"], r["counters"]["stream_calls"]
    assert r["offloaded"]["tensors"] >= 2  # one checkpointed input per layer at least
    assert c["d2h_async"] == r["offloaded"]["tensors"]
    assert calls["wait_stream"] >= 2 and calls["stream_switch"] >= 2 and calls["record_stream"] >= 2
    assert calls["wait_event"] >= 2  # in backward, on the GPU
    assert c["syncs"] == plain["syncs"], (plain, c)
    assert calls.get("stream_synchronize", 0) == 0


def test_a_trainer_step_on_the_simulated_gpu_follows_the_dtype_policy_and_keeps_sp_in_recomputes():
    """The real ``Trainer`` (its setup, plan check, model build, optimizer, one step) on CUDA with SP 2,
    checkpointing and tiled MLP: float32 weights, bf16 autocast, every matmul bf16, the layout's attention
    in forward and recompute. (It also caught transformers >= 5.2x fetching Hub kernels on ``.train()``.)"""
    r = run_case("sim.cases:trainer_step", sp=2)
    assert r["device"] == "cuda:0" and r["step"] == 1
    assert r["autocast"] == "torch.bfloat16" and r["param_dtypes"] == ["torch.float32"]
    assert set(r["counters"]["matmul_dtypes"]) == {"bfloat16"}
    assert {label for label, _, _ in r["calls"]} == {"varlen ring"} and len(r["calls"]) == 4


def test_a_trainer_step_with_fsdp2_computes_in_bf16_without_autocast():
    """With ``parallel.fsdp`` the trainer's CUDA policy is FSDP2's MixedPrecisionPolicy (bf16 all-gathers of
    float32 weights), not autocast: no autocast, every matmul still bf16."""
    r = run_case("sim.cases:trainer_step", sp=2, fsdp=True, offload=True)
    assert r["autocast"] == "None" and r["param_dtypes"] == ["torch.float32"]
    assert set(r["counters"]["matmul_dtypes"]) == {"bfloat16"}


LORA_PLUS = {"peft.method": "lora", "peft.r": 4, "peft.target_modules": "all-linear", "peft.train_embeddings_norms": "true"}


@pytest.mark.parametrize("fsdp", [False, True], ids=["autocast", "fsdp2"])
def test_a_lora_trainer_step_on_the_simulated_gpu_trains_only_the_adapters_in_bf16(fsdp):
    """The trainer's LoRA+ step (PEFT injects adapters on every linear layer of the model already on the GPU)
    with SP 2, checkpointing and the tiled MLP (FSDP2 instead of the tiled MLP): every parameter and gradient on
    the device in float32, every matmul (the adapters' too) in bf16, the layout's attention in forward and
    recompute; gradients for exactly the adapters and LoRA+'s copies, which the step writes, and no in-place
    write to any frozen base weight (its version counter stays). Numerics: tests/train/test_lora.py on CPU."""
    r = run_case("sim.cases:trainer_step", sp=2, fsdp=fsdp, peft=LORA_PLUS)
    assert r["device"] == "cuda:0" and r["step"] == 1
    assert r["autocast"] == ("None" if fsdp else "torch.bfloat16")
    assert r["param_devices"] == ["cuda:0"] and r["param_dtypes"] == ["torch.float32"]
    assert set(r["counters"]["matmul_dtypes"]) == {"bfloat16"}
    assert {label for label, _, _ in r["calls"]} == {"varlen ring"} and len(r["calls"]) == 4
    trainable = r["trainable"]
    assert all("lora_" in n or "modules_to_save" in n for n in trainable)
    assert any(".mlp." in n and "lora_B" in n for n in trainable) and any("embed_tokens.modules_to_save" in n
                                                                          for n in trainable)
    assert sorted(r["grads"]) == trainable and set(r["grads"].values()) == {"cuda:0 torch.float32"}
    assert r["written"] == trainable and r["optimized"] == len(trainable)
