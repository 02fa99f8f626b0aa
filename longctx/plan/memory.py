"""Per-GPU memory of one training step, term by term. Every term is a pure function of plain numbers.

Notation: P parameters (P_L of one decoder layer, P_E = V·H of the embedding), L layers, H hidden,
I MLP width, V vocabulary, q = heads·d, kv = kv_heads·d, a = bytes of the compute dtype (2 for
bf16, 4 for fp32), T = tokens held by this GPU (seq_len · micro_batch / sp), S = sharding degree
(all GPUs for zero2/zero3/fsdp, else 1).

The peak is not the sum of all terms: a step passes through phases, and each term is live in some
of them (see :data:`PHASES`). The planner sums the live terms of each phase and takes the largest.
Activations and gradients trade places during backward (a layer's activations are freed as its
gradients appear), so the backward peak is at its first layer (all activations, no layer grads)
or its last (all grads, one layer of activations); both are phases here.
"""

from __future__ import annotations

from dataclasses import dataclass

from longctx.distributed.layouts import get_layout
from longctx.plan.shapes import ModelShape, RunShape, lora_adapter_params, lora_saved_params

GiB = float(2**30)

PHASES = ("forward", "backward", "backward_end", "step")
"""forward: end of the forward pass with the loss computed (and its backward); backward: the first
(last-layer) decoder backward; backward_end: the last (first-layer) decoder backward, all grads
present; step: ``optimizer.step()``."""


@dataclass(frozen=True)
class Term:
    """One row of the memory table."""

    name: str
    """Short name shown in the table ("params", "grads", ...)."""
    bytes: float
    """Bytes on one GPU while the term is live."""
    phases: tuple[str, ...]
    """The phases of :data:`PHASES` during which the term is live."""
    formula: str
    """The formula, in the notation of this module, for the report."""


# ---------------------------------------------------------------- model states


def params_bytes(n_params: int, a: int, shard: int, offloaded: bool) -> float:
    """Working copy of the parameters: P · a / S; 0 when offloaded to CPU (ZeRO-3 offload)."""
    return 0.0 if offloaded else n_params * a / shard


def gathered_params_bytes(layer_params: int, embedding_params: int, a: int, sharded: bool, root_params: int = 0) -> float:
    """Unsharded parameters in flight under ZeRO-3/FSDP: max(2·P_L, P_E) · a (current + prefetched
    layer, or the embedding/head when it is gathered); 0 without parameter sharding. ``root_params``:
    what one all-gather brings at once outside the layers — the trainer's FSDP2 root unit holds the
    embedding AND the untied head together (2·P_E), gathered for the loss."""
    return max(2 * layer_params, embedding_params, root_params) * a if sharded else 0.0


def grads_bytes(n_params: int, layer_params: int, a: int, shard: int, offloaded: bool) -> float:
    """Gradients: P · a / S. With the optimizer offloaded (ZeRO-Offload) gradients stream to CPU as
    they are reduced, and the GPU keeps about one layer's bucket: P_L · a."""
    return layer_params * a if offloaded else n_params * a / shard


def optimizer_state_bytes(run: RunShape) -> int:
    """AdamW's bytes per parameter: two moments in float32 (8), plus a float32 master copy (12) when the
    model holds bf16/fp16 weights that the optimizer updates in float32 (``master_weights: optimizer``);
    two moments in the weights' own dtype (2a) when no float32 copy exists (``master_weights: none``)."""
    a = run.act_bytes
    if a == 4 or run.master_weights == "params":
        return 8
    return 12 if run.master_weights == "optimizer" else 2 * a


def optimizer_bytes(n_params: int, state_bytes: int, shard: int, offloaded: bool) -> float:
    """AdamW states: P · state_bytes / S (:func:`optimizer_state_bytes`); 0 if offloaded."""
    return 0.0 if offloaded else n_params * state_bytes / shard


def optimizer_step_bytes(local_params: float, largest_tensor: int, foreach: bool, offloaded: bool) -> float:
    """Temporaries of ``AdamW.step()``: foreach (CUDA) makes one fp32 copy of the local shard
    (``_foreach_sqrt`` of exp_avg_sq): 4 · P/S; the per-tensor loop (CPU) makes two of the largest
    tensor: 2 · 4 · max numel. 0 when the step runs on the CPU (offload)."""
    if offloaded:
        return 0.0
    return 4 * local_params if foreach else 2 * 4 * largest_tensor


