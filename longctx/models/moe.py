"""Mixture-of-experts checkpoints, recognised from their config, and refused by ``train`` and ``plan``.

An MoE decoder (Mixtral, Qwen2-MoE/Qwen3-MoE, DeepSeek-V2/V3, DBRX, gpt-oss, Llama-4, ...) routes each
token to a few expert MLPs. Training it as longctx trains a dense model would optimise another
objective: the chunked loss is the LM loss only, while the config asks for the router's load-balancing
loss (``router_aux_loss_coef``) too; and the planner would count one dense MLP where there are many
experts. Neither is modelled yet, so both refuse, in one line naming the model type and why.
"""

from __future__ import annotations

from typing import Any

from longctx.core.errors import LongctxError
from longctx.models.family import config_getter

EXPERT_COUNT_KEYS: tuple[str, ...] = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts")
"""Config fields in which transformers' MoE families give their number of routed experts."""
NESTED: tuple[str, ...] = ("ffn_config", "text_config")
"""Sub-configs that hold them in some families (DBRX's ``ffn_config``, Llama-4's ``text_config``)."""


def expert_count(config: Any) -> tuple[str, int] | None:
    """``(field, experts)`` when ``config`` (a config.json dict or a transformers config) routes tokens to more
    than one expert, else None."""
    get = config_getter(config)
    for key in EXPERT_COUNT_KEYS:
        value = get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 1:
            return key, value
    for sub in NESTED:
        inner = get(sub)
        if inner is not None and not isinstance(inner, (str, int, float, bool)):
            found = expert_count(inner)
            if found is not None:
                return f"{sub}.{found[0]}", found[1]
    return None


def refuse_moe(config: Any, source: str) -> None:
    """Raise one :class:`LongctxError` line if ``config`` is a mixture-of-experts model (``source``: the file
    or flag to name)."""
    found = expert_count(config)
    if found is None:
        return
    key, experts = found
    model_type = config_getter(config)("model_type", None) or "?"
    raise LongctxError(f"{source}: model_type {model_type!r} is a mixture-of-experts model ({key}={experts}): longctx "
                       "models neither its router's load-balancing loss nor its expert MLP shapes, so it refuses to "
                       "train it (the LM loss alone is another objective) or to plan it (as a dense MLP)")
