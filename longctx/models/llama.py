"""Llama (Llama 2/3, SmolLM2, TinyLlama, ...): the reference decoder every other family is read against."""

from longctx.models.family import Family

FAMILY = Family(
    model_types=("llama",),
    description="Llama 2/3, SmolLM2",
)
