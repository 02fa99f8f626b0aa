"""LoRA fine-tuning on Hugging Face PEFT (``peft.method: lora``): wrap, check, save, export.

The trainer keeps working on the Hugging Face model itself: ``get_peft_model`` injects the adapters
into it in place (``peft_model.base_model.model`` is that same object), so the family's decoder-layer
and MLP paths, the chunked loss (``model.base_model`` + the output head), gradient checkpointing, the
tiled MLP, checkpoint offload and FSDP2 all apply unchanged to the adapted model. Only the parameters
PEFT leaves trainable (the adapters, and the embeddings/norms as ``modules_to_save`` when LongLoRA's
"LoRA+" is on) get gradients, AdamW states and a place in the checkpoints.

The export builds a fresh copy of the base on the host, loads the trained parameters into it and lets
PEFT merge (``merge_and_unload``: a plain checkpoint) or save the adapter folder; so it is the same
for sharded and unsharded runs and leaves the training model as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM

from longctx.core.checkpoint_files import SAFE_LOAD_KWARGS
from longctx.core.errors import LongctxError
from longctx.core.io import atomic_dir
from longctx.models.family import Family
from longctx.train.config import ALL_LINEAR, PeftConfig
from longctx.train.export import copy_side_files, export_hf

try:  # optional: the `lora` extra; only peft.method: lora needs it
    import peft
except ImportError:  # pragma: no cover - exercised by test_lora's subprocess with peft hidden
    peft = None

INSTALL = "pip install 'longctx-align[lora]'"


def require_peft() -> Any:
    """The ``peft`` module, or one line naming the extra that installs it."""
    if peft is None:
        raise LongctxError(f"config: peft.method: lora needs the peft package (the lora extra): {INSTALL}")
    return peft


def rope_extension(config: Any) -> str | None:
    """Why ``config``'s RoPE counts as extended (its rope parameters name a non-default rope_type or an
    original length), or None for the RoPE it was pretrained with."""
    rp = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if not isinstance(rp, dict):
        return None
    rope_type = rp.get("rope_type", rp.get("type", "default"))
    original = rp.get("original_max_position_embeddings") or getattr(config, "original_max_position_embeddings", None)
    if rope_type not in (None, "default"):
        return f"the RoPE was extended (rope_type {rope_type})"
    if original:
        return f"the RoPE was extended (original_max_position_embeddings {original})"
    return None


def embeddings_norms_on(p: PeftConfig, config: Any) -> tuple[bool, str]:
    """Whether the embeddings and norms train in full, and the reason (for the log)."""
    if p.train_embeddings_norms is not None:
        return p.train_embeddings_norms, f"peft.train_embeddings_norms: {str(p.train_embeddings_norms).lower()}"
    why = rope_extension(config)
    if why is not None:
        return True, f"auto: on, {why}: LongLoRA trains embeddings and norms for context extension"
    return False, "auto: off, the RoPE is not extended (default rope_type, no original length)"


def linear_names(model: torch.nn.Module) -> set[str]:
    """Leaf names of the linear layers a target may name (the output head excluded, as PEFT's all-linear)."""
    head = model.get_output_embeddings()
    return {name.rsplit(".", 1)[-1] for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and m is not head and name}


def targets(p: PeftConfig, family: Family, model: torch.nn.Module) -> list[str] | str:
    """``peft.target_modules`` resolved for ``model``: the family's attention projections for [], PEFT's
    ``all-linear``, or the names given; a name that matches no linear layer is one line naming the key."""
    names = [t.strip() for t in p.target_modules] or list(family.attention_projections)
    if names == [ALL_LINEAR]:
        return ALL_LINEAR
    known = linear_names(model)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise LongctxError(f"config: peft.target_modules: {', '.join(unknown)} matches no linear layer of this "
                           f"{family.description} model (its linear layers: {', '.join(sorted(known))}, or {ALL_LINEAR})")
    return names


def full_modules(model: torch.nn.Module) -> list[str]:
    """Leaf names of the input embedding and of every norm: the ``modules_to_save`` of LoRA+."""
    embed = model.get_input_embeddings()
    names = {name.rsplit(".", 1)[-1] for name, m in model.named_modules()
             if m is embed or (name and "norm" in type(m).__name__.lower())}
    return sorted(names)


def lora_config(p: PeftConfig, family: Family, model: torch.nn.Module, embeddings_norms: bool) -> Any:
    """The PEFT ``LoraConfig`` of ``p`` for ``model``. A head tied to the embeddings stays tied to the trained
    copy (``ensure_weight_tying``)."""
    lib = require_peft()
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    save = full_modules(model) if embeddings_norms else None
    return lib.LoraConfig(r=p.r, lora_alpha=p.alpha, lora_dropout=p.dropout, target_modules=targets(p, family, model),
                          modules_to_save=save, ensure_weight_tying=bool(save) and tied, bias="none",
                          task_type="CAUSAL_LM")


def wrap(model: torch.nn.Module, p: PeftConfig, family: Family) -> tuple[Any, str]:
    """Inject LoRA into ``model`` in place; returns the PeftModel and a log line (what trains, and why the
    embeddings/norms do or do not). ``model`` itself stays the module the trainer runs."""
    lib = require_peft()
    on, why = embeddings_norms_on(p, model.config)
    config = lora_config(p, family, model, on)
    peft_model = lib.get_peft_model(model, config)
    if peft_model.base_model.model is not model:  # the trainer relies on in-place injection
        raise RuntimeError("peft.get_peft_model did not adapt the model in place")
    trainable = sum(t.numel() for t in trainable_parameters(model).values())
    total = sum(t.numel() for t in {id(q): q for q in model.parameters()}.values())
    on_what = config.target_modules if isinstance(config.target_modules, str) else ",".join(sorted(config.target_modules))
    line = (f"peft: LoRA r={p.r} alpha={p.alpha:g} on {on_what}; embeddings/norms trained: {why}; "
            f"{trainable:,} of {total:,} parameters train ({100 * trainable / total:.2f}%)")
    return peft_model, line


def trainable_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """Name -> parameter of every trainable parameter (a tied one once): what a LoRA checkpoint holds."""
    return {n: q for n, q in model.named_parameters() if q.requires_grad}


def load_trainable(model: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Load ``state`` (exactly the trainable parameters) into ``model``; anything else is one line."""
    expected = set(trainable_parameters(model))
    if set(state) != expected:
        extra, missing = sorted(set(state) - expected), sorted(expected - set(state))
        raise LongctxError(f"{where}: the saved trainable parameters do not match this peft config "
                           f"(unexpected: {extra[:3]}, missing: {missing[:3]}); use the peft section it was saved with")
    model.load_state_dict(state, strict=False)


def _adapted_copy(model_path: str, p: PeftConfig, family: Family, config: Any, state: dict[str, torch.Tensor]) -> Any:
    """A fresh host copy of the base at ``model_path`` with the run's adapters, loaded with ``state``."""
    lib = require_peft()
    dtype = next(iter(state.values())).dtype if state else torch.float32
    base = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype, **SAFE_LOAD_KWARGS)
    on, _ = embeddings_norms_on(p, config)
    peft_model = lib.get_peft_model(base, lora_config(p, family, base, on))
    load_trainable(base, {k: v.to(dtype) for k, v in state.items()}, "export")
    return peft_model.eval()


def export_lora(model_path: str, p: PeftConfig, family: Family, config: Any, state: dict[str, torch.Tensor],
                out: str | Path, kind: str) -> Path:
    """Write ``out``: the adapters merged into a plain checkpoint (``kind`` merged: loads without PEFT) or the
    PEFT adapter folder (adapter: ``PeftModel.from_pretrained(base, out)`` onto ``model_path``)."""
    peft_model = _adapted_copy(model_path, p, family, config, state)
    if kind == "merged":
        return export_hf(peft_model.merge_and_unload(), model_path, out)
    out = Path(out)
    with atomic_dir(out, overwrite=True, command="train export", legacy=("adapter_config.json",)) as tmp:
        peft_model.save_pretrained(tmp, safe_serialization=True)
        copy_side_files(Path(model_path), tmp)
    return out