# ---------------------------------------------------------------- activations


def rmsnorm_bytes_per_token(h: int, a: int, norm: str, r: int | None = None) -> float:
    """Saved by one RMSNorm (+ its output, saved by the next linear), per token.

    "hf" (transformers' LlamaRMSNorm upcasts): fp32 input 4·H, normalised tensor a·H, output a·H
    → 4H + 2aH (+4 for 1/rms). Under autocast (``r`` = 4, a float32 residual stream) the normalised
    tensor is float32 too: 4H + 4H + aH. "fused" (Liger, torchtitan fused_rmsnorm): input a·H + output a·H (+4)."""
    if norm == "hf" and r is not None and r > a:
        return 8 * h + a * h + 4
    return (4 * h + 2 * a * h if norm == "hf" else 2 * a * h) + 4


def layer_activation_bytes_per_token(shape: ModelShape, a: int, attn_kernel: str = "flash", norm: str = "hf",
                                     tiled_mlp: int = 1, swiglu: str = "hf", r: int | None = None) -> float:
    """Everything one decoder layer keeps for backward, per token (no checkpointing; LoRA adds
    :func:`lora_activation_bytes_per_token`):

        n · rmsnorm                                   (n = norms_per_layer: input_layernorm, post_attention_layernorm, GLM-4 two more)
      + a · (q + kv + kv) + a · q + 4 · heads         (rotated q, k, v; attention output; fp32 log-sum-exp)
      + a · q   if attn_kernel == "sdpa"              (o_proj input: contiguous copy of the transposed output)
      + 4 · a · I / tiled_mlp                         (gate, up, silu(gate), silu·up)
        (3 · a · I / tiled_mlp with swiglu == "fused": Liger keeps gate and up only)

    Flash-style attention keeps no T×T matrix. Dropout is off (no masks). For Llama-3-8B in bf16
    this is ≈ 196 KiB per token per layer."""
    q, kv = shape.q_dim, shape.kv_dim
    attn = a * (q + 2 * kv) + a * q + 4 * shape.num_heads + (a * q if attn_kernel == "sdpa" else 0)
    mlp = (4 if swiglu == "hf" else 3) * a * shape.intermediate_size / tiled_mlp
    return shape.norms_per_layer * rmsnorm_bytes_per_token(shape.hidden_size, a, norm, r) + attn + mlp


def backward_transient_bytes_per_token(shape: ModelShape, a: int, tiled_mlp: int = 1, r: int | None = None) -> float:
    """Gradient buffers alive inside one layer's backward, per token, on top of its activations:
    the incoming hidden-state grad (a·H, held for the residual branch) plus the larger of
    the MLP's peak, at the ``silu(gate)·up`` backward: grad of the product, of silu and of up alive,
    the product freed: 2·a·I/tiles; and attention's: grad of the output plus dq, dk, dv: a·(2q + 2kv)."""
    r = a if r is None else r  # the residual stream's gradient: float32 under autocast
    return r * shape.hidden_size + a * max(2 * shape.intermediate_size / tiled_mlp, 2 * shape.q_dim + 2 * shape.kv_dim)


def saved_activation_bytes(tokens: int, shape: ModelShape, run: RunShape) -> float:
    """Activations kept across layers while the step is in flight.

    Full checkpointing: each layer's input, L · T · a · H; with checkpoint offload only the two
    layers in flight stay: 2 · T · a · H (on a GPU; with ``device`` "cpu" the host is the device and
    nothing leaves: L · T · a · H still). No checkpointing: (L − 1) layers of
    :func:`layer_activation_bytes_per_token` (the L-th is :func:`layer_activation_bytes`)."""
    a = run.act_bytes
    if run.checkpointing == "full":
        per_layer = tokens * run.residual_bytes * shape.hidden_size
        return 2 * per_layer if run.offloads_checkpoints else shape.num_layers * per_layer
    return (shape.num_layers - 1) * layer_activation_bytes(tokens, shape, run)


def layer_activation_bytes(tokens: int, shape: ModelShape, run: RunShape) -> float:
    """One layer's full activations, T · act_layer: recomputed in backward under checkpointing; without
    it, the last layer's (so that kept + this = all L layers in forward, one layer at the backward end)."""
    return tokens * (layer_activation_bytes_per_token(shape, run.act_bytes, run.attn_kernel, run.norm,
                                                      run.mlp_tiles(shape.hidden_size), run.swiglu, run.residual_bytes)
                     + lora_activation_bytes_per_token(shape, run, frozen_savings=run.checkpointing == "none"))


