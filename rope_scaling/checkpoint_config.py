"""Read, normalise and patch a checkpoint's ``config.json`` (v5 ``rope_parameters`` or legacy form).

transformers v5 stores RoPE as ``rope_parameters = {"rope_type", "rope_theta", ...}``; older
files have a top-level ``rope_theta`` and an optional ``rope_scaling`` dict keyed by ``type``.
We read both, describe the model's RoPE in one :class:`RopeConfig`, and write back only the v5
form, always with ``original_max_position_embeddings`` (a yarn dict without it silently gets a
ramp computed from the *new* length).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

from transformers import CONFIG_MAPPING

from longctx.core.errors import LongctxError, where
from longctx.core.io import read_json
from longctx.models.registry import FAMILIES, NO_ROPE, supported
from rope_scaling.registry import METHODS

@dataclass(frozen=True)
class RopeConfig:
    """What a checkpoint's RoPE is, whatever form its config.json used."""

    path: str
    model_type: str
    form: str  # "v5" (rope_parameters) or "legacy" (rope_theta + rope_scaling)
    rope_type: str
    rope_theta: float
    head_dim: int
    partial_rotary_factor: float
    original_length: int  # the context the weights were trained at
    max_position_embeddings: int
    params: dict = field(default_factory=dict)  # every other key of the rope dict (factor, beta_fast, ...)
    conflicts: tuple[str, ...] = ()  # keys of config.json that contradict what transformers loads (one line each)

    @property
    def rotary_dim(self) -> int:
        return int(self.head_dim * self.partial_rotary_factor)

    @property
    def context_length(self) -> int:
        """The context the config claims now (dynamic NTK: original x factor, reached at run time)."""
        if _keeps_trained_length(self.rope_type):
            return int(round(self.original_length * float(self.params.get("factor", 1.0))))
        return self.max_position_embeddings


def _keeps_trained_length(rope_type: str) -> bool:
    """True for a rope_type whose max_position_embeddings stays the trained length (dynamic NTK)."""
    method = METHODS.get(rope_type)
    return method is not None and method.keeps_trained_length


def loadable_types(model_type: str) -> frozenset[str] | None:
    """The rope_types transformers loads for ``model_type`` (None: every type), as its family declares."""
    return FAMILIES[model_type].rope_types


def read_config(model_dir: str | Path) -> tuple[dict, Path]:
    """``(raw dict, path)`` of ``MODEL_DIR/config.json``; a missing or corrupt file is a one-line error."""
    model_dir = Path(model_dir)
    path = model_dir / "config.json"
    if not model_dir.is_dir():
        raise LongctxError(f"{model_dir}: not a directory (expected a Hugging Face checkpoint folder)")
    return read_json(path, missing="missing (not a Hugging Face checkpoint folder?)"), path


