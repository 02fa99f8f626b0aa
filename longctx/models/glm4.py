"""GLM-4 (0414): GLM's half-rotary RoPE and q/k/v biases, plus a norm after attention and after the MLP
(four RMSNorms per layer)."""

from longctx.models.family import Family

FAMILY = Family(
    model_types=("glm4",),
    description="GLM-4-0414",
    partial_rotary_factor=0.5,
    attention_bias_default=True,
    norms_per_layer=4,
)
