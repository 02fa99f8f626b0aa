"""Step time from FLOPs: 6·N·T for the matmuls plus attention's quadratic term, at a stated MFU.

Model FLOPs of one sequence of T tokens (forward + backward = 3 × forward):

    6 · N · T                                  N = matmul parameters (layers + output head)
  + 3 · L · 4 · T² · q · causal_fraction       QKᵀ and A·V, 2 flops per multiply-add, causal ≈ 1/2

The backward's 4·N·T is 2·N·T for the input gradients and 2·N·T for the weight gradients. LoRA computes
no weight gradient for a frozen weight: (4·(N + A) + 2·W)·T, A the adapters, W the weights with gradients
(the adapters, and a tied head when LoRA+ trains the embedding).

Full activation checkpointing repeats the forward: hardware FLOPs = model FLOPs + forward FLOPs. The time
estimate uses *model* FLOPs at the stated MFU (the usual convention: recomputation shows up as a
lower MFU), so ``--mfu`` should be what such runs reach (≈ 0.3–0.5 on H100 for long sequences).
"""

from __future__ import annotations

from dataclasses import dataclass

from longctx.plan.shapes import ModelShape, RunShape, lora_adapter_params

# Dense peak FLOP/s per GPU (no sparsity), from the vendors' data sheets (SXM parts).
PEAK_FLOPS: dict[str, dict[str, float]] = {
    "a100": {"bf16": 312e12, "fp16": 312e12, "fp32": 19.5e12},
    "h100": {"bf16": 989e12, "fp16": 989e12, "fp32": 67e12},
    "h200": {"bf16": 989e12, "fp16": 989e12, "fp32": 67e12},
}


@dataclass(frozen=True)
class StepTime:
    """Throughput estimate of one optimizer micro-step over all GPUs."""

    model_flops: float
    """FLOPs of the step by the 6·N·T + attention formula (all GPUs)."""
    hardware_flops: float
    """model_flops including the recomputed forward under full checkpointing."""
    attention_fraction: float
    """Share of model_flops spent in the T² attention term."""
    seconds: float
    """Estimated step time at ``mfu`` of ``peak_flops`` per GPU."""
    tokens_per_second: float
    """Tokens processed per second by all GPUs."""
    mfu: float
    peak_flops: float


def sequence_flops(shape: ModelShape, seq_len: int, causal: bool = True,
                   run: RunShape | None = None) -> tuple[float, float]:
    """(dense, attention) training FLOPs of one sequence: 6·N·T (LoRA ``run``: (4·(N + A) + 2·W)·T) and
    12·L·T²·q·(½ if causal)."""
    dense = 6.0 * shape.matmul_params * seq_len
    if run is not None and run.lora:
        adapters = lora_adapter_params(shape, run)
        with_grads = adapters + (shape.embedding_params if run.lora_embeddings_norms and shape.tie_embeddings else 0)
        dense = (4.0 * (shape.matmul_params + adapters) + 2.0 * with_grads) * seq_len
    attn = 12.0 * shape.num_layers * float(seq_len) ** 2 * shape.q_dim * (0.5 if causal else 1.0)
    return dense, attn


def forward_flops(shape: ModelShape, seq_len: int, run: RunShape | None = None) -> float:
    """FLOPs of one forward pass: what full checkpointing repeats (2·(N + A)·T and a third of attention's)."""
    adapters = lora_adapter_params(shape, run) if run is not None else 0
    return 2.0 * (shape.matmul_params + adapters) * seq_len + sequence_flops(shape, seq_len)[1] / 3.0


def step_time(shape: ModelShape, run: RunShape, gpu: str = "h100", mfu: float = 0.4,
              peak_flops: float | None = None) -> StepTime:
    """Estimated time of one forward+backward over ``dp · micro_batch`` sequences on ``run.gpus`` GPUs."""
    peak = peak_flops if peak_flops is not None else PEAK_FLOPS[gpu][run.dtype]
    dense, attn = sequence_flops(shape, run.seq_len, run=run)
    sequences = run.dp * run.micro_batch
    model = (dense + attn) * sequences
    hardware = model + (forward_flops(shape, run.seq_len, run) * sequences if run.checkpointing == "full" else 0.0)
    seconds = model / (run.gpus * peak * mfu)
    return StepTime(model, hardware, attn / (dense + attn), seconds, run.seq_len * sequences / seconds, mfu, peak)