def _number(raw: dict, key: str, path: object, kind=float, required: bool = True):
    value = raw.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not float(value).is_integer()):
        raise LongctxError(f"{where(path, field=key)} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    return kind(value)


def _transformers_config(raw: dict, path: object):
    """The config object transformers builds from ``raw`` (its own family defaults and RoPE resolution)."""
    try:
        return CONFIG_MAPPING[raw["model_type"]].from_dict(copy.deepcopy(raw))
    except Exception as err:  # noqa: BLE001 - any failure here is a config the user must fix
        raise LongctxError(f"{path}: transformers cannot build a {raw['model_type']} config from it ({err})") from None


def _short(d: dict) -> str:
    return json.dumps(d, sort_keys=True, default=str)


def rope_conflicts(raw: dict, resolved: dict, path: object) -> tuple[str, ...]:
    """The RoPE keys of ``raw`` that contradict what transformers loads, one line each (empty: none).

    transformers (v5) takes ``rope_scaling`` if it is set, else ``rope_parameters``, then fills
    ``rope_theta`` / ``partial_rotary_factor`` from the top-level keys only where that dict lacks them.
    So a ``rope_parameters`` next to a different ``rope_scaling`` is ignored, and so is a top-level
    ``rope_theta`` next to a dict with its own: a file that says two things.
    """
    out = []
    params, scaling = raw.get("rope_parameters"), raw.get("rope_scaling")
    if scaling and isinstance(params, dict) and params:
        alone = _transformers_config({k: v for k, v in raw.items() if k != "rope_scaling"}, path).rope_parameters
        if dict(alone) != dict(resolved):
            out.append(f"{where(path, field='rope_scaling')} {_short(scaling)} contradicts rope_parameters "
                       f"{_short(params)}; transformers loads rope_scaling and ignores rope_parameters")
    used = scaling if scaling else params
    if isinstance(used, dict):
        used_name = "rope_scaling" if scaling else "rope_parameters"
        for key in ("rope_theta", "partial_rotary_factor"):
            if raw.get(key) is not None and used.get(key) is not None and raw[key] != used[key]:
                out.append(f"{where(path, field=key)} {raw[key]!r} contradicts {used_name}.{key} {used[key]!r}; "
                           f"transformers loads {used_name}.{key} and ignores the top-level {key}")
    return tuple(out)


def refuse_conflicts(rc: "RopeConfig") -> None:
    """Raise :class:`LongctxError` (one line, naming both keys) if the config contradicts itself.

    ``longctx extend`` rewrites the RoPE keys, so building on one reading of a self-contradicting file
    would silently erase the other: the user says which one is meant by deleting the other.
    """
    if rc.conflicts:
        raise LongctxError("; ".join(rc.conflicts) + " (delete the key you do not mean, then rerun)")


def read_rope_config(raw: dict, path: object = "config.json") -> RopeConfig:
    """Normalise either config form into a :class:`RopeConfig`, exactly as transformers resolves it.

    Unknown or RoPE-less models are refused. The RoPE dict is the one transformers' config class ends up
    with (``rope_scaling`` over ``rope_parameters``, top-level ``rope_theta`` only as a fallback); keys
    it ignores are listed in ``conflicts`` (see :func:`rope_conflicts`).
    """
    model_type = raw.get("model_type")
    if not isinstance(model_type, str):
        raise LongctxError(f"{where(path, field='model_type')} missing: cannot tell the architecture")
    if model_type in NO_ROPE:
        raise LongctxError(f"{where(path, field='model_type')} = {model_type!r} has no rotary position "
                           f"embedding ({NO_ROPE[model_type]}); RoPE extension does not apply")
    if model_type not in FAMILIES:
        raise LongctxError(f"{where(path, field='model_type')} = {model_type!r} is not supported "
                           f"(supported: {supported()}); refusing to guess its RoPE layout")
    family = FAMILIES[model_type]
    max_pos = _number(raw, "max_position_embeddings", path, int)
    params, scaling = raw.get("rope_parameters"), raw.get("rope_scaling")
    if params is not None and not isinstance(params, dict):
        raise LongctxError(f"{where(path, field='rope_parameters')} must be an object, got {params!r}")
    if scaling is not None and not isinstance(scaling, dict):
        raise LongctxError(f"{where(path, field='rope_scaling')} must be an object, got {scaling!r}")
    if isinstance(params, dict) and any(isinstance(v, dict) for v in params.values()):
        raise LongctxError(f"{where(path, field='rope_parameters')}: per-layer-type RoPE is not supported")
    form = "legacy" if scaling or not params else "v5"  # transformers: rope_scaling wins when set
    cfg = _transformers_config(raw, path)
    resolved = dict(cfg.rope_parameters or {})
    rope = copy.deepcopy(resolved)
    rope_type = rope.pop("rope_type", None) or rope.pop("type", None) or "default"
    rope.pop("type", None)
    rope_type = family.canonical_rope_type(rope_type)  # what e.g. Phi3Config does with old names (su, yarn)
    theta = _number({"rope_theta": rope.pop("rope_theta", 10000.0)}, "rope_theta", path)
    rope.pop("partial_rotary_factor", None)
    head_dim, partial = family.head_and_partial(cfg)

    original = rope.pop("original_max_position_embeddings", None)
    if family.top_level_original_length and rope_type == "longrope":
        original = raw.get("original_max_position_embeddings", original)  # Phi-3 gives it priority
    if rope_type == "default" or _keeps_trained_length(rope_type) or original is None:
        original = max_pos  # dynamic: transformers measures the trained length by max_position_embeddings
    original = _number({"original_max_position_embeddings": original}, "original_max_position_embeddings", path, int)
    return RopeConfig(str(path), model_type, form, rope_type, theta, head_dim, partial, original, max_pos, rope,
                      rope_conflicts(raw, resolved, path))


def patch_config(raw: dict, rope_parameters: dict, max_position_embeddings: int) -> dict:
    """A new config dict with v5 ``rope_parameters`` and the new length; legacy keys removed.

    ``rope_scaling`` would otherwise win over ``rope_parameters`` when transformers loads the file,
    and a stale top-level ``rope_theta`` would contradict it.
    """
    out = copy.deepcopy(raw)
    out.pop("rope_scaling", None)
    out.pop("rope_theta", None)
    out["rope_parameters"] = copy.deepcopy(rope_parameters)
    out["max_position_embeddings"] = int(max_position_embeddings)
    family = FAMILIES.get(out.get("model_type"))
    if family is not None and family.top_level_original_length and "original_max_position_embeddings" in rope_parameters:
        out["original_max_position_embeddings"] = int(rope_parameters["original_max_position_embeddings"])
    return out
