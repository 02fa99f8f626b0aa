"""The quick start as a recipe: its flags (:class:`~longctx.quickstart.config.QuickstartConfig`) -> a recipe file's mapping.

One stage per RoPE method, each ``from: base``: extend the base ``factor`` x, evaluate the extended model
(training-free), train it on the same packs (one synthetic passkey stream, ``quickstart-sft``, packed
once) on ``sp_degree`` sequence-parallel ranks, evaluate again. ``configs/recipes/quickstart.yaml`` is
:func:`quickstart_recipe` of the default flags, so ``longctx recipe run`` on it gives the quick start's
numbers; ``longctx quickstart`` runs the same recipe with its own folder layout and report.
"""

from __future__ import annotations

import json
from pathlib import Path

from longctx.core.errors import LongctxError
from longctx.models.organism import shipped_model_dir
from longctx.quickstart.config import QuickstartConfig
from rope_scaling.basic import ntk_base
from rope_scaling.checkpoint_config import read_config, read_rope_config
from rope_scaling.common import rotary_dim

STREAM = "quickstart-sft"
"""The random stream of the quick start's synthetic conversations (with its seed)."""
RECIPE_PATH = "longctx quickstart"
"""How the quick start's recipe is named in messages (``longctx quickstart: stage 'yarn-x8': ...``)."""


def method_label(method: str) -> str:
    """The short name of a RoPE method in stage and model names: linear is position interpolation, "pi"."""
    return {"linear": "pi", "yarn": "yarn", "abf": "abf"}.get(method, method)


def default_abf_theta(model_dir: str | Path, factor: float) -> float:
    """The quick start's ABF base: the NTK-aware base for ``factor`` over the model's rotated channels,
    ``theta * factor ** (d / (d - 2))`` with d the rotary dimension (bloc97; Code Llama uses a fixed 1e6)."""
    rope = read_rope_config(*read_config(model_dir))
    return ntk_base(rope.rope_theta, factor, rotary_dim(rope.head_dim, rope.partial_rotary_factor))


def base_model(cfg: QuickstartConfig) -> Path:
    """The checkpoint to extend: ``--model`` or the shipped organism (checked: a checkpoint folder)."""
    base = Path(cfg.model) if cfg.model else shipped_model_dir()
    if not (base / "config.json").is_file():
        raise LongctxError(f"{base}: --model: not a checkpoint directory (no config.json)")
    return base


def quickstart_recipe(cfg: QuickstartConfig, base: Path) -> dict:
    """The recipe mapping the flags describe (validated by :func:`longctx.recipe.spec.parse_recipe`)."""
    context = int(json.loads((base / "config.json").read_text())["max_position_embeddings"])
    stages = []
    for m in cfg.methods:
        extend: dict = {"method": m, "factor": cfg.factor}
        if m == "abf":  # a whole number, so commands.sh repeats it exactly
            extend["rope_theta"] = float(round(cfg.abf_theta or default_abf_theta(base, cfg.factor)))
        stages.append({
            "name": f"{method_label(m)}-x{cfg.factor}", "from": "base", "extend": extend, "eval_extended": True,
            "data": {"sources": [{"passkey": {"records": cfg.sft_records, "stream": STREAM}}], "train_on": cfg.train_on},
            "train": {"sp_degree": cfg.sp_degree, "lr": cfg.lr, "warmup_steps": cfg.warmup_steps, "steps": cfg.steps,
                      "micro_batch": 1, "loss": "weighted", "train.seed": cfg.seed, "checkpoint.every": 0},
        })
    return {"base": str(base) if cfg.model else "organism", "seed": cfg.seed,
            "eval": {"passkey_lengths": [context * m for m in cfg.multiples], "samples": cfg.eval_samples * cfg.eval_depths,
                     "depths": cfg.eval_depths, "ppl_stride": cfg.ppl_stride},
            "stages": stages}
