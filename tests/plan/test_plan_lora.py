"""The planner's LoRA model: frozen base, float32 adapters r·(in + out) per targeted linear, LoRA+'s trained
copies of the embedding and the norms; and ``longctx plan``'s LoRA suggestion when full fine-tuning does not fit.

Oracle for the parameter counts: PEFT itself (``get_nb_trainable_parameters`` of the model the trainer's
``longctx.train.lora.wrap`` builds), on tiny models of several families; for the step FLOPs: torch's
``FlopCounterMode`` over a real forward and backward."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoModelForCausalLM

from longctx.cli.plan import main as plan_main
from longctx.core.errors import LongctxError
from longctx.models.registry import family_of
from longctx.models.tiny import tiny_config
from longctx.plan import plan_run, shape_from_config
from longctx.plan.options import run_from_train_config
from longctx.plan.search import lora_note, max_seq_len
from longctx.plan.shapes import PRESETS, RunShape, lora_adapter_params, lora_saved_params, trainable_params
from longctx.plan.throughput import sequence_flops
from longctx.train import lora
from longctx.train.config import PeftConfig, load_config

needs_peft = pytest.mark.skipif(importlib.util.find_spec("peft") is None, reason="peft (the lora extra) is not installed")


PHI3_CASES = [("phi3", False, targets, plus) for targets, plus in
              [([], False), ([], True), (["all-linear"], False), (["qkv_proj"], False)]]
"""Phi-3's fused projections: attention = qkv_proj + o_proj, all-linear adds gate_up_proj + down_proj."""


@needs_peft
@pytest.mark.parametrize("family, tied, targets, plus", [
    (family, tied, targets, plus)
    for family, tied in [("llama", True), ("llama", False), ("qwen2", False), ("qwen3", True)]
    for targets, plus in [([], False), ([], True), (["all-linear"], False), (["all-linear"], True),
                          (["q_proj", "v_proj"], False)]] + PHI3_CASES)
def test_lora_parameter_counts_equal_peft_s_own(family, tied, targets, plus):
    config = tiny_config(family, tie_word_embeddings=tied)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    p = PeftConfig(method="lora", r=4, target_modules=list(targets), train_embeddings_norms=plus)
    peft_model, _ = lora.wrap(model, p, family_of(config, family))
    trainable, total = peft_model.get_nb_trainable_parameters()
    shape = shape_from_config(config)
    run = RunShape(seq_len=64, lora_rank=4, lora_targets=",".join(targets) or "attention", lora_embeddings_norms=plus)
    assert trainable_params(shape, run) == trainable
    # every parameter the GPU holds: the frozen base, the adapters and LoRA+'s copies beside the originals
    assert shape.num_params + lora_adapter_params(shape, run) + lora_saved_params(shape, run) == total


def test_lora_freezes_the_base_so_states_shrink_and_lora_plus_adds_the_embedding():
    shape = PRESETS["llama-3-8b"]
    full = RunShape(seq_len=8192, master_weights="params", foreach_optimizer=False)
    lora, plus = full.replace(lora_rank=16), full.replace(lora_rank=16, lora_embeddings_norms=True)
    terms = {name: {t.name: t.bytes for t in plan_run(shape, r).breakdown} for name, r in
             (("full", full), ("lora", lora), ("plus", plus))}
    adapters = 32 * 16 * (4096 + 4096 + 2 * (4096 + 1024) + 4096 + 4096)  # L·r·Σ(in + out), q/k/v/o
    assert lora_adapter_params(shape, lora) == adapters
    assert terms["lora"]["grads"] == 4 * adapters and terms["lora"]["optimizer states"] == 8 * adapters
    assert terms["lora"]["params"] == 4 * shape.num_params + 4 * adapters  # frozen float32 base (dtype auto)
    saved = shape.embedding_params + shape.norm_params
    assert terms["plus"]["grads"] == 4 * (adapters + saved)
    assert terms["plus"]["params"] == 4 * (shape.num_params + saved) + 4 * adapters
    assert terms["full"]["grads"] == 4 * shape.num_params
    # LoRA's own activations: a·r per target per token, in the recomputed layer
    assert terms["lora"]["layer activations"] - terms["full"]["layer activations"] == 8192 * 2 * 16 * 4


