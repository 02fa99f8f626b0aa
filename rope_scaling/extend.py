"""Plan and write an extended checkpoint: the library behind ``longctx extend``.

:func:`plan_extension` is pure (config dict in, plan out) so tests and ``--dry-run`` share it;
:func:`extend_checkpoint` writes the new folder atomically: config.json patched, weights
hard-linked (or copied) as safetensors, tokenizer and every other file copied.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from longctx.core.errors import LongctxError, where
from longctx.core.checkpoint_files import check_weight_files, require_safetensors
from longctx.core.io import OUTPUT_MARKER, atomic_dir, atomic_write_json, check_out_vs_inputs
from rope_scaling.checkpoint_config import (RopeConfig, loadable_types, patch_config, read_config, read_rope_config,
                                            refuse_conflicts)
from rope_scaling.common import check_factor, default_inv_freq
from rope_scaling.explain import PairRow, explain_pairs
from rope_scaling.method import Request
from rope_scaling.registry import extending_methods, flag_of, get_method, methods_taking, validate_params



@dataclass
class ExtensionPlan:
    """Everything ``extend`` will write, and why."""

    method: str
    reason: str
    source: RopeConfig
    target_length: int
    factor: float
    rope_parameters: dict
    max_position_embeddings: int
    old_inv_freq: torch.Tensor
    new_inv_freq: torch.Tensor  # at the target length (dynamic / longrope switch at run time)
    attention_factor: float
    training: str
    notes: list[str] = field(default_factory=list)

    def pairs(self) -> list[PairRow]:
        return explain_pairs(self.old_inv_freq, self.new_inv_freq, self.source.original_length, self.factor)


def choose_method(rc: RopeConfig, factor: float, params: dict) -> tuple[str, str]:
    """``--method auto``: the method and a sentence saying why.

    A parameter that only one method takes (``--rope-theta``: ABF) selects that method; otherwise YaRN,
    or LongRoPE for a model transformers loads only with default/longrope RoPE (Phi-3).
    """
    owners = {k: methods_taking(k) for k in params}
    chosen = {names[0] for names in owners.values() if len(names) == 1}
    if len(chosen) == 1:
        name = chosen.pop()
        flags = ", ".join(flag_of(k) for k, names in owners.items() if names == [name])
        return name, f"{flags} given: {get_method(name).summary}"
    allowed = loadable_types(rc.model_type)
    if allowed is not None and get_method("yarn").rope_type not in allowed:
        return "longrope", (f"{rc.model_type} loads only {'/'.join(sorted(allowed))} RoPE in transformers; "
                            "longrope with YaRN-derived factors")
    why = ("yarn: leaves high-frequency pairs untouched, so it works training-free at small factors and adapts "
           "fastest with a short fine-tune (linear/ABF need continued training)")
    if factor > 8:
        why += f"; at {factor:g}x plan on continued training"
    return "yarn", why


def _resolve_lengths(rc: RopeConfig, target_length: int | None, factor: float | None) -> tuple[int, float]:
    where_ = rc.path
    if target_length is None and factor is None:
        raise LongctxError("give --target-length or --factor (the new context relative to the trained "
                           f"{rc.original_length} tokens)")
    if factor is not None:
        check_factor(factor, "--factor")
    if target_length is not None:
        if isinstance(target_length, bool) or not isinstance(target_length, int) or target_length <= 0:
            raise LongctxError(f"--target-length: must be a positive integer, got {target_length!r}")
        implied = target_length / rc.original_length
        if factor is not None and abs(implied - factor) > 1e-9 * factor and round(rc.original_length * factor) != target_length:
            raise LongctxError(f"--target-length {target_length} and --factor {factor:g} contradict each other: "
                               f"{target_length} / {rc.original_length} (trained length) = {implied:g}")
        factor = implied if factor is None else factor
    else:
        target_length = int(round(rc.original_length * factor))
    if target_length <= rc.context_length:
        raise LongctxError(f"{where(where_, field='max_position_embeddings')} = {rc.context_length}: target length "
                           f"{target_length} is not above the current context")
    return target_length, float(factor)


def plan_extension(
    raw: dict, path: object = "config.json", *, method: str = "auto", target_length: int | None = None,
    factor: float | None = None, **method_params,
) -> ExtensionPlan:
    """Decide the new ``rope_parameters`` for ``raw`` (a config.json dict) without touching any file.

    ``method_params`` are the method's declared parameters (``rope_theta`` for abf, ``beta_fast`` for
    yarn, ...; None means not given); the method's ``prepare`` hook fills in the rest.
    """
    rc = read_rope_config(raw, path)
    refuse_conflicts(rc)  # it would rewrite the RoPE keys and erase one of the two readings
    target_length, factor = _resolve_lengths(rc, target_length, factor)
    params = {k: v for k, v in method_params.items() if v is not None}
    reason = f"--method {method}"
    if method == "auto":
        method, reason = choose_method(rc, factor, params)
    m = get_method(method)
    if not m.extends:
        raise LongctxError(f"--method {method} does not extend the context; choose one of "
                           + ", ".join(extending_methods()))
    validate_params(method, params)
    allowed = loadable_types(rc.model_type)
    if allowed is not None and m.rope_type not in allowed:
        ok = sorted(n for n in extending_methods() if get_method(n).rope_type in allowed)
        raise LongctxError(f"{where(path, field='model_type')} = {rc.model_type!r}: transformers cannot load "
                           f"--method {method} for it; choose one of {', '.join(ok)}")
    notes: list[str] = []
    if rc.rope_type != "default":
        notes.append(f"the source already has rope_type {rc.rope_type!r}; it is replaced, scaled from the trained "
                     f"length {rc.original_length} and base {rc.rope_theta:g}")
    req = Request(rc, target_length, factor, params)
    prepared = m.prepare(req)
    run_len = {"seq_len": target_length} if m.seq_len_dependent else {}
    new_inv_freq, attention_factor = m.fn(**req.geometry, **{**m.defaults(), **prepared.params}, **run_len)
    return ExtensionPlan(method, reason, rc, target_length, factor, m.rope_parameters(rc, factor, prepared),
                         prepared.max_position_embeddings, default_inv_freq(rc.rope_theta, rc.rotary_dim), new_inv_freq,
                         float(attention_factor), m.training_note(factor), [*notes, *prepared.notes])


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)  # same file system: no bytes copied, the weights are identical by construction
    except OSError:
        shutil.copy2(src, dst)


def extend_checkpoint(
    src: str | os.PathLike, out: str | os.PathLike, *, method: str = "auto", target_length: int | None = None,
    factor: float | None = None, overwrite: bool = False, **method_params,
) -> dict:
    """Write ``out``: ``src`` with rescaled RoPE. Returns the ``rope_parameters`` written.

    Weights must be safetensors (hard-linked when possible, never loaded); pickle-only checkpoints
    are refused. ``out`` appears complete or not at all.
    """
    raw, path = read_config(src)
    plan = plan_extension(raw, path, method=method, target_length=target_length, factor=factor, **method_params)
    write_extension(src, out, raw, path, plan, overwrite=overwrite)
    return plan.rope_parameters


def write_extension(src: str | os.PathLike, out: str | os.PathLike, raw: dict, config_path: Path,
                    plan: ExtensionPlan, *, overwrite: bool = False) -> None:
    """Write ``out``: ``src`` with ``plan`` applied to its config (``raw``, read from ``config_path``).

    For callers that already hold the plan (``longctx extend`` prints it first), so it is neither
    re-read nor re-derived.
    """
    src, out = Path(src), Path(out)
    check_out_vs_inputs(out, [src])
    safetensors, pickles = require_safetensors(src)
    check_weight_files(safetensors)  # a truncated file must not be linked into a checkpoint that looks complete
    skip = {Path(config_path).resolve(), (src / OUTPUT_MARKER).resolve(), *(p.resolve() for p in pickles)}
    with atomic_dir(out, overwrite=overwrite, command="extend") as tmp:
        for p in sorted(src.rglob("*")):
            if not p.is_file() or p.resolve() in skip:
                continue
            dst = tmp / p.relative_to(src)
            if p.name.endswith(".safetensors"):
                _link_or_copy(p, dst)
            else:
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(p, dst)
        atomic_write_json(tmp / "config.json", patch_config(raw, plan.rope_parameters, plan.max_position_embeddings))


def effective_rope(model_dir: str | os.PathLike) -> tuple[RopeConfig, torch.Tensor, float]:
    """The checkpoint's RoPE and its frequencies at its full context (for inspect and eval)."""
    raw, path = read_config(model_dir)
    rc = read_rope_config(raw, path)
    m = get_method(rc.rope_type)
    factor = float(rc.params.get("factor", 1.0) or 1.0)
    if m.factor_from_lengths and "factor" not in rc.params:
        factor = rc.max_position_embeddings / rc.original_length
    kw = dict(base=rc.rope_theta, head_dim=rc.head_dim, partial_rotary_factor=rc.partial_rotary_factor,
              original_length=rc.original_length, factor=factor)
    extra = {k: v for k, v in rc.params.items() if k in m.param_names}
    if m.seq_len_dependent:
        extra["seq_len"] = rc.context_length
    inv_freq, attn = m.fn(**kw, **extra)
    if not math.isfinite(attn):
        raise LongctxError(f"{path}: rope parameters give a non-finite attention factor")
    return rc, inv_freq, attn