def lora_activation_bytes_per_token(shape: ModelShape, run: RunShape, frozen_savings: bool = True) -> float:
    """What LoRA changes in one layer's activations, per token (0 for full fine-tuning). Autograd keeps a
    tensor only for a gradient that is needed, and a frozen weight needs none:

      + a · r per target                          each adapter's A output, kept for B's gradient
      − a · H   if no q/k/v target                the input norm's output (only a weight gradient reads it)
      − a · H   if no gate/up target              the post-attention norm's output
      − a · I / tiles   if down_proj is frozen    the MLP product silu(gate)·up
      − a · q   if o_proj is frozen (SDPA)        o_proj's contiguous input copy
      − n · w · H   if the norms are frozen       each norm's normalised tensor (w: its bytes, float32 under
                                                  autocast), kept only for the gain's gradient ("hf" norms)

      + (w + 1) · in   per target, if dropout > 0  its dropped input (for A's gradient; w: the input's bytes,
                                                  float32 for the norm-fed q/k/v/gate/up under autocast) and
                                                  the dropout's bool mask; the tiled MLP's down_proj: in / tiles

    With dropout 0 an adapter's input is the base linear's (the same tensor), so it adds nothing. The savings
    count for the layers kept in forward (no checkpointing: ``frozen_savings``), not for the one layer
    recomputed in backward under checkpointing, whose peak (the MLP backward, with the attention's tensors
    still alive) the full fine-tuning term already bounds loosely: measured, subtracting them there
    under-predicts a LoRA step by 8% (tests/plan/test_plan_cpu.py), keeping them over-predicts by 8%."""
    if not run.lora:
        return 0.0
    a, h, names = run.act_bytes, shape.hidden_size, set(run.lora_target_names(shape))
    out = a * run.lora_rank * len(names)
    if run.lora_dropout > 0:
        dims, tiles = shape.linear_dims(), run.mlp_tiles(h)
        for t in names:
            width = dims[t][0] / (tiles if t == "down_proj" else 1)
            out += (a if t in ("o_proj", "down_proj") else max(run.residual_bytes, a)) * width + width
    if not frozen_savings:
        return out
    if not names & {"q_proj", "k_proj", "v_proj", "qkv_proj"}:
        out -= a * h
    if not names & {"gate_proj", "up_proj", "gate_up_proj"}:
        out -= a * h
    if "down_proj" not in names:
        out -= a * shape.intermediate_size / run.mlp_tiles(h)
    if "o_proj" not in names and run.attn_kernel == "sdpa":
        out -= a * shape.q_dim
    if not run.lora_embeddings_norms and run.norm == "hf":
        out -= shape.norms_per_layer * max(run.residual_bytes, a) * h
    return out


def backward_transient_bytes(tokens: int, shape: ModelShape, run: RunShape) -> float:
    """Gradient buffers inside one layer's backward: T · bwd_transient."""
    return tokens * backward_transient_bytes_per_token(shape, run.act_bytes, run.mlp_tiles(shape.hidden_size),
                                                       run.residual_bytes)


def attention_workspace_bytes(tokens: int, shape: ModelShape, attn_kernel: str) -> float:
    """Attention backward scratch: flash-attn accumulates dq in fp32, T · q · 4 bytes; 0 for SDPA
    (its CPU/efficient kernels accumulate in blocks)."""
    return tokens * shape.q_dim * 4 if attn_kernel == "flash" else 0.0


def ring_buffer_bytes(tokens: int, shape: ModelShape, a: int, layout: str, sp: int) -> float:
    """Sequence-parallel communication buffers, per GPU (0 when sp == 1): T times the layout row's
    ``comm_bytes_per_token``. Both layouts are ring attention (ring-flash-attn backward, the larger
    direction): the K/V block being used and the one in flight, 2 · 2 · a · kv, the dK/dV being
    accumulated and in flight in fp32, 2 · 2 · 4 · kv, the fp32 dq accumulator and block buffers,
    (4 + a) · q + 2 · a · kv (``longctx.distributed.layouts.base.ring_comm_bytes_per_token``)."""
    if sp == 1:
        return 0.0
    return tokens * get_layout(layout).comm_bytes_per_token(shape.q_dim, shape.kv_dim, a)


