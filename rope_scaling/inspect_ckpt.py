"""``longctx inspect``: what a checkpoint is, and how long a context its config claims."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from longctx.core.checkpoint_files import check_safetensors
from rope_scaling.checkpoint_config import read_config, read_rope_config
from longctx.core.checkpoint_files import weight_files


def _safetensors_params(files: list[Path]) -> int:
    """Parameter count from safetensors headers only (8-byte length + JSON), without reading tensors."""
    return sum(math.prod(meta["shape"]) for f in files
               for name, meta in check_safetensors(f).items() if name != "__metadata__")


def inspect_checkpoint(model_dir: str | os.PathLike) -> dict:
    """Architecture, RoPE parameters (normalised), trained and claimed context, weight format."""
    raw, path = read_config(model_dir)
    rc = read_rope_config(raw, path)
    st, pk = weight_files(Path(model_dir))
    rope = {"rope_type": rc.rope_type, "rope_theta": rc.rope_theta, "partial_rotary_factor": rc.partial_rotary_factor,
            **({"original_max_position_embeddings": rc.original_length} if rc.rope_type != "default" else {}),
            **rc.params}
    return {
        "path": str(model_dir),
        "model_type": rc.model_type,
        "architectures": raw.get("architectures"),
        "layers": raw.get("num_hidden_layers"),
        "hidden_size": raw.get("hidden_size"),
        "heads": raw.get("num_attention_heads"),
        "kv_heads": raw.get("num_key_value_heads", raw.get("num_attention_heads")),
        "head_dim": rc.head_dim,
        "rotary_dim": rc.rotary_dim,
        "vocab_size": raw.get("vocab_size"),
        "config_form": rc.form,
        "rope_parameters": rope,
        "trained_context": rc.original_length,
        "max_position_embeddings": rc.max_position_embeddings,
        "target_context": rc.context_length,
        "weights": "safetensors" if st else ("pickle" if pk else "none"),
        "parameters": _safetensors_params(st) if st else None,
        "config_conflicts": list(rc.conflicts),  # keys transformers ignores; `longctx extend` refuses them
    }


def format_report(info: dict) -> str:
    rows = [
        ("architecture", f"{info['model_type']} {info['architectures'] or ''}".strip()),
        ("shape", f"{info['layers']} layers, hidden {info['hidden_size']}, {info['heads']} heads "
                  f"({info['kv_heads']} kv), head_dim {info['head_dim']}, rotary dim {info['rotary_dim']}"),
        ("vocab", info["vocab_size"]),
        ("weights", f"{info['weights']}" + (f", {info['parameters']:,} parameters" if info["parameters"] else "")),
        ("config form", "v5 rope_parameters" if info["config_form"] == "v5" else "legacy rope_theta/rope_scaling"),
        ("rope", json.dumps(info["rope_parameters"], default=str)[:400]),
        ("trained context", info["trained_context"]),
        ("max_position_embeddings", info["max_position_embeddings"]),
        ("target context", info["target_context"]),
    ]
    rows += [("WARNING", c) for c in info.get("config_conflicts", ())]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
