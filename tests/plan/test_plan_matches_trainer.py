"""The planner models exactly the run the trainer makes: every `longctx plan` option is a `longctx train`
config key (or says what sets it), every choice it offers the trainer can run, every memory-relevant
trainer key changes the plan the trainer checks, and the same choices give the same RunShape either way.

Oracles: the trainer's config dataclasses and the planner's argparse parser themselves.
"""

from __future__ import annotations

import dataclasses

import pytest

from longctx.cli.plan import build_parser, run_from_args
from longctx.distributed.layouts import LAYOUTS
from longctx.models.tiny import tiny_config
from longctx.plan import shape_from_config
from longctx.plan.options import MEMORY_KEYS, NOT_TRAIN_KEYS, TRAIN_KEYS, run_from_train_config
from longctx.plan.shapes import RunShape
from longctx.train.config import RunConfig, load_config


def _config_keys() -> set[str]:
    out = {f.name for f in dataclasses.fields(RunConfig) if not dataclasses.is_dataclass(f.default_factory)}
    for f in dataclasses.fields(RunConfig):
        if dataclasses.is_dataclass(f.default_factory):
            out |= {f"{f.name}.{g.name}" for g in dataclasses.fields(f.default_factory)}
    return out


def test_every_planner_option_is_a_trainer_config_key_or_says_what_sets_it():
    dests = {a.dest for a in build_parser()._actions}
    assert dests == set(TRAIN_KEYS) | set(NOT_TRAIN_KEYS)
    assert not set(TRAIN_KEYS) & set(NOT_TRAIN_KEYS)
    missing = set(TRAIN_KEYS.values()) - _config_keys()
    assert not missing, f"planner options with no trainer key: {missing}"


def test_the_planner_offers_no_choice_the_trainer_cannot_run():
    choices = {a.dest: a.choices for a in build_parser()._actions if a.choices}
    assert set(choices["sharding"]) == {"none", "fsdp"}  # parallel.fsdp: false / true
    assert set(choices["dtype"]) == {"bf16", "fp32"}  # model.dtype
    assert set(choices["checkpointing"]) == {"full", "none"}  # model.gradient_checkpointing
    assert set(choices["layout"]) == set(LAYOUTS)  # parallel.layout


BASE = ["model.gradient_checkpointing=true", "train.tiled_mlp=true"]
PERTURB = {  # memory-relevant trainer key -> a changed value
    "plan_gpu_mem_gib": 40.0, "parallel.sp_degree": 2, "parallel.layout": "varlen", "train.micro_batch": 2,
    "parallel.fsdp": False, "model.gradient_checkpointing": False, "model.checkpoint_offload": True,
    "train.loss_chunk": 512, "train.tiled_mlp": False, "train.mlp_tiles": 3,
    "model.attn_implementation": "flash_attention_2", "model.dtype": "float32",
    "peft.method": "lora", "peft.r": 64, "peft.target_modules": "[all-linear]", "peft.train_embeddings_norms": True,
    "peft.dropout": 0.1,
}
LORA_KEYS = {"peft.r", "peft.target_modules", "peft.train_embeddings_norms", "peft.dropout"}
"""Keys read only under peft.method: lora (perturbed against a LoRA base)."""


def _train_run(sets: list[str]) -> RunShape:
    cfg = load_config(None, sets, validate_now=False)
    shape = shape_from_config(tiny_config("llama"))
    return run_from_train_config(cfg, shape, 1024, 4, "cuda", cfg.plan_gpu_mem_gib or 80.0)


def test_every_memory_relevant_trainer_key_changes_the_plan_the_trainer_checks():
    assert set(PERTURB) == MEMORY_KEYS
    for key, value in PERTURB.items():
        start = BASE + ["parallel.fsdp=true"] + (["peft.method=lora"] if key in LORA_KEYS else [])
        base = _train_run(start)
        sets = start + [f"{key}={value}"]
        if key == "train.tiled_mlp":
            sets = [s for s in sets if not s.startswith("train.tiled_mlp")] + [f"{key}={value}"]
        assert _train_run(sets) != base, key


@pytest.mark.parametrize("flags, sets", [
    ([], []),
    (["--checkpoint-offload", "--tiled-mlp", "--mlp-tiles", "4", "--sharding", "fsdp"],
     ["model.gradient_checkpointing=true", "model.checkpoint_offload=true", "train.tiled_mlp=true",
      "train.mlp_tiles=4", "parallel.fsdp=true"]),
    (["--checkpointing", "none", "--loss-chunk", "1024", "--sp", "2", "--layout", "varlen", "--dtype", "fp32"],
     ["train.loss_chunk=1024", "parallel.sp_degree=2", "parallel.layout=varlen", "model.dtype=float32"]),
    (["--attn-kernel", "flash", "--micro-batch", "2"], ["model.gradient_checkpointing=true",
                                                        "model.attn_implementation=flash_attention_2",
                                                        "train.micro_batch=2"]),
    (["--peft", "lora"], ["peft.method=lora"]),
    (["--peft", "lora", "--lora-rank", "16", "--lora-targets", "all-linear", "--lora-train-embeddings-norms",
      "--sharding", "fsdp"],
     ["peft.method=lora", "peft.r=16", "peft.target_modules=[all-linear]", "peft.train_embeddings_norms=true",
      "parallel.fsdp=true"]),
    (["--peft", "lora", "--lora-targets", "q_proj,v_proj"], ["peft.method=lora", "peft.target_modules=[q_proj,v_proj]"]),
    (["--peft", "lora", "--lora-dropout", "0.05"], ["peft.method=lora", "peft.dropout=0.05"]),
])
def test_plan_flags_and_the_equivalent_train_config_give_the_same_run(flags, sets):
    """`longctx plan` and `longctx train`'s own check build the identical RunShape for the same choices
    (the planner defaults to checkpointing, the trainer's key to false: spelled out here)."""
    a = build_parser().parse_args(["--model", "llama-3-8b", "--seq-len", "1024", "--gpus", "4", *flags])
    if "--checkpointing" not in flags and "model.gradient_checkpointing=true" not in sets:
        sets = sets + ["model.gradient_checkpointing=true"]
    shape = shape_from_config(tiny_config("llama"))
    assert run_from_args(a, shape) == run_from_train_config(load_config(None, sets, validate_now=False), shape, 1024,
                                                            4, "cuda", 80.0)