def loss_bytes(tokens: int, shape: ModelShape, a: int, chunk: int, impl: str, norm: str,
               keep_logits: bool = False, hidden_bytes: int | None = None) -> float:
    """Final norm + output head + cross-entropy, at their peak (the loss backward).

    Final norm: rmsnorm per token · T. Then
      full logits, "hf":    T · V · 12         fp32 log-softmax (saved), then in backward the fp32 grad
                                               of the loss and of the log-softmax (the compute-dtype
                                               logits are freed once the caller drops the model output;
                                               a caller that keeps ``outputs.logits`` adds T · V · a)
      full logits, "fused": T · V · a          one logits buffer, gradient written in place
                                               (flash-attn's fused cross-entropy)
      chunked, c tokens at a time, "hf" (``longctx.core.loss.chunked_lm_loss``):
                            2 · T · a · H      the selected hidden rows and their grad
                          + c · V · (2a + 8 if a < 4 else 8)   chunk logits, fp32 copy, softmax, grad
                          + 2 · 4 · V · H      fp32 head-grad accumulator and the matmul temporary
      chunked, "fused" (Liger fused linear cross-entropy: grads computed in forward, in place):
                            2 · T · a · H + c · V · a + 4 · V · H"""
    v, h = shape.vocab_size, shape.hidden_size
    r = a if hidden_bytes is None else hidden_bytes  # the hidden rows: float32 under autocast
    final_norm = tokens * rmsnorm_bytes_per_token(h, a, norm)
    if chunk <= 0:
        return final_norm + tokens * v * ((12 if impl == "hf" else a) + (a if keep_logits and impl == "hf" else 0))
    c = min(chunk, tokens)
    if impl == "fused":
        return final_norm + 2 * tokens * a * h + c * v * a + 4 * v * h
    per_logit = 2 * a + 8 if a < 4 else 8
    return final_norm + 2 * tokens * r * h + c * v * per_logit + 8 * v * h


# ---------------------------------------------------------------- assembly


