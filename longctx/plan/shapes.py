"""What the planner plans for: the model's shape and the run's shape, as plain documented dataclasses.

A :class:`ModelShape` is the handful of numbers that decide memory and FLOPs of a Llama-style
decoder (Llama, Mistral, Qwen2/3, ...). It comes from a local ``config.json`` (or a checkpoint
directory holding one), a ``transformers`` config object, or a named preset whose numbers are
written out below (copied from the public ``config.json`` of each model, so no download is needed).
A :class:`RunShape` is everything about *how* it is trained: tokens, GPUs, parallelism, sharding,
offload, checkpointing, loss chunking, dtype.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longctx.core.errors import LongctxError
from longctx.core.io import read_json
from longctx.core.sizing import auto_mlp_tiles
from longctx.distributed.layouts import DEFAULT_LAYOUT, LAYOUTS, get_layout
from longctx.models.family import config_getter
from longctx.models.moe import refuse_moe
from longctx.models.registry import find_family

DTYPE_BYTES: dict[str, int] = {"bf16": 2, "fp16": 2, "fp32": 4}
SHARDINGS = ("none", "zero2", "zero3", "fsdp")
OFFLOADS = ("none", "optimizer", "params")
CHECKPOINTINGS = ("full", "none")
DEVICES = ("cuda", "cpu")
MASTER_WEIGHTS = ("optimizer", "params", "none")
ATTN_KERNELS = ("flash", "sdpa")
NORMS = ("hf", "fused")
IMPLS = ("hf", "fused")
LORA_ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
"""A Llama-style layer's attention projections: ``lora_targets: attention`` unless the family declares others
(``ModelShape.attention_projections``, from ``Family.attention_projections``)."""
LORA_MLP = ("gate_proj", "up_proj", "down_proj")
"""A Llama-style layer's MLP projections (``ModelShape.mlp_projections``); with the attention's, ``all-linear``
(PEFT's: every linear layer of a decoder layer, the head excluded)."""
LORA_NAMES = LORA_ATTENTION + LORA_MLP + ("qkv_proj", "gate_up_proj")
"""Every leaf name :meth:`ModelShape.linear_dims` knows (Phi-3's fused projections too)."""
LORA_PRESETS = ("attention", "all-linear")
"""The :attr:`RunShape.lora_targets` that name a set of layers instead of listing leaf names."""


@dataclass(frozen=True)
class ModelShape:
    """The numbers of a Llama-style decoder-only model that set its memory and FLOPs."""

    hidden_size: int
    """Width H of the residual stream."""
    num_layers: int
    """Number of decoder layers L."""
    num_heads: int
    """Query heads."""
    num_kv_heads: int
    """Key/value heads (GQA); equal to ``num_heads`` for multi-head attention."""
    head_dim: int
    """Per-head width d (usually H / num_heads)."""
    intermediate_size: int
    """Width I of the gated MLP (gate, up: H→I; down: I→H)."""
    vocab_size: int
    """Vocabulary size V (rows of the embedding and the output head)."""
    tie_embeddings: bool = False
    """The output head shares the embedding matrix (no extra V×H parameters)."""
    attention_bias: bool = False
    """q/k/v projections carry biases (Qwen2)."""
    name: str = "custom"
    """Label shown in reports."""
    norms_per_layer: int = 2
    """RMSNorms of width H per decoder layer (``Family.norms_per_layer``: 2, GLM-4 4)."""
    attention_projections: tuple[str, ...] = LORA_ATTENTION
    """Leaf names of the attention's linear layers (``Family.attention_projections``; Phi-3: qkv_proj, o_proj)."""
    mlp_projections: tuple[str, ...] = LORA_MLP
    """Leaf names of the MLP's linear layers (``Family.mlp_projections``; Phi-3: gate_up_proj, down_proj)."""
    qk_norm: bool = False
    """An RMSNorm of width d over the queries and the keys in each layer (Qwen3); parameters only."""

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def layer_params(self) -> int:
        """Parameters of one decoder layer: attention (q,k,v,o), gated MLP (3·H·I), the RMSNorm gains."""
        h = self.hidden_size
        attn = h * self.q_dim + 2 * h * self.kv_dim + self.q_dim * h
        if self.attention_bias:
            attn += self.q_dim + 2 * self.kv_dim
        if self.qk_norm:
            attn += 2 * self.head_dim
        return attn + 3 * h * self.intermediate_size + self.norms_per_layer * h

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def num_params(self) -> int:
        """All parameters: embedding, L layers, final norm, and the head unless tied."""
        head = 0 if self.tie_embeddings else self.embedding_params
        return self.embedding_params + self.num_layers * self.layer_params + self.hidden_size + head

    @property
    def norm_params(self) -> int:
        """RMSNorm gains: ``norms_per_layer`` of width H per layer, the q/k norms (Qwen3), the final norm."""
        return self.num_layers * (self.norms_per_layer * self.hidden_size + (2 * self.head_dim if self.qk_norm else 0)) \
            + self.hidden_size

    def linear_dims(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear layer in one decoder layer, by its leaf name; the fused names
        (Phi-3's qkv_proj, gate_up_proj) too, so a ``peft.target_modules`` list naming them is counted."""
        h, q, kv, i = self.hidden_size, self.q_dim, self.kv_dim, self.intermediate_size
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h),
                "qkv_proj": (h, q + 2 * kv), "gate_up_proj": (h, 2 * i)}

    @property
    def matmul_params(self) -> int:
        """Parameters that take part in a matmul per token (the N of 6·N·T): layers + output head."""
        return self.num_layers * self.layer_params + self.embedding_params


@dataclass(frozen=True)
class RunShape:
    """How the model is trained: one row of the plan. Memory is reported per GPU."""

    seq_len: int
    """Tokens in one training sequence (pack), split over the ``sp`` ranks of a sequence-parallel group."""
    gpus: int = 1
    """Total GPUs (data-parallel degree = gpus / sp)."""
    gpu_mem_gib: float = 80.0
    """Usable memory of one GPU in GiB (2^30 bytes), as torch reports it."""
    sp: int = 1
    """Sequence-parallel degree: ranks that share one sequence. Must divide ``gpus``."""
    layout: str = DEFAULT_LAYOUT
    """How a sequence is split over the SP ranks: a layout the trainer runs (``longctx.distributed.layouts``),
    "zigzag" (2·sp chunks) or "varlen" (sp contiguous chunks), both ring attention where K/V blocks
    circulate. The row gives the length granularity, the head constraint and the communication buffers."""
    micro_batch: int = 1
    """Sequences per SP group per forward/backward."""
    sharding: str = "none"
    """"none" (DDP: full replica), "zero2" (optimizer states + grads sharded), "zero3"/"fsdp"
    (params too). Sharding spans all ``gpus`` (DeepSpeed shards over DP×SP; torchtitan over dp_shard×cp)."""
    offload: str = "none"
    """"optimizer": optimizer states, master weights and gradients live in CPU RAM (ZeRO-Offload);
    "params": the parameters too (ZeRO-3 offload); only the layers in flight are on the GPU."""
    checkpointing: str = "full"
    """"full": keep each layer's input only and recompute the layer in backward; "none": keep everything."""
    checkpoint_offload: bool = False
    """Move the per-layer checkpoints to host RAM (Arctic/ALST; ``model.checkpoint_offload``); two layers'
    worth stay in flight. Saves nothing when ``device`` is "cpu" (host RAM is the device's memory)."""
    loss_chunk: int = 0
    """Tokens per loss chunk (logits never exist for more than this many tokens); 0 = full logits."""
    loss_impl: str = "hf"
    """"hf": unfused PyTorch cross-entropy (fp32 log-softmax and grads; chunked: ``longctx.core.loss``) or
    "fused": one compute-dtype logits buffer whose gradient is written in place (flash-attn's fused
    CE for full logits; Liger's fused linear cross-entropy when chunked)."""
    keep_logits: bool = False
    """The training loop keeps the model output (full logits, compute dtype) alive through backward,
    as loops that hold ``outputs`` while calling ``outputs.loss.backward()`` do: + T·V·a."""
    tiled_mlp: int = 1
    """Split the MLP over the sequence into this many tiles, recomputed in backward (ALST TiledMLP;
    ``train.tiled_mlp`` + ``train.mlp_tiles``); 1 = no tiling, 0 = ALST's ceil(T / H) tiles."""
    dtype: str = "bf16"
    """Compute dtype: "bf16"/"fp16" (with float32 master weights, where :attr:`master_weights` says) or "fp32"."""
    master_weights: str = "optimizer"
    """Where the float32 weights of a bf16/fp16 run live. "optimizer": the model holds compute-dtype
    weights and gradients, the optimizer a float32 master copy (DeepSpeed, Megatron: P·a + P·a + 12P).
    "params": the model's weights and gradients ARE float32 and compute runs in bf16 — through autocast
    (no FSDP: the residual stream, so each checkpointed layer input, stays float32) or through FSDP2's
    MixedPrecisionPolicy (bf16 all-gathers, float32 reduce-scatter) — ``longctx train``'s policy on CUDA,
    as torchtitan's: P·4 + P·4 + 8P. "none": no float32 copy anywhere; AdamW's states take the weights'
    dtype (``model.dtype: bfloat16``): P·a + P·a + 2aP."""
    attn_kernel: str = "flash"
    """"flash" (flash-attn: output already [T, heads, d], fp32 dq accumulator in backward) or
    "sdpa" (PyTorch SDPA: output transposed, so o_proj gets its own contiguous copy)."""
    norm: str = "hf"
    """RMSNorm: "hf" (upcasts to fp32 and keeps that copy plus the normalised tensor) or "fused"
    (keeps its input and 1/rms only)."""
    swiglu: str = "hf"
    """Gated MLP: "hf" (silu(gate)·up in eager PyTorch keeps 4 I-wide tensors) or "fused" (Liger keeps 3)."""
    foreach_optimizer: bool = True
    """AdamW's foreach path (the CUDA default) allocates one fp32 temporary as large as the local
    shard during ``step()``; False: the per-tensor loop (CPU) needs two temporaries of the largest tensor."""
    frag_margin: float = 0.05
    """Allocator fragmentation / reserved-vs-allocated margin, as a fraction of the peak."""
    overhead_gib: float = 1.0
    """Fixed per-GPU overhead: CUDA context, NCCL and cuBLAS workspaces (GiB). 0 on CPU."""
    device: str = "cuda"
    """"cuda" or "cpu": where the step runs; on "cpu" host offload moves nothing off the device."""
    lora_rank: int = 0
    """LoRA rank r (``peft.method: lora``, ``peft.r``); 0 = full fine-tuning. With LoRA the base weights are
    frozen (no gradients, no AdamW states) and only the adapters (and :attr:`lora_embeddings_norms`) train."""
    lora_targets: str = "attention"
    """The linear layers LoRA adapts (``peft.target_modules``): "attention" (q/k/v/o, the default []),
    "all-linear", or leaf names joined by commas ("q_proj,v_proj")."""
    lora_embeddings_norms: bool = False
    """LongLoRA's "LoRA+" (``peft.train_embeddings_norms``): the input embedding (a tied head with it) and every
    norm also train in full, as trainable copies beside the frozen originals (PEFT ``modules_to_save``)."""
    lora_dropout: float = 0.0
    """Dropout on each adapter's input (``peft.dropout``, in [0, 1)): above 0 every adapted linear keeps its own
    dropped copy of its input (for A's gradient) and a one-byte mask; at 0 PEFT skips it and adds nothing."""

    def __post_init__(self) -> None:
        validate_run(self)

    @property
    def dp(self) -> int:
        return self.gpus // self.sp

    @property
    def tokens_per_rank(self) -> int:
        """Tokens each GPU holds activations for: seq_len / sp per sequence, times micro_batch."""
        return self.seq_len * self.micro_batch // self.sp

    @property
    def act_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def fp32_weights(self) -> bool:
        """The model's own weights and gradients are float32 while compute is in a 2-byte dtype."""
        return self.master_weights == "params" and self.act_bytes < 4

    @property
    def autocast(self) -> bool:
        """bf16 compute through autocast over float32 weights (the trainer without FSDP)."""
        return self.fp32_weights and self.sharding not in ("zero3", "fsdp")

    @property
    def residual_bytes(self) -> int:
        """Bytes per element of the residual stream, which checkpointing keeps per layer: float32 under
        autocast (embedding output and residual adds stay float32), else the compute dtype."""
        return 4 if self.autocast else self.act_bytes

    def mlp_tiles(self, hidden_size: int) -> int:
        """The MLP tiles actually used: ``tiled_mlp``, or ALST's ceil(T / H) when it is 0 (at most T)."""
        tiles = self.tiled_mlp or auto_mlp_tiles(self.tokens_per_rank, hidden_size)
        return max(1, min(tiles, self.tokens_per_rank))

    @property
    def offloads_checkpoints(self) -> bool:
        """Checkpoint offload frees device memory: on, with full checkpointing, and a device apart from the host."""
        return self.checkpoint_offload and self.checkpointing == "full" and self.device != "cpu"

    @property
    def lora(self) -> bool:
        return self.lora_rank > 0

    def lora_target_names(self, shape: ModelShape) -> tuple[str, ...]:
        """:attr:`lora_targets` as leaf names of ``shape``'s decoder-layer linear layers."""
        if self.lora_targets == "attention":
            return shape.attention_projections
        if self.lora_targets == "all-linear":
            return shape.attention_projections + shape.mlp_projections
        return self.lora_named_targets()

    def lora_named_targets(self) -> tuple[str, ...]:
        """The leaf names of a ``q_proj,v_proj``-style :attr:`lora_targets` (empty for attention/all-linear)."""
        if self.lora_targets in LORA_PRESETS:
            return ()
        return tuple(t.strip() for t in self.lora_targets.split(",") if t.strip())

    def replace(self, **changes: Any) -> "RunShape":
        return dataclasses.replace(self, **changes)


def seq_granularity(run: RunShape) -> int:
    """Sequence lengths must be a multiple of this: the layout's unit (2·sp for zigzag, sp for varlen)."""
    return get_layout(run.layout).unit(run.sp)


def check_int(flag: str, value: Any, low: int, why: str = "") -> None:
    """Raise :class:`LongctxError` naming ``--flag`` unless ``value`` is an integer >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise LongctxError(f"--{flag}: must be an integer, got {value!r}")
    if value < low:
        raise LongctxError(f"--{flag}: must be at least {low}{why}, got {value}")


def check_number(flag: str, value: Any, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False) -> None:
    """Raise :class:`LongctxError` naming ``--flag`` unless ``value`` is a finite number in the range.

    NaN compares false with everything, so a plain ``value <= 0`` check lets it through; every
    numeric planner input goes through here instead.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise LongctxError(f"--{flag}: must be a finite number, got {value!r}")
    lo = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
    hi = "" if high is None else f"{high:g}" + (")" if high_open else "]")
    span = f"{lo or '(-inf'}, {hi or 'inf)'}"
    if low is not None and (value < low or (low_open and value == low)):
        raise LongctxError(f"--{flag}: must be in {span}, got {value:g}")
    if high is not None and (value > high or (high_open and value == high)):
        raise LongctxError(f"--{flag}: must be in {span}, got {value:g}")


def validate_run(run: RunShape) -> None:
    """Raise :class:`LongctxError` naming the flag when a run shape is impossible."""

    def choice(flag: str, value: str, options: tuple[str, ...], why: str = "") -> None:
        if value not in options:
            raise LongctxError(f"--{flag}: {value!r} is not one of {', '.join(options)}{why}")

    choice("sharding", run.sharding, SHARDINGS)
    choice("offload", run.offload, OFFLOADS)
    choice("checkpointing", run.checkpointing, CHECKPOINTINGS)
    choice("layout", run.layout, tuple(LAYOUTS), " (the layouts `longctx train` runs)")
    choice("dtype", run.dtype, tuple(DTYPE_BYTES))
    choice("master-weights", run.master_weights, MASTER_WEIGHTS)
    choice("attn-kernel", run.attn_kernel, ATTN_KERNELS)
    choice("norm", run.norm, NORMS)
    choice("loss-impl", run.loss_impl, IMPLS)
    choice("swiglu", run.swiglu, IMPLS)
    choice("device", run.device, DEVICES)
    for flag, value in (("seq-len", run.seq_len), ("gpus", run.gpus), ("sp", run.sp), ("micro-batch", run.micro_batch)):
        check_int(flag, value, low=1)
    check_int("mlp-tiles", run.tiled_mlp, low=0, why=" (0 = ALST's ceil(T/H), 1 = no tiling)")
    check_int("loss-chunk", run.loss_chunk, low=0, why=" (0 = full logits)")
    check_number("gpu-mem", run.gpu_mem_gib, low=0.0, low_open=True)
    check_number("frag-margin", run.frag_margin, low=0.0, high=1.0, high_open=True)
    check_number("overhead", run.overhead_gib, low=0.0)
    if run.gpus % run.sp:
        raise LongctxError(f"--sp: {run.sp} does not divide --gpus {run.gpus}")
    if run.seq_len % seq_granularity(run):
        raise LongctxError(
            f"--seq-len: {run.seq_len} is not a multiple of {seq_granularity(run)} "
            f"({get_layout(run.layout).unit_formula} for layout {run.layout})"
        )
    check_int("lora-rank", run.lora_rank, low=0, why=" (0 = full fine-tuning)")
    if run.lora:
        named = run.lora_named_targets()
        if run.lora_targets not in LORA_PRESETS and (not named or set(named) - set(LORA_NAMES)):
            raise LongctxError(f"--lora-targets: {run.lora_targets!r}: expected attention, all-linear or names among "
                               f"{', '.join(LORA_NAMES)}")
        check_number("lora-dropout", run.lora_dropout, low=0.0, high=1.0, high_open=True)
    elif run.lora_embeddings_norms or run.lora_dropout:
        raise LongctxError("--lora-train-embeddings-norms/--lora-dropout: need LoRA (--peft lora)")
    if run.offload == "params" and run.sharding not in ("zero3", "fsdp"):
        raise LongctxError("--offload params: needs --sharding zero3 or fsdp (parameter offload is a ZeRO-3 feature)")


# Numbers from each model's public config.json (hidden, layers, heads, kv heads, head dim, MLP, vocab, tied, qkv bias).
PRESETS: dict[str, ModelShape] = {
    "llama-2-7b": ModelShape(4096, 32, 32, 32, 128, 11008, 32000, False, False, "llama-2-7b"),
    "llama-2-13b": ModelShape(5120, 40, 40, 40, 128, 13824, 32000, False, False, "llama-2-13b"),
    "llama-3-8b": ModelShape(4096, 32, 32, 8, 128, 14336, 128256, False, False, "llama-3-8b"),
    "llama-3.1-8b": ModelShape(4096, 32, 32, 8, 128, 14336, 128256, False, False, "llama-3.1-8b"),
    "llama-3.2-1b": ModelShape(2048, 16, 32, 8, 64, 8192, 128256, True, False, "llama-3.2-1b"),
    "llama-3.2-3b": ModelShape(3072, 28, 24, 8, 128, 8192, 128256, True, False, "llama-3.2-3b"),
    "llama-3-70b": ModelShape(8192, 80, 64, 8, 128, 28672, 128256, False, False, "llama-3-70b"),
    "mistral-7b": ModelShape(4096, 32, 32, 8, 128, 14336, 32000, False, False, "mistral-7b"),
    "qwen2-7b": ModelShape(3584, 28, 28, 4, 128, 18944, 152064, False, True, "qwen2-7b"),
    "qwen2.5-7b": ModelShape(3584, 28, 28, 4, 128, 18944, 152064, False, True, "qwen2.5-7b"),
    "smollm2-135m": ModelShape(576, 30, 9, 3, 64, 1536, 49152, True, False, "smollm2-135m"),
}


def _sizes(get, source: str) -> dict[str, int]:
    """The model's sizes from its config, each an integer >= 1 and the heads consistent, or ONE error naming
    the config key (a 0 there would divide by zero deep in the planner)."""
    keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")
    missing = [k for k in keys if get(k) is None]
    if missing:
        raise LongctxError(f"{source}: config lacks {', '.join(missing)} (not a Llama-style decoder config?)")
    sizes = {k: get(k) for k in keys}
    sizes["num_key_value_heads"] = get("num_key_value_heads") or sizes["num_attention_heads"]
    if get("head_dim") is not None:
        sizes["head_dim"] = get("head_dim")
    for key, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise LongctxError(f"{source}: {key}: must be an integer >= 1, got {value!r}")
    heads, kv = sizes["num_attention_heads"], sizes["num_key_value_heads"]
    if heads % kv:
        raise LongctxError(f"{source}: num_key_value_heads: {kv} does not divide num_attention_heads {heads}")
    if "head_dim" not in sizes:
        if sizes["hidden_size"] % heads:
            raise LongctxError(f"{source}: num_attention_heads: {heads} does not divide hidden_size "
                               f"{sizes['hidden_size']} (and no head_dim is given)")
        sizes["head_dim"] = sizes["hidden_size"] // heads
    return {k: int(v) for k, v in sizes.items()}


def shape_from_config(config: Any, name: str = "custom", *, source: str | None = None) -> ModelShape:
    """A :class:`ModelShape` from a ``transformers`` config object or a ``config.json`` dict.

    ``source`` (default ``name``) is what errors name: the config file a bad size came from. A mixture of
    experts is refused (:func:`longctx.models.refuse_moe`); what differs between dense families (q/k/v
    biases, norms per layer) comes from the family's declaration, or, for an undeclared model type, from
    the config as a Llama-style decoder.
    """
    refuse_moe(config, source or name)
    get = config_getter(config)
    sizes = _sizes(get, source or name)
    family = find_family(get("model_type"))
    return ModelShape(
        hidden_size=sizes["hidden_size"],
        num_layers=sizes["num_hidden_layers"],
        num_heads=sizes["num_attention_heads"],
        num_kv_heads=sizes["num_key_value_heads"],
        head_dim=sizes["head_dim"],
        intermediate_size=sizes["intermediate_size"],
        vocab_size=sizes["vocab_size"],
        tie_embeddings=bool(get("tie_word_embeddings", False)),
        attention_bias=family.qkv_bias(config) if family is not None else bool(get("attention_bias", False)),
        name=name,
        norms_per_layer=family.norms_per_layer if family is not None else 2,
        qk_norm=family.qk_norm if family is not None else False,
        attention_projections=family.attention_projections if family is not None else LORA_ATTENTION,
        mlp_projections=family.mlp_projections if family is not None else LORA_MLP,
    )


def lora_adapter_params(shape: ModelShape, run: RunShape) -> int:
    """LoRA's adapter parameters: r · (in + out) for each targeted linear (A is r×in, B is out×r), in every
    layer; 0 for full fine-tuning. PEFT's own count is the test's oracle (``tests/plan/test_plan_lora.py``)."""
    if not run.lora:
        return 0
    dims = shape.linear_dims()
    return shape.num_layers * sum(run.lora_rank * sum(dims[t]) for t in run.lora_target_names(shape))


def lora_saved_params(shape: ModelShape, run: RunShape) -> int:
    """Parameters LoRA+ trains in full (``modules_to_save`` copies): the input embedding (a tied head is the
    same tensor; an untied head stays frozen, as ``longctx.train.lora.full_modules``) and every norm."""
    return shape.embedding_params + shape.norm_params if run.lora and run.lora_embeddings_norms else 0


def trainable_params(shape: ModelShape, run: RunShape) -> int:
    """Parameters with gradients and AdamW states: all of them (full fine-tuning), or LoRA's adapters and
    LoRA+'s copies."""
    return lora_adapter_params(shape, run) + lora_saved_params(shape, run) if run.lora else shape.num_params


def load_model_shape(spec: str) -> ModelShape:
    """A preset name, a ``config.json`` path, or a checkpoint directory containing ``config.json``."""
    if spec.lower() in PRESETS:
        return PRESETS[spec.lower()]
    path = Path(spec)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise LongctxError(f"--model: {spec!r} is neither a preset ({', '.join(PRESETS)}) nor a config.json / checkpoint dir")
    config = read_json(path)
    if "text_config" in config and "hidden_size" not in config:
        config = config["text_config"]
    return shape_from_config(config, name=str(spec), source=str(path))
