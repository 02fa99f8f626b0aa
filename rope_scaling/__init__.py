"""RoPE extension: pure per-method frequency functions, base selection, and the checkpoint patcher.

``compute(name, base=..., head_dim=..., factor=..., original_length=...) -> (inv_freq, attention_factor)``
computes any registered method; :func:`extend_checkpoint` writes an extended Hugging Face folder.
A method is a :class:`RopeMethod` declared in its own module and listed in :data:`METHODS`.
"""

from rope_scaling.base_selection import critical_base, critical_dimension, lower_bound_base
from rope_scaling.checkpoint_config import RopeConfig, patch_config, read_config, read_rope_config
from rope_scaling.explain import explain_pairs, format_table
from rope_scaling.extend import ExtensionPlan, effective_rope, extend_checkpoint, plan_extension, write_extension
from rope_scaling.method import Param, Prepared, Request, RopeMethod
from rope_scaling.registry import METHODS, compute, get_method, validate_params

__all__ = [
    "METHODS", "ExtensionPlan", "Param", "Prepared", "Request", "RopeConfig", "RopeMethod", "compute",
    "critical_base", "critical_dimension", "effective_rope",
    "explain_pairs", "extend_checkpoint", "format_table", "get_method", "lower_bound_base", "patch_config",
    "plan_extension", "read_config", "read_rope_config", "validate_params", "write_extension",
]