def memory_terms(shape: ModelShape, run: RunShape) -> list[Term]:
    """All terms for ``run`` on one GPU, with the phases in which each is live."""
    a = run.act_bytes
    t = run.tokens_per_rank
    shard = run.gpus if run.sharding != "none" else 1
    param_shard = run.gpus if run.sharding in ("zero3", "fsdp") else 1
    opt_off = run.offload in ("optimizer", "params")
    opt_state = optimizer_state_bytes(run)
    pa = 4 if run.fp32_weights else a  # bytes of a stored weight and of its gradient
    p, pl, pe = shape.num_params, shape.layer_params, shape.embedding_params
    root = pe * (1 if shape.tie_embeddings else 2)  # FSDP2's root unit (step.LMLoss): embedding + untied head
    all_ = PHASES
    if run.lora:  # frozen base; float32 adapters (PEFT's autocast_adapter_dtype) + LoRA+'s copies train
        ad, saved = lora_adapter_params(shape, run), lora_saved_params(shape, run)
        pl += ad // shape.num_layers
        root += pe if saved else 0  # the embedding's trainable copy sits in the root unit beside the original
        largest = max([pe] if saved else [run.lora_rank * max(d) for d in
                                          (shape.linear_dims()[t] for t in run.lora_target_names(shape))])
        model_terms = [
            Term("params", params_bytes(p + saved, pa, param_shard, run.offload == "params")
                 + params_bytes(ad, 4, param_shard, run.offload == "params"), all_,
                 f"(P + P_E+norms)·{pa}/S frozen base + copies, + 4·A/S adapters" if saved
                 else f"P·{pa}/S frozen base + 4·A/S adapters (A = L·r·Σ(in+out) per target)"),
            Term("gathered params", gathered_params_bytes(pl, pe, a, param_shard > 1 or run.offload == "params",
                                                          root_params=root if run.sharding == "fsdp" else 0),
                 ("forward", "backward", "backward_end"), "max(2·(P_L + A/L), P_E, root)·a under FSDP"),
            Term("grads", (ad * 4 + saved * pa) / shard, ("backward_end", "step"),
                 "(4·A" + (f" + {pa}·(P_E+norms)" if saved else "") + ")/S (trainable only)"),
            Term("unsharded root grads", pe * a if run.sharding == "fsdp" and saved else 0.0,
                 ("backward", "backward_end"), "P_E·a: the trained embedding copy's gradient before reduce-scatter"),
            Term("autocast weight copies", pl * a if run.autocast else 0.0, ("forward", "backward", "backward_end"),
                 "P_L·a (one layer's bf16 casts; autocast's cache is off)"),
            Term("optimizer states", optimizer_bytes(ad, 8, shard, opt_off) + optimizer_bytes(saved, opt_state, shard, opt_off),
                 all_, "8·A/S" + (f" + {opt_state}·(P_E+norms)/S" if saved else "") + " (trainable only)"),
            Term("optimizer step", optimizer_step_bytes((ad + saved) / shard, largest, run.foreach_optimizer, opt_off),
                 ("step",), "4·trainable/S (foreach) or 8·max trainable numel"),
        ]
    else:
        model_terms = [
            Term("params", params_bytes(p, pa, param_shard, run.offload == "params"), all_,
                 ("P·4/S (float32 weights)" if run.fp32_weights else "P·a/S") + " (0 if offloaded)"),
            Term("gathered params", gathered_params_bytes(pl, pe, a, param_shard > 1 or run.offload == "params",
                                                          root_params=root if run.sharding == "fsdp" else 0),
                 ("forward", "backward", "backward_end"),
                 "max(2·P_L, P_E" + (", root = embedding + head" if run.sharding == "fsdp" else "") + ")·a under ZeRO-3/FSDP"),
            Term("grads", grads_bytes(p, pl, pa, shard, opt_off), ("backward_end", "step"),
                 ("P·4/S" if run.fp32_weights else "P·a/S") + " (P_L·a if offloaded)"),
            Term("unsharded root grads", root * a if run.sharding == "fsdp" else 0.0, ("backward", "backward_end"),
                 "2·P_E·a: FSDP2 reduce-scatters the root unit (embedding + head) once its backward ends"),
            Term("autocast weight copies", pl * a if run.autocast else 0.0, ("forward", "backward", "backward_end"),
                 "P_L·a (one layer's bf16 casts; autocast's cache is off)"),
            Term("optimizer states", optimizer_bytes(p, opt_state, shard, opt_off), all_,
                 ("P·2a/S" if opt_state == 2 * a and a < 4 else f"P·{opt_state}/S") + " (0 if offloaded)"),
            Term("optimizer step", optimizer_step_bytes(p / shard, max(pe, shape.intermediate_size * shape.hidden_size),
                                                        run.foreach_optimizer, opt_off), ("step",),
                 "4·P/S (foreach) or 8·max numel"),
        ]
    terms = model_terms + [
        Term("activations (kept)", saved_activation_bytes(t, shape, run), ("forward", "backward"),
             "L·T·a·H (checkpoints)" if run.checkpointing == "full" else "(L−1)·T·act_layer"),
        Term("checkpoint in recompute", t * run.residual_bytes * shape.hidden_size if run.checkpointing == "full" else 0.0,
             ("backward_end",), "T·r·H (the first layer's checkpointed input, back on the device to recompute it)"),
        Term("layer activations", layer_activation_bytes(t, shape, run),
             ("backward", "backward_end") + (("forward",) if run.checkpointing == "none" else ()),
             "T·act_layer (one layer" + (", recomputed)" if run.checkpointing == "full" else ")")),
        Term("backward transient", backward_transient_bytes(t, shape, run), ("backward", "backward_end"),
             "T·a·(H + max(2I/tiles, 2q + 2kv))"),
        Term("attention workspace", attention_workspace_bytes(t, shape, run.attn_kernel),
             ("backward", "backward_end"), "T·q·4 (flash dq fp32)"),
        Term("ring buffers", ring_buffer_bytes(t, shape, a, run.layout, run.sp), ("backward", "backward_end"),
             get_layout(run.layout).comm_formula),
        Term("logits / loss", loss_bytes(t, shape, a, run.loss_chunk, run.loss_impl, run.norm, run.keep_logits,
                                         hidden_bytes=run.residual_bytes), ("forward",),
             _loss_formula(run)),
    ]
    return terms


def phase_totals(terms: list[Term]) -> dict[str, float]:
    """Bytes live in each phase: the sum of the terms live in it."""
    return {ph: sum(t.bytes for t in terms if ph in t.phases) for ph in PHASES}


def _loss_formula(run: RunShape) -> str:
    if run.loss_chunk <= 0:
        return ("T·V·(12+a)" if run.keep_logits else "T·V·12") if run.loss_impl == "hf" else "T·V·a"
    return "c·V·(2a+8) + 2·T·a·H + 8·V·H" if run.loss_impl == "hf" else "c·V·a + 2·T·a·H + 4·V·H"
