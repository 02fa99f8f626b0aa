"""Mistral: Llama's layout with an optional sliding attention window on every layer."""

from longctx.models.family import Family, frozen

FAMILY = Family(
    model_types=("mistral",),
    description="Mistral",
    sliding_window_key="sliding_window",  # 4096 in Mistral-7B-v0.1 (MistralConfig's default), null from v0.2
    tiny_config=frozen({"sliding_window": None}),
)
