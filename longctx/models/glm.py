"""GLM (ChatGLM-4 in transformers' ``glm`` class): RoPE on half of each head (partial_rotary_factor 0.5),
q/k/v biases by default."""

from longctx.models.family import Family

FAMILY = Family(
    model_types=("glm",),
    description="GLM (GLM-4-9B-chat as 'glm')",
    partial_rotary_factor=0.5,
    attention_bias_default=True,
)