def test_a_bad_lora_target_or_plus_without_lora_is_one_line():
    with pytest.raises(LongctxError, match="--lora-targets"):
        RunShape(seq_len=64, lora_rank=4, lora_targets="lm_head")
    with pytest.raises(LongctxError, match="--lora-train-embeddings-norms"):
        RunShape(seq_len=64, lora_embeddings_norms=True)
    with pytest.raises(LongctxError, match="--lora-rank: must be at least 1"):
        plan_main(["--model", "llama-3-8b", "--seq-len", "1024", "--lora-rank", "0", "--peft", "lora"])
    with pytest.raises(LongctxError, match="need --peft lora"):
        plan_main(["--model", "llama-3-8b", "--seq-len", "1024", "--lora-rank", "8"])


def test_plan_suggests_lora_when_full_fine_tuning_does_not_fit(capsys):
    """Llama-3-8B on one 80 GiB GPU: full fine-tuning (16 B per parameter) fits no length; the note gives
    the longest LoRA and LoRA+ sequences, and they are what max_seq_len finds for those runs."""
    shape = PRESETS["llama-3-8b"]
    run = RunShape(seq_len=32768, checkpoint_offload=True, tiled_mlp=0, loss_chunk=64, master_weights="params",
                   foreach_optimizer=False, attn_kernel="sdpa")
    assert not plan_run(shape, run).fits and max_seq_len(shape, run) == 0
    lora, plus = max_seq_len(shape, run.replace(lora_rank=16)), max_seq_len(shape, run.replace(lora_rank=16, lora_embeddings_norms=True))
    assert lora > plus > 32768
    note = lora_note(shape, run)
    assert f"longest seq_len {lora} with LoRA, {plus} with LoRA+" in note
    assert lora_note(shape, run.replace(lora_rank=16)) is None  # already LoRA
    assert lora_note(shape, run.replace(seq_len=1024, lora_rank=16)) is None
    code = plan_main(["--model", "llama-3-8b", "--seq-len", "32768", "--checkpoint-offload", "--tiled-mlp"])
    assert code == 1 and "note: full fine-tuning does not fit" in capsys.readouterr().out
    code = plan_main(["--model", "llama-3-8b", "--seq-len", "32768", "--checkpoint-offload", "--tiled-mlp",
                      "--peft", "lora", "--lora-rank", "16"])
    out = capsys.readouterr().out
    assert code == 0 and "frozen base" in out and "note: full fine-tuning" not in out


def test_the_trainer_plans_a_lora_run_as_lora_with_auto_resolved_by_the_rope():
    """``check_plan`` passes ``embeddings_norms`` as ``longctx.train.lora.embeddings_norms_on`` resolved ``auto``."""
    shape = shape_from_config(tiny_config("llama"))
    lora_cfg = load_config(None, ["peft.method=lora", "peft.r=4"], validate_now=False)
    run = run_from_train_config(lora_cfg, shape, 1024, 1, "cuda", 80.0)
    assert (run.lora_rank, run.lora_targets, run.lora_embeddings_norms) == (4, "attention", False)  # auto: off
    assert run_from_train_config(lora_cfg, shape, 1024, 1, "cuda", 80.0, embeddings_norms=True).lora_embeddings_norms
    full = load_config(None, [], validate_now=False)
    assert not run_from_train_config(full, shape, 1024, 1, "cuda", 80.0, embeddings_norms=True).lora


@needs_peft
@pytest.mark.parametrize("family, tied", [("llama", False), ("llama", True), ("phi3", False)])
@pytest.mark.parametrize("targets, plus", [(None, False), ([], False), ([], True), (["all-linear"], False)])
def test_step_flops_count_no_weight_gradient_for_frozen_weights(family, tied, targets, plus):
    """(4·(N + A) + 2·W)·T for LoRA, 6·N·T for full fine-tuning, against torch's FLOP counter on a real step
    (eager attention: the planner's non-causal T² term). Within 2 %: with the embedding frozen, autograd also
    skips the first layer's input gradients (measured 1.5 % of a 4-layer model's step, 0.2 % at 32 layers),
    which the planner does not model."""
    config = tiny_config(family, hidden_size=128, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=384,
                         vocab_size=512, tie_word_embeddings=tied)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    if targets is not None:
        lora.wrap(model, PeftConfig(method="lora", r=8, target_modules=targets, train_embeddings_norms=plus),
                  family_of(config, family))
    ids = torch.randint(0, 512, (1, 256))
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids, labels=ids).loss.backward()
    run = RunShape(seq_len=256, lora_rank=0 if targets is None else 8,
                   lora_targets=targets[0] if targets else "attention", lora_embeddings_norms=plus)
    predicted = sum(sequence_flops(shape_from_config(config), 256, causal=False, run=run))
    assert 1.0 <= predicted / counter.get_total_flops() <= 1.02
