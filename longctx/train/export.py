"""The final model as a plain Hugging Face checkpoint (safetensors + the extended rope config).

Training may run with ``attn_implementation="longctx_ring"``, which plain transformers does not
know; the exported config drops it so ``AutoModelForCausalLM.from_pretrained`` works without
importing longctx. Tokenizer and generation files are copied from the source checkpoint.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from longctx.core.io import atomic_dir

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".index.json")


def export_hf(model: torch.nn.Module, source: str | Path, out: str | Path, overwrite: bool = True,
              state_dict: dict | None = None) -> Path:
    """Write ``model`` (or ``state_dict``: the gathered FSDP weights) as safetensors, atomically, to ``out``."""
    source, out = Path(source), Path(out)
    config = model.config
    saved_impl = getattr(config, "_attn_implementation_internal", None)
    with atomic_dir(out, overwrite=overwrite, command="train export", legacy=("config.json",)) as tmp:
        try:
            if isinstance(saved_impl, str) and saved_impl.startswith("longctx"):
                config._attn_implementation_internal = None
            model.save_pretrained(tmp, safe_serialization=True, state_dict=state_dict)
        finally:
            config._attn_implementation_internal = saved_impl
        copy_side_files(source, tmp)
    return out


def copy_side_files(source: Path, dest: Path) -> None:
    """Copy the tokenizer and generation files of ``source`` (not its config or weights) into ``dest``."""
    for f in source.iterdir() if source.is_dir() else []:
        if f.is_file() and f.name != "config.json" and not f.name.endswith(_WEIGHT_SUFFIXES) and not (dest / f.name).exists():
            shutil.copy2(f, dest / f.name)
