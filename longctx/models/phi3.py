"""Phi-3 / Phi-3.5 (dense): transformers loads only default or longrope RoPE for it (old su/yarn names become
longrope), reads ``original_max_position_embeddings`` from the top level first, and may set a sliding window
(Phi-3-mini-4k: 2047)."""

from longctx.models.family import Family, frozen

FAMILY = Family(
    model_types=("phi3",),
    description="Phi-3/Phi-3.5-mini",
    rope_types=frozenset({"default", "longrope"}),
    rope_type_aliases=frozen({"su": "longrope", "yarn": "longrope"}),
    top_level_original_length=True,
    sliding_window_key="sliding_window",
    attention_projections=("qkv_proj", "o_proj"),
    mlp_projections=("gate_up_proj", "down_proj"),
)
