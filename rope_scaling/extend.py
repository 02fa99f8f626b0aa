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

from longctx.errors import LongctxError, where
from longctx.io import atomic_dir, atomic_write_json
from rope_scaling.base_selection import critical_base, lower_bound_base
from rope_scaling.basic import ntk_base
from rope_scaling.checkpoint_config import SUPPORTED, RopeConfig, patch_config, read_config, read_rope_config
from rope_scaling.common import check_factor, default_inv_freq
from rope_scaling.explain import PairRow, explain_pairs
from rope_scaling.longrope import yarn_long_factor
from rope_scaling.registry import METHODS, get_method, training_note, validate_params

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
HF_DEFAULTS = {"yarn": {"beta_fast": 32.0, "beta_slow": 1.0}, "llama3": {"low_freq_factor": 1.0, "high_freq_factor": 4.0}}


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


def choose_method(rc: RopeConfig, factor: float, rope_theta: float | None) -> tuple[str, str]:
    """``--method auto``: the method and a sentence saying why."""
    if rope_theta is not None:
        return "abf", "--rope-theta given: adjusted base frequency (ABF) with that base"
    if rc.model_type == "phi3":
        return "longrope", "phi3 loads only default/longrope RoPE in transformers; longrope with YaRN-derived factors"
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


def _as_number(x: float) -> float | int:
    return int(x) if float(x).is_integer() and abs(x) < 2**53 else float(x)


