"""The planner's options are the trainer's config keys: one table, read in both directions.

``longctx plan`` offers only what ``longctx train`` runs. Every flag of the planner's parser is either
a trainer config key (:data:`TRAIN_KEYS`) or says what sets it in a training run instead
(:data:`NOT_TRAIN_KEYS`: the pack length, the launcher's world size, the step-time estimate, the
allocator model, the output format). :func:`run_from_train_config` is the other direction: the
:class:`RunShape` the trainer checks before it starts, built from the memory-relevant config keys
(:data:`MEMORY_KEYS`, the values of :data:`TRAIN_KEYS`).

The memory model (:mod:`longctx.plan.memory`) also describes runs of other systems (ZeRO offload,
fused Liger kernels, full logits kept by an HF loop) so that published configurations can be
checked against it; those :class:`RunShape` fields are library-only, not planner flags.
"""

from __future__ import annotations

from typing import Any

from longctx.core.sizing import auto_loss_chunk
from longctx.plan.shapes import ModelShape, RunShape

TRAIN_KEYS: dict[str, str] = {
    "model": "model.path",
    "gpu_mem": "plan_gpu_mem_gib",
    "sp": "parallel.sp_degree",
    "layout": "parallel.layout",
    "micro_batch": "train.micro_batch",
    "sharding": "parallel.fsdp",
    "checkpointing": "model.gradient_checkpointing",
    "checkpoint_offload": "model.checkpoint_offload",
    "loss_chunk": "train.loss_chunk",
    "tiled_mlp": "train.tiled_mlp",
    "mlp_tiles": "train.mlp_tiles",
    "attn_kernel": "model.attn_implementation",
    "dtype": "model.dtype",
    "peft": "peft.method",
    "lora_rank": "peft.r",
    "lora_targets": "peft.target_modules",
    "lora_train_embeddings_norms": "peft.train_embeddings_norms",
    "lora_dropout": "peft.dropout",
}
"""Planner flag (argparse dest) -> the ``longctx train`` config key it stands for."""

NOT_TRAIN_KEYS: dict[str, str] = {
    "seq_len": "the pack length of data.path (longctx pack --pack-length)",
    "gpus": "the launcher's world size (torchrun --nproc-per-node x nodes)",
    "gpu": "step-time estimate only (peak FLOP/s of the GPU type)",
    "peak_tflops": "step-time estimate only",
    "mfu": "step-time estimate only",
    "frag_margin": "the allocator model (CUDA caching allocator), not a training choice",
    "overhead": "the allocator model (CUDA context, NCCL workspaces), not a training choice",
    "json": "output format",
    "help": "argparse",
}
"""Planner flags that are not config keys, with what sets them in a training run."""

MEMORY_KEYS = frozenset(TRAIN_KEYS.values()) - {"model.path"}
"""Trainer config keys that change the planner's prediction (model.path gives the shape itself)."""

FLASH_IMPLEMENTATIONS = ("flash_attention_2", "flash_attention_3", "kernels-community/flash-attn")
"""``model.attn_implementation`` values planned with the flash-attn kernel (fp32 dq accumulator);
every other implementation (sdpa, eager, longctx_*) is planned as "sdpa"."""


def attn_kernel_for(attn_implementation: str) -> str:
    """The planner's ``attn_kernel`` for a trainer ``model.attn_implementation``."""
    return "flash" if attn_implementation in FLASH_IMPLEMENTATIONS else "sdpa"


def lora_targets_for(target_modules: list[str]) -> str:
    """The planner's ``lora_targets`` for ``peft.target_modules``: [] = "attention", ["all-linear"], or the names."""
    names = [t.strip() for t in target_modules if t.strip()]
    return ",".join(names) if names else "attention"


def lora_fields(peft: Any, embeddings_norms: bool | None = None) -> dict[str, Any]:
    """The :class:`RunShape` LoRA fields of a trainer ``peft`` section (none for full fine-tuning: the
    defaults). ``embeddings_norms``: ``peft.train_embeddings_norms`` with its auto resolved (default the key
    itself, auto read as off)."""
    if peft.method != "lora":
        return {}
    plus = peft.train_embeddings_norms if embeddings_norms is None else embeddings_norms
    return {"lora_rank": peft.r, "lora_targets": lora_targets_for(peft.target_modules),
            "lora_embeddings_norms": bool(plus), "lora_dropout": peft.dropout}


def run_from_train_config(cfg: Any, shape: ModelShape, pack_length: int, world_size: int, device_type: str,
                          gpu_mem_gib: float, *, layout: str | None = None,
                          embeddings_norms: bool | None = None) -> RunShape:
    """The :class:`RunShape` of a ``longctx train`` run (``cfg`` a ``RunConfig``), as the trainer checks it.

    CPU runs use the planner's CPU mode (fp32, per-tensor AdamW, no allocator margin, no CUDA overhead,
    host offload saves nothing); CUDA runs bf16 unless ``model.dtype: float32``. ``layout``: the layout the
    trainer resolved (``parallel.layout: auto`` names none of its own); default ``parallel.layout``.
    ``embeddings_norms``: ``peft.train_embeddings_norms`` as the trainer resolved its auto (from the checkpoint's
    RoPE, ``longctx.train.lora.embeddings_norms_on``); default the key itself, auto read as off."""
    c = cfg
    cpu = device_type != "cuda"
    return RunShape(
        seq_len=pack_length, gpus=world_size, gpu_mem_gib=gpu_mem_gib, sp=c.parallel.sp_degree,
        layout=layout or c.parallel.layout, micro_batch=1 if c.parallel.sp_degree > 1 else c.train.micro_batch,
        sharding="fsdp" if c.parallel.fsdp else "none",
        checkpointing="full" if c.model.gradient_checkpointing else "none",
        checkpoint_offload=c.model.checkpoint_offload,
        loss_chunk=c.train.loss_chunk or auto_loss_chunk(shape.vocab_size, shape.hidden_size),
        tiled_mlp=c.train.mlp_tiles if c.train.tiled_mlp else 1,
        dtype="fp32" if cpu or c.model.dtype == "float32" else "bf16",
        # dtype auto on CUDA: float32 weights, bf16 compute (autocast, or FSDP2's MixedPrecisionPolicy);
        # model.dtype bfloat16: bf16 weights AND bf16 AdamW states (no float32 copy anywhere)
        master_weights="params" if c.model.dtype == "auto" else "none",
        attn_kernel=attn_kernel_for(c.model.attn_implementation),
        foreach_optimizer=False,  # the trainer builds AdamW(foreach=False)
        frag_margin=0.0 if cpu else 0.05, overhead_gib=0.0 if cpu else 1.0, device="cpu" if cpu else "cuda",
        **lora_fields(c.peft, embeddings_norms),
    )
