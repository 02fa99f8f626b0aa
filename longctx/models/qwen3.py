"""Qwen3 (dense): an RMSNorm over each head's queries and keys (q_norm, k_norm), biases as
``attention_bias`` says (off in the released models), Qwen2's per-layer sliding window."""

from longctx.models.family import Family

FAMILY = Family(
    model_types=("qwen3",),
    description="Qwen3 (dense)",
    sliding_window_key="sliding_window",
    sliding_window_by_layer_type=True,
    qk_norm=True,
)