def plan_extension(
    raw: dict, path: object = "config.json", *, method: str = "auto", target_length: int | None = None,
    factor: float | None = None, rope_theta: float | None = None, abf_rule: str = "max", **method_params,
) -> ExtensionPlan:
    """Decide the new ``rope_parameters`` for ``raw`` (a config.json dict) without touching any file."""
    rc = read_rope_config(raw, path)
    target_length, factor = _resolve_lengths(rc, target_length, factor)
    params = {k: v for k, v in method_params.items() if v is not None}
    reason = f"--method {method}"
    if method == "auto":
        method, reason = choose_method(rc, factor, rope_theta)
    m = get_method(method)
    if method == "default":
        raise LongctxError("--method default does not extend the context; choose one of "
                           + ", ".join(n for n in METHODS if n != "default"))
    if rope_theta is not None and method != "abf":
        raise LongctxError(f"--rope-theta only applies to --method abf (got --method {method})")
    validate_params(method, {**params, **({"rope_theta": rope_theta} if rope_theta is not None else {})})
    allowed = SUPPORTED[rc.model_type]
    if allowed is not None and method not in allowed:
        raise LongctxError(f"{where(path, field='model_type')} = {rc.model_type!r}: transformers cannot load "
                           f"--method {method} for it; choose one of {', '.join(sorted(allowed - {'default'}))}")
    notes: list[str] = []
    if rc.rope_type != "default":
        notes.append(f"the source already has rope_type {rc.rope_type!r}; it is replaced, scaled from the trained "
                     f"length {rc.original_length} and base {rc.rope_theta:g}")
    dim = rc.rotary_dim
    common = dict(base=rc.rope_theta, head_dim=rc.head_dim, partial_rotary_factor=rc.partial_rotary_factor,
                  original_length=rc.original_length, factor=factor)
    new_theta = rc.rope_theta
    if method == "ntk":
        new_theta = ntk_base(rc.rope_theta, factor, dim)
    elif method == "abf":
        if rope_theta is None:
            lb = lower_bound_base(target_length, dim=dim, rtol=1e-4)
            cb = critical_base(target_length, dim=dim, train_length=rc.original_length, train_base=rc.rope_theta)
            rope_theta = {"max": max(lb, cb), "lower-bound": lb, "critical": cb}[abf_rule]
            notes.append(f"rope_theta chosen by rule {abf_rule!r}: lower bound (2405.14591) {lb:.4g}, "
                         f"critical base (2310.05209) {cb:.4g}")
        if rope_theta <= rc.rope_theta:
            raise LongctxError(f"rope_theta {rope_theta:.4g} is not above the current base {rc.rope_theta:g}; "
                               "pass a larger --rope-theta")
        new_theta = float(rope_theta)
        params["rope_theta"] = new_theta
    if method == "longrope" and "long_factor" not in params:
        params["long_factor"] = yarn_long_factor(**common)
        notes.append("long_factor: YaRN's per-pair rescale (no LongRoPE search was run); short_factor: all 1")
    if method == "longrope":
        params.setdefault("short_factor", [1.0] * (dim // 2))
    run_len = {"seq_len": target_length} if method in ("dynamic", "longrope") else {}
    new_inv_freq, attention_factor = m.fn(**common, **params, **run_len)

    rope = {"rope_type": m.rope_type, "rope_theta": _as_number(new_theta),
            "partial_rotary_factor": rc.partial_rotary_factor, "original_max_position_embeddings": rc.original_length}
    if m.rope_type != "default":
        rope["factor"] = _as_number(factor)
    rope.update(HF_DEFAULTS.get(method, {}))
    rope.update({k: v for k, v in params.items() if k != "rope_theta"})
    max_pos = rc.original_length if method == "dynamic" else target_length
    if method == "dynamic":
        notes.append(f"max_position_embeddings stays {rc.original_length}: transformers' dynamic rule measures the "
                     f"trained length by it; frequencies rescale at run time beyond it")
    return ExtensionPlan(method, reason, rc, target_length, factor, rope, max_pos,
                         default_inv_freq(rc.rope_theta, dim), new_inv_freq, float(attention_factor),
                         training_note(method, factor), notes)


def weight_files(src: Path) -> tuple[list[Path], list[Path]]:
    """``(safetensors files, pickle files)`` anywhere under ``src``."""
    files = [p for p in Path(src).rglob("*") if p.is_file()]
    return ([p for p in files if p.name.endswith(".safetensors")],
            [p for p in files if p.suffix in PICKLE_SUFFIXES])


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)  # same file system: no bytes copied, the weights are identical by construction
    except OSError:
        shutil.copy2(src, dst)


def extend_checkpoint(
    src: str | os.PathLike, out: str | os.PathLike, *, method: str = "auto", target_length: int | None = None,
    factor: float | None = None, rope_theta: float | None = None, overwrite: bool = False, **method_params,
) -> dict:
    """Write ``out``: ``src`` with rescaled RoPE. Returns the ``rope_parameters`` written.

    Weights must be safetensors (hard-linked when possible, never loaded); pickle-only checkpoints
    are refused. ``out`` appears complete or not at all.
    """
    raw, path = read_config(src)
    plan = plan_extension(raw, path, method=method, target_length=target_length, factor=factor,
                          rope_theta=rope_theta, **method_params)
    write_extension(src, out, raw, path, plan, overwrite=overwrite)
    return plan.rope_parameters


def write_extension(src: str | os.PathLike, out: str | os.PathLike, raw: dict, config_path: Path,
                    plan: ExtensionPlan, *, overwrite: bool = False) -> None:
    """Write ``out``: ``src`` with ``plan`` applied to its config (``raw``, read from ``config_path``).

    For callers that already hold the plan (``longctx extend`` prints it first), so it is neither
    re-read nor re-derived.
    """
    src, out = Path(src), Path(out)
    if out.resolve() == src.resolve():
        raise LongctxError(f"--out {out}: same folder as the source; write the extended checkpoint elsewhere")
    safetensors, pickles = weight_files(src)
    if not safetensors:
        if pickles:
            raise LongctxError(f"{src}: only pickle weights ({pickles[0].name}); longctx never unpickles or re-pickles "
                               "weights (unpickling runs arbitrary code). Convert first: "
                               "AutoModelForCausalLM.from_pretrained(src).save_pretrained(dst, safe_serialization=True)")
        raise LongctxError(f"{src}: no *.safetensors weights found")
    skip = {Path(config_path).resolve(), *(p.resolve() for p in pickles)}
    with atomic_dir(out, overwrite=overwrite) as tmp:
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
    name = rc.rope_type
    m = get_method(name)
    kw = dict(base=rc.rope_theta, head_dim=rc.head_dim, partial_rotary_factor=rc.partial_rotary_factor,
              original_length=rc.original_length, factor=float(rc.params.get("factor", 1.0) or 1.0))
    extra = {k: v for k, v in rc.params.items() if k in m.params}
    if name in ("dynamic", "longrope"):
        extra["seq_len"] = rc.context_length
    if name == "longrope" and "factor" not in rc.params:
        kw["factor"] = rc.max_position_embeddings / rc.original_length
    inv_freq, attn = m.fn(**kw, **extra)
    if not math.isfinite(attn):
        raise LongctxError(f"{path}: rope parameters give a non-finite attention factor")
    return rc, inv_freq, attn
