"""Qwen2 / Qwen2.5: q/k/v biases always (the modeling code hard-codes them; the config has no switch), and a
sliding window only on the layers ``use_sliding_window`` / ``max_window_layers`` mark."""

from longctx.models.family import Family

FAMILY = Family(
    model_types=("qwen2",),
    description="Qwen2/Qwen2.5",
    sliding_window_key="sliding_window",
    sliding_window_by_layer_type=True,
    attention_bias=True,
)
