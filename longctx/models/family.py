"""What a model family is to longctx: one frozen :class:`Family` per ``longctx/models/<family>.py``.

Every stage that depends on the architecture reads these declarations instead of testing
``model_type`` itself: ``extend``/``inspect`` (which RoPE types load, how the rotary dimension and the
trained length are found), ``train`` (where the decoder layers and the MLP to tile are, which logit
transforms and sliding windows the loss/attention cannot reproduce), ``plan`` (attention biases, norms
per layer) and ``make-tiny`` (the config fields that make a tiny model of the family). Declarations
are plain data plus rules over a transformers config object; this module imports nothing of ours
and neither torch nor transformers, so every layer (the stages included) may read it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

LOGIT_TRANSFORMS: tuple[str, ...] = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")
"""Config fields with which transformers families change the logits after the output head (Gemma-2's
soft-capping, Cohere's scale, Granite's divisor, ...). The chunked loss computes plain ``hidden @ W^T``
logits, so a config setting one of them to anything but the identity cannot be trained with it."""


def frozen(d: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    """A read-only mapping (a declaration's dict fields must not change under its readers)."""
    return MappingProxyType(dict(d or {}))


def config_getter(config: Any) -> Callable[..., Any]:
    """``get(key, default=None)`` over a ``config.json`` dict or a transformers config object."""
    if isinstance(config, Mapping):
        return lambda key, default=None: config.get(key, default)
    return lambda key, default=None: getattr(config, key, default)


@dataclass(frozen=True)
class Family:
    """One model family: the facts about its architecture that longctx's stages rely on."""

    model_types: tuple[str, ...]
    """``config.json`` ``model_type`` values this declaration covers (the registry's keys)."""
    description: str
    """Who uses it, for ``--help`` and error messages (e.g. "Llama 2/3, SmolLM2")."""
    layers: str = "model.layers"
    """Attribute path from the ``*ForCausalLM`` module to its decoder layers (a ``ModuleList``): what FSDP
    shards one unit each, what activation offload wraps, where the MLP to tile is found."""
    mlp: str = "mlp"
    """Attribute of one decoder layer holding its MLP (``train.tiled_mlp`` runs it over sequence tiles)."""
    attention_projections: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    """Names of the attention's linear projections in one decoder layer: the modules LoRA adapts by default
    (``peft.target_modules: []``; Phi-3 fuses q/k/v into one ``qkv_proj``)."""
    mlp_projections: tuple[str, ...] = ("gate_proj", "up_proj", "down_proj")
    """Names of the MLP's linear projections (Phi-3 fuses gate/up into ``gate_up_proj``): with the attention's,
    what PEFT's ``all-linear`` adapts, so what the planner counts for it."""
    mlp_per_token: bool = True
    """The MLP maps each token on its own (dense gated MLP), so tiling the sequence cannot change it.
    An expert-routed MLP is not: its routing and capacity see the whole batch."""
    logit_transforms: tuple[str, ...] = ()
    """Config fields this family's modeling code applies to the logits after the head, beyond
    :data:`LOGIT_TRANSFORMS` (which every family is checked for); ``train`` refuses them when set."""
    rope_types: frozenset[str] | None = None
    """The ``rope_type`` values transformers loads for this family (None: every type)."""
    rope_type_aliases: Mapping[str, str] = field(default_factory=frozen)
    """Old ``rope_type`` names the family's config class renames on load (Phi-3: su/yarn -> longrope)."""
    top_level_original_length: bool = False
    """The family also reads ``original_max_position_embeddings`` from the top level of config.json, with
    priority over the RoPE dict's (Phi-3 longrope); ``extend`` then writes it there too."""
    partial_rotary_factor: float = 1.0
    """Fraction of each head's dimensions that RoPE rotates when the config names none (GLM: 0.5): the
    rotary dimension is ``int(head_dim * partial_rotary_factor)``."""
    sliding_window_key: str | None = None
    """Config field holding the family's sliding attention window (None: the family has none)."""
    sliding_window_by_layer_type: bool = False
    """The window applies only to layers that ``config.layer_types`` marks ``"sliding_attention"`` (Qwen2/3:
    ``use_sliding_window`` and ``max_window_layers`` decide them); otherwise to every layer."""
    attention_bias: bool | None = None
    """q/k/v projections carry biases: True always (Qwen2 hard-codes them), None as the config's
    ``attention_bias`` says (absent: :attr:`attention_bias_default`, the family's config default)."""
    attention_bias_default: bool = False
    norms_per_layer: int = 2
    """RMSNorms of width hidden_size in one decoder layer (2: before attention and before the MLP; GLM-4 adds
    two after them)."""
    qk_norm: bool = False
    """An RMSNorm of width head_dim over the queries and one over the keys in every layer (Qwen3)."""
    tiny_config: Mapping[str, Any] = field(default_factory=frozen)
    """Config fields ``make-tiny`` sets for this family beyond the common ones (Mistral: no sliding window)."""

    def decoder_layers(self, model: Any) -> list:
        """The decoder layers of a loaded ``*ForCausalLM`` ``model`` (a ValueError naming the path if absent)."""
        node = model
        for name in self.layers.split("."):
            node = getattr(node, name, None)
            if node is None:
                raise ValueError(f"{type(model).__name__}: no {self.layers} (the decoder layers of {self.description})")
        return list(node)

    def mlp_of(self, layer: Any) -> Any:
        """The MLP module of one decoder layer, or None."""
        return getattr(layer, self.mlp, None)

    def sliding_window(self, config: Any) -> int | None:
        """The attention window some layer of ``config`` (a transformers config object) uses, or None when
        every layer attends to the whole causal prefix."""
        if self.sliding_window_key is None:
            return None
        window = getattr(config, self.sliding_window_key, None)
        if window is None:
            return None
        if self.sliding_window_by_layer_type and "sliding_attention" not in (getattr(config, "layer_types", None) or ()):
            return None
        return int(window)

    def qkv_bias(self, config: Any) -> bool:
        """Whether the q/k/v projections of ``config`` (dict or object) carry biases."""
        if self.attention_bias is not None:
            return self.attention_bias
        return bool(config_getter(config)("attention_bias", self.attention_bias_default))

    def head_and_partial(self, config: Any) -> tuple[int, float]:
        """``(head_dim, partial_rotary_factor)`` of a transformers config object as the family resolves them:
        ``head_dim`` else width / heads; the RoPE dict's factor, else the config's, else the family's."""
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        rp = config.rope_parameters or {}
        partial = rp.get("partial_rotary_factor", getattr(config, "partial_rotary_factor", None) or self.partial_rotary_factor)
        return int(head_dim), float(partial)

    def canonical_rope_type(self, rope_type: str) -> str:
        """``rope_type`` as the family's config class names it once loaded."""
        return self.rope_type_aliases.get(rope_type, rope_type)
