"""Training configuration: nested, documented dataclasses; a YAML file plus ``--set`` overrides.

Every field says its unit and sentinels. ``load_config(path, overrides)`` reads YAML, applies
``key=value`` overrides with dotted keys (``optim.lr=1e-5``; a bare ``lr=1e-5`` is accepted when
the name is unique across sections), type-checks every value and runs :func:`validate`, so a bad
run fails before any process group or model is created, with an error that names the field.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import math
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from longctx.core.errors import LongctxError
from longctx.core.io import read_yaml
from longctx.distributed.layouts import DEFAULT_LAYOUT, LAYOUTS, degree_keys, get_layout, layouts_help
from longctx.distributed.layouts.choose import AUTO, fallback_layout


@dataclass
class ModelConfig:
    path: str = ""
    """Hugging Face checkpoint directory to continue training (usually the output of `longctx extend`)."""
    attn_implementation: str = "auto"
    """"auto": longctx_ring when sp_degree > 1, else longctx_varlen (packed) / sdpa; or any name
    registered with transformers' AttentionInterface ("sdpa", "eager", "longctx_varlen", ...)."""
    gradient_checkpointing: bool = False
    """Recompute each decoder layer in the backward pass (trades ~30% time for activation memory)."""
    checkpoint_offload: bool = False
    """Keep the checkpointed layer inputs in host memory (page-locked on CUDA) until backward needs them
    (ALST, arXiv 2506.13996): activation memory on the GPU no longer grows with the number of layers.
    Needs gradient_checkpointing. On a CPU-only run host memory is the same memory: no saving (the
    planner counts none), the code path still runs."""
    dtype: str = "auto"
    """Parameter/compute dtype: "auto" = bf16 autocast on CUDA, float32 on CPU; or "float32"/"bfloat16"."""


@dataclass
class DataConfig:
    path: str = ""
    """Pack directory written by `longctx pack` (datasets Arrow + manifest.json)."""
    mode: str = "pack"
    """"pack": one pack per row (LongAlign packing; the manifest's mode name); "sorted": unpack the
    sequences and batch sequences of similar length together (LongAlign sorted batching); "padded":
    random batches padded to their longest sequence (the naive baseline). "packed" is read as "pack"
    (deprecated)."""
    batch_tokens: int = 0
    """sorted/padded modes: token budget of one micro-batch (rows x longest row); 0 = pack length."""
    shuffle: bool = True
    """Shuffle the order of packs (or of sorted batches) every epoch, deterministically from train.seed."""


@dataclass
class ParallelConfig:
    sp_degree: int = 1
    """Sequence-parallel degree: ranks that share one pack (ring attention). Must divide the world size;
    the data-parallel degree is world_size / sp_degree."""
    layout: str = DEFAULT_LAYOUT
    """How a pack is split over the sequence-parallel ranks: a row of the layout registry
    (``longctx.distributed.layouts``; the pack length must be a multiple of its unit), or "auto":
    chosen from what the rows declare (documents per pack, unit, head constraint, preference) and
    the model's heads, and logged. The layouts:"""
    ulysses_degree: int = 0
    """layout usp only (its row declares this key): ranks per Ulysses (all-to-all) group, dividing
    sp_degree and the attention heads; the ring degree is sp_degree / ulysses_degree. 0 = gcd(sp_degree, KV heads)."""
    timeout_s: int = 0
    """Seconds a collective waits for the other ranks before failing (the process group's timeout): a lost
    node then ends the run with an error instead of a hang. 0 = PyTorch's default (10 min NCCL, 30 min gloo)."""
    fsdp: bool = False
    """Shard parameters, gradients and AdamW states over all ranks with FSDP2 (torch fully_shard, the engine
    behind accelerate's FSDP2 plugin); tested on CPU/gloo, unverified on CUDA."""


@dataclass
class OptimConfig:
    lr: float = 2e-5
    """Peak learning rate of AdamW (after warmup)."""
    min_lr_ratio: float = 0.1
    """Cosine decays to lr * min_lr_ratio at the last step."""
    warmup_steps: int = 0
    """Linear warmup from 0 over this many optimizer steps."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay."""
    beta1: float = 0.9
    """AdamW beta1."""
    beta2: float = 0.95
    """AdamW beta2."""
    eps: float = 1e-8
    """AdamW epsilon."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value; 0 disables clipping."""


@dataclass
class TrainConfig:
    steps: int = 100
    """Number of optimizer steps for the whole run (resumes continue towards this number)."""
    micro_batch: int = 1
    """Packs (rows) per forward pass per data-parallel rank (pack mode)."""
    grad_accum: int = 1
    """Micro-batches accumulated per optimizer step on each data-parallel rank."""
    loss: str = "weighted"
    """"weighted": LongAlign loss weighting, every sequence counts equally in the optimizer step
    (sum of per-token weights 1/N_i, divided by the global sequence count M); "token": mean over all
    target tokens of the optimizer step."""
    loss_chunk: int = 0
    """Tokens per chunk of the output-head + cross-entropy computation (full logits are never built);
    0 or "auto" = min(hidden, 2^23 / vocab) rounded down to a multiple of 64 (``longctx.core.loss.auto_loss_chunk``:
    one chunk's fp32 logits never exceed the head's size nor 32 MiB)."""
    tiled_mlp: bool = False
    """Run each decoder layer's MLP over sequence tiles, recomputing each tile in backward (ALST TiledMLP):
    the MLP's intermediate activations exist for one tile only. Exact (same gradients up to float
    summation order). Llama/Qwen2/Mistral-style per-token MLPs; not with parallel.fsdp yet."""
    mlp_tiles: int = 0
    """Tiles for train.tiled_mlp; 0 = ALST's ceil(tokens / hidden_size) per forward."""
    seed: int = 0
    """Seed for data order and every RNG."""


PEFT_METHODS = ("none", "lora")
ALL_LINEAR = "all-linear"


@dataclass
class PeftConfig:
    method: str = "none"
    """"none": full fine-tuning (every weight trains); "lora": Hugging Face PEFT LoRA adapters on
    peft.target_modules, the base weights frozen (no gradients, no AdamW states): needs the ``lora`` extra
    (pip install 'longctx-align[lora]')."""
    r: int = 8
    """LoRA rank (>= 1): the inner dimension of each adapter's A (r x in) and B (out x r) matrices."""
    alpha: float = 16.0
    """LoRA alpha: the adapter's update is scaled by alpha / r."""
    dropout: float = 0.0
    """Dropout on the adapter's input, in [0, 1) (0 keeps a step deterministic across SP layouts)."""
    target_modules: list[str] = field(default_factory=list)
    """Leaf names of the linear modules to adapt ("q_proj,v_proj"), or ["all-linear"] (PEFT's spelling: every
    linear layer but the output head); [] = the attention projections the model family declares
    (q_proj, k_proj, v_proj, o_proj for Llama; ``longctx/models``)."""
    train_embeddings_norms: bool | None = None
    """Also train the input embeddings (and a head tied to them) and every norm in full (LongLoRA's "LoRA+",
    arXiv 2309.12307: context extension with LoRA alone leaves a perplexity gap), as PEFT modules_to_save.
    null or "auto" = on when the checkpoint's RoPE was extended (its rope parameters name a rope_type other than
    default, or original_max_position_embeddings), with the reason in the log."""

    @property
    def enabled(self) -> bool:
        return self.method != "none"


@dataclass
class CheckpointConfig:
    out: str = ""
    """Run directory: checkpoints/, metrics.jsonl, config.yaml and the final model in final/."""
    every: int = 0
    """Save a resumable checkpoint every this many optimizer steps; 0 = only on signals and at the end."""
    keep_last: int = 2
    """Keep this many most recent checkpoints (older ones are deleted after a new one is complete)."""
    resume: bool = True
    """Resume from the newest complete checkpoint in out/checkpoints when one exists."""
    export: str = "merged"
    """What out/final holds at the end: "merged" (a plain Hugging Face checkpoint, safetensors + extended rope
    config; with peft.method lora the adapters merged into the base, loadable without PEFT), "adapter" (peft
    only: the PEFT adapter folder, for PeftModel.from_pretrained onto model.path), or "none". true/false are
    read as merged/none."""
    allow_config_change: bool = False
    """Resume even though the config differs from the one the checkpoint was saved with (the changes are
    logged). Without it a resume that changes a key affecting the result (optimizer, schedule, steps, data,
    parallelism, model) is refused; keys in RESUME_NEUTRAL_KEYS (logging, checkpoint cadence) may always change."""


@dataclass
class LogConfig:
    every: int = 1
    """Write a metrics line every this many optimizer steps."""
    progress: bool = True
    """Show a tqdm progress bar (loss, tokens/s, ETA) on rank 0."""
    tensorboard: bool = True
    """Also write TensorBoard scalars to out/tb when the tensorboard package is installed."""


@dataclass
class EvalConfig:
    every: int = 0
    """Evaluate every this many optimizer steps; 0 = never during training. When evaluation is on (every > 0
    or at_end) the step-0 model is evaluated first: the base values the curves and the guard start from."""
    passkey_lengths: list[int] = field(default_factory=list)
    """Passkey prompt lengths in tokens (eval_longbench's passkey prompts, greedy, exact 5-digit match)."""
    samples: int = 10
    """Passkey prompts per length, spread evenly over ``depths`` needle depths; the same prompts every time."""
    depths: int = 5
    """Needle depths per length, evenly spaced from 0 (start) to 1 (end) of the haystack."""
    ppl_lengths: list[int] = field(default_factory=list)
    """Sliding-window perplexity lengths in tokens; every length scores the same span (the longest length)."""
    ppl_text: str = "builtin"
    """Text scored by the perplexity: "builtin" (eval_longbench's seeded noise sentences: periodic, easy)
    or the path of a UTF-8 text file or a directory of *.txt files."""
    ppl_stride: int = 0
    """Tokens each perplexity window moves by; 0 = half the window."""
    guard_length: int = 0
    """Short-context guard: passkey and perplexity at this length, compared with the base model (step 0);
    0 = the checkpoint's original window (rope original_max_position_embeddings, else max_position_embeddings)."""
    stop_at: float | None = None
    """null, or a passkey accuracy in (0, 1]: stop once the longest passkey length reaches it (checkpoint and
    export as at a normal end)."""
    at_end: bool = False
    """Also evaluate after the last step (unless it was an evaluation step already); alone (every: 0) it
    evaluates the base at step 0 and the final model only."""
    prompt: str = "auto"
    """"auto": wrap passkey prompts in the tokenizer's chat template when it has one; "chat"; or "plain"."""
    max_new_tokens: int = 24
    """Greedy tokens generated per passkey prompt (a chat reply "The pass key is 12345." needs 22 bytes)."""
    batch_size: int = 8
    """Passkey prompts of equal token length decoded together in one generate call."""
    seed: int = 0
    """Seed of the passkey prompts (eval_longbench.needle.sample_seed; independent of train.seed)."""

    @property
    def enabled(self) -> bool:
        return self.every > 0 or self.at_end


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    peft: PeftConfig = field(default_factory=PeftConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    force: bool = False
    """Train even when the memory planner (longctx.plan) says the run does not fit."""
    plan_gpu_mem_gib: float = 0.0
    """GPU memory the planner checks against (GiB); 0 = the CUDA device's own memory (no check on CPU)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SECTIONS = [f.name for f in dataclasses.fields(RunConfig) if dataclasses.is_dataclass(f.default_factory)]  # type: ignore[arg-type]
DATA_MODES = ("pack", "sorted", "padded")
DEPRECATED_DATA_MODES = {"packed": "pack"}
"""Old data.mode names still accepted in configs: normalised when the config is read, with a warning."""
LOSSES = ("weighted", "token")
DTYPES = ("auto", "float32", "bfloat16")


def _coerce(value: Any, typ: Any, name: str, where: str) -> Any:
    """Convert a YAML/CLI value to the field's type, or raise naming the field."""
    args = typing.get_args(typ)
    if type(None) in args:  # ``X | None``: YAML null (or the text "null"/"none") is None
        if value is None or (isinstance(value, str) and value.strip().lower() in ("null", "none", "")):
            return None
        return _coerce(value, next(a for a in args if a is not type(None)), name, where)
    if typing.get_origin(typ) is list:  # a YAML list, or "512,2048" from --set
        items = [v for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        if isinstance(items, (list, tuple)):
            return [_coerce(v, args[0], f"{name}[{i}]", where) for i, v in enumerate(items)]
        raise LongctxError(f"{where}: {name}: expected a list of {args[0].__name__}, got {value!r}")
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif typ is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    raise LongctxError(f"{where}: {name}: expected {typ.__name__}, got {value!r}")


def _boolish(value: Any) -> bool:
    return isinstance(value, bool) or (isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"))


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


AUTO_ZERO_KEYS = frozenset({"train.loss_chunk"})
"""Integer keys whose 0 means "choose automatically": the string "auto" is read as 0."""
AUTO_NONE_KEYS = frozenset({"peft.train_embeddings_norms"})
"""Optional keys whose null means "choose automatically": the string "auto" is read as null."""
EXPORTS = ("merged", "adapter", "none")
_EXPORT_BOOLS = {True: "merged", False: "none"}
"""checkpoint.export was a bool before the adapter export: true/false still read as merged/none."""


def _set(cfg: Any, dotted: str, value: Any, where: str) -> None:
    """Set ``section.key`` (or a bare ``key`` unique across sections) of the dataclass ``cfg`` to ``value``,
    converted to the field's type; raise naming the key. The one ``--set`` setter: a :class:`RunConfig`,
    or any other dataclass of settings (sections are its dataclass-valued fields; it may have none)."""
    sections = [f.name for f in dataclasses.fields(cfg) if dataclasses.is_dataclass(getattr(cfg, f.name))]
    parts = dotted.split(".")
    if len(parts) == 1:  # bare name: top-level field or a unique field of one section
        name = parts[0]
        if name in _field_types(type(cfg)) and name not in sections:
            parts = [name]
        else:
            owners = [s for s in sections if name in _field_types(type(getattr(cfg, s)))]
            if len(owners) != 1:
                hint = (f"ambiguous, use one of {', '.join(f'{o}.{name}' for o in owners)}" if owners else "unknown key"
                        + ("" if sections else f" (known: {', '.join(_field_types(type(cfg)))})"))
                raise LongctxError(f"{where}: {name}: {hint}")
            parts = [owners[0], name]
    target: Any = cfg
    for i, part in enumerate(parts[:-1]):
        if part not in sections or i > 0:
            raise LongctxError(f"{where}: {dotted}: unknown section {part!r} (sections: {', '.join(sections)})")
        target = getattr(target, part)
    types = _field_types(type(target))
    name = parts[-1]
    if name not in types or name in sections:
        raise LongctxError(f"{where}: {dotted}: unknown key (known: {', '.join(sorted(types))})")
    if isinstance(value, str) and value.strip().lower() == "auto" and f"{parts[0]}.{name}" in AUTO_ZERO_KEYS:
        value = 0
    if isinstance(value, str) and value.strip().lower() == "auto" and f"{parts[0]}.{name}" in AUTO_NONE_KEYS:
        value = None
    if isinstance(target, CheckpointConfig) and name == "export":
        value = _EXPORT_BOOLS.get(_coerce(value, bool, dotted, where) if _boolish(value) else value, value)
    value = _coerce(value, types[name], dotted, where)
    if isinstance(target, DataConfig) and name == "mode" and value in DEPRECATED_DATA_MODES:
        new = DEPRECATED_DATA_MODES[value]
        warnings.warn(f"{where}: data.mode: {value!r} is deprecated, use {new!r}", FutureWarning, stacklevel=2)
        value = new
    setattr(target, name, value)


def from_dict(raw: dict[str, Any], where: str = "<config>") -> RunConfig:
    """Build a RunConfig from a nested dict (as read from YAML); unknown keys are errors."""
    cfg = RunConfig()
    if raw is None:
        return cfg
    if not isinstance(raw, dict):
        raise LongctxError(f"{where}: the top level must be a mapping of sections")
    for key, value in raw.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise LongctxError(f"{where}: {key}: expected a mapping of fields, got {value!r}")
            for sub, v in value.items():
                _set(cfg, f"{key}.{sub}", v, where)
        else:
            _set(cfg, str(key), value, where)
    return cfg


def parse_override(text: str) -> tuple[str, Any]:
    """``"optim.lr=1e-5"`` -> ("optim.lr", 1e-5); the value is parsed as YAML (numbers, bools)."""
    if "=" not in text:
        raise LongctxError(f"--set {text!r}: expected key=value, e.g. optim.lr=1e-5")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value) if value.strip() else ""


def apply_overrides(cfg: Any, overrides: list[str]) -> Any:
    """Apply ``--set key=value`` items to the dataclass ``cfg`` (in order) with :func:`_set`; returns ``cfg``."""
    for text in overrides:
        key, value = parse_override(text)
        _set(cfg, key, value, f"--set {text}")
    return cfg


def load_config(path: str | Path | None, overrides: list[str] | None = None, *, validate_now: bool = True) -> RunConfig:
    """Read ``path`` (YAML), apply ``--set`` overrides, and validate (static checks only)."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = read_yaml(path) or {}
    cfg = apply_overrides(from_dict(raw, str(path or "<config>")), overrides or [])
    if validate_now:
        validate(cfg)
    return cfg


def validate(cfg: RunConfig, world_size: int | None = None, pack_length: int | None = None, where: str = "config") -> None:
    """Static checks that need no model and no process group; raise naming the field to fix."""
    def bad(name: str, msg: str) -> LongctxError:
        return LongctxError(f"{where}: {name}: {msg}")

    c = cfg
    if c.data.mode not in DATA_MODES:
        raise bad("data.mode", f"{c.data.mode!r} is not one of {', '.join(DATA_MODES)}")
    if c.parallel.layout not in LAYOUTS and c.parallel.layout != AUTO:
        raise bad("parallel.layout", f"{c.parallel.layout!r} is not one of {', '.join(LAYOUTS)}, {AUTO}")
    degrees = {key: getattr(c.parallel, key) for key in degree_keys()}  # each row's own degree key
    for key, row in degree_keys().items():
        if degrees[key] and c.parallel.layout != row.name:
            raise bad(f"parallel.{key}", f"{degrees[key]} is for parallel.layout: {row.name} only "
                      f"(layout is {c.parallel.layout})")
    if c.train.loss not in LOSSES:
        raise bad("train.loss", f"{c.train.loss!r} is not one of {', '.join(LOSSES)}")
    if c.model.dtype not in DTYPES:
        raise bad("model.dtype", f"{c.model.dtype!r} is not one of {', '.join(DTYPES)}")
    for name, value, lo in [("parallel.sp_degree", c.parallel.sp_degree, 1), ("train.steps", c.train.steps, 1),
                            ("train.micro_batch", c.train.micro_batch, 1), ("train.grad_accum", c.train.grad_accum, 1),
                            ("train.loss_chunk", c.train.loss_chunk, 0),
                            ("train.mlp_tiles", c.train.mlp_tiles, 0), ("checkpoint.keep_last", c.checkpoint.keep_last, 1),
                            ("checkpoint.every", c.checkpoint.every, 0), ("optim.warmup_steps", c.optim.warmup_steps, 0),
                            ("data.batch_tokens", c.data.batch_tokens, 0), ("log.every", c.log.every, 1),
                            *((f"parallel.{key}", value, 0) for key, value in degrees.items()),
                            ("parallel.timeout_s", c.parallel.timeout_s, 0)]:
        if value < lo:
            raise bad(name, f"must be >= {lo}, got {value}")
    for name, value in _float_fields(c):
        if not math.isfinite(value):
            raise bad(name, f"must be a finite number, got {value}")
    if c.plan_gpu_mem_gib < 0:
        raise bad("plan_gpu_mem_gib", f"must be >= 0 (0 = the device's memory), got {c.plan_gpu_mem_gib}")
    if not c.optim.lr > 0:
        raise bad("optim.lr", f"must be > 0, got {c.optim.lr}")
    if not 0 <= c.optim.min_lr_ratio <= 1:
        raise bad("optim.min_lr_ratio", f"must be in [0, 1], got {c.optim.min_lr_ratio}")
    if c.optim.grad_clip < 0:
        raise bad("optim.grad_clip", f"must be >= 0 (0 disables), got {c.optim.grad_clip}")
    if c.optim.weight_decay < 0:
        raise bad("optim.weight_decay", f"must be >= 0, got {c.optim.weight_decay}")
    for name, value in (("optim.beta1", c.optim.beta1), ("optim.beta2", c.optim.beta2)):
        if not 0 <= value < 1:
            raise bad(name, f"must be in [0, 1), got {value}")
    if not c.optim.eps > 0:
        raise bad("optim.eps", f"must be > 0, got {c.optim.eps}")
    _validate_eval(c.eval, bad)
    _validate_peft(c.peft, bad)
    if c.checkpoint.export not in EXPORTS:
        raise bad("checkpoint.export", f"{c.checkpoint.export!r} is not one of {', '.join(EXPORTS)}")
    if c.checkpoint.export == "adapter" and not c.peft.enabled:
        raise bad("checkpoint.export", "adapter exports the PEFT adapter, so it needs peft.method: lora")
    if c.model.checkpoint_offload and not c.model.gradient_checkpointing:
        raise bad("model.checkpoint_offload", "offloads the checkpointed layer inputs, so it needs "
                  "model.gradient_checkpointing: true")
    if c.train.mlp_tiles and not c.train.tiled_mlp:
        raise bad("train.mlp_tiles", f"{c.train.mlp_tiles} tiles set but train.tiled_mlp is false; enable it")
    if c.train.tiled_mlp and c.parallel.fsdp:
        raise bad("train.tiled_mlp", "not supported with parallel.fsdp yet (the tiled backward accumulates "
                  "parameter gradients outside FSDP's hooks)")
    sp = c.parallel.sp_degree
    if sp > 1 and c.data.mode != "pack":
        raise bad("data.mode", f"{c.data.mode!r} batches rows of different lengths, which sequence parallelism "
                  f"(parallel.sp_degree={sp}) cannot shard; use data.mode: pack")
    if world_size is not None and world_size % sp:
        raise bad("parallel.sp_degree", f"{sp} does not divide the world size {world_size}")
    for key, row in degree_keys().items():
        why = row.split.check(degrees[key], sp, None) if degrees[key] else None
        if why:
            raise bad(f"parallel.{key}", why)
    if pack_length is not None and sp > 1:
        # auto may always fall back to its last resort: the pack length must suit that row at least
        layout = fallback_layout() if c.parallel.layout == AUTO else get_layout(c.parallel.layout)
        unit = layout.unit(sp)
        if pack_length % unit:
            raise bad("parallel.layout", f"pack length {pack_length} is not divisible by {unit} "
                      f"({layout.unit_formula}, sp = sp_degree {sp}) for the "
                      f"{c.parallel.layout} layout; re-pack with a pack length that is a multiple of {unit}")


def _validate_peft(p: PeftConfig, bad: Callable[[str, str], LongctxError]) -> None:
    """The ``peft`` section's static checks (whether each target matches a module is checked on the model)."""
    if p.method not in PEFT_METHODS:
        raise bad("peft.method", f"{p.method!r} is not one of {', '.join(PEFT_METHODS)}")
    if p.r < 1:
        raise bad("peft.r", f"the LoRA rank must be >= 1, got {p.r}")
    if not p.alpha > 0:
        raise bad("peft.alpha", f"must be > 0, got {p.alpha}")
    if not 0 <= p.dropout < 1:
        raise bad("peft.dropout", f"must be in [0, 1), got {p.dropout}")
    names = [t.strip() for t in p.target_modules]
    if any(not t or not t.replace("_", "").replace("-", "").isalnum() for t in names):
        raise bad("peft.target_modules", f"expected leaf module names (e.g. q_proj,v_proj) or {ALL_LINEAR}, "
                  f"got {p.target_modules}")
    if ALL_LINEAR in names and len(names) > 1:
        raise bad("peft.target_modules", f"{ALL_LINEAR} already adapts every linear layer; give it alone")


EVAL_PROMPTS = ("auto", "chat", "plain")


def _validate_eval(e: EvalConfig, bad: Callable[[str, str], LongctxError]) -> None:
    """The ``eval`` section's static checks (the text file and prompt fit are checked when training starts)."""
    for name, value, lo in [("eval.every", e.every, 0), ("eval.samples", e.samples, 1), ("eval.depths", e.depths, 1),
                            ("eval.ppl_stride", e.ppl_stride, 0), ("eval.guard_length", e.guard_length, 0),
                            ("eval.max_new_tokens", e.max_new_tokens, 1), ("eval.batch_size", e.batch_size, 1)]:
        if value < lo:
            raise bad(name, f"must be >= {lo}, got {value}")
    for name, lengths, lo in (("eval.passkey_lengths", e.passkey_lengths, 1), ("eval.ppl_lengths", e.ppl_lengths, 2)):
        if any(n < lo for n in lengths):
            raise bad(name, f"every length must be >= {lo} tokens, got {lengths}")
    if e.prompt not in EVAL_PROMPTS:
        raise bad("eval.prompt", f"{e.prompt!r} is not one of {', '.join(EVAL_PROMPTS)}")
    if not e.ppl_text:
        raise bad("eval.ppl_text", "must be 'builtin' or a text file/directory path")
    if e.stop_at is not None:
        if not (math.isfinite(e.stop_at) and 0 < e.stop_at <= 1):
            raise bad("eval.stop_at", f"must be null or an accuracy in (0, 1], got {e.stop_at}")
        if not e.passkey_lengths:
            raise bad("eval.stop_at", "needs eval.passkey_lengths (it watches the longest one)")
        if e.every < 1:
            raise bad("eval.stop_at", "needs eval.every >= 1 (it is checked at each evaluation)")


def _float_fields(cfg: RunConfig) -> list[tuple[str, float]]:
    """Every float-typed field as (dotted name, value): a NaN/inf there would train a NaN model."""
    out = [(f.name, getattr(cfg, f.name)) for f in dataclasses.fields(RunConfig) if _field_types(RunConfig)[f.name] is float]
    for s in SECTIONS:
        sec = getattr(cfg, s)
        out += [(f"{s}.{n}", getattr(sec, n)) for n, t in _field_types(type(sec)).items() if t is float]
    return out


RESUME_NEUTRAL_KEYS = frozenset({
    "log.every", "log.progress", "log.tensorboard",
    "checkpoint.out", "checkpoint.every", "checkpoint.keep_last", "checkpoint.resume", "checkpoint.export",
    "checkpoint.allow_config_change", "force", "plan_gpu_mem_gib", "model.gradient_checkpointing",
    "model.checkpoint_offload", "train.tiled_mlp", "train.mlp_tiles", "train.loss_chunk",
    "parallel.timeout_s",
} | {f"eval.{f.name}" for f in dataclasses.fields(EvalConfig)})
"""Keys a resume may change freely: they decide what is logged, how often checkpoints are written, or
how memory is traded for time, never the weights (gradient checkpointing, its offload and the tiled MLP
recompute the same step; evaluation leaves the training trajectory untouched, eval.stop_at only decides
where it ends).
Every other key, train.steps included (the cosine schedule runs to it), changes the run's result."""

_PATH_KEYS = ("model.path", "data.path")


def flat_keys(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}``: the dotted keys that ``--set``, resume checks and recipe hashes compare."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat_keys(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _same(key: str, a: Any, b: Any) -> bool:
    if key in _PATH_KEYS and isinstance(a, str) and isinstance(b, str) and a and b:
        return Path(a).resolve() == Path(b).resolve()  # "./m" and "/abs/m" are the same model
    return a == b


def config_changes(saved: dict[str, Any], current: RunConfig) -> list[tuple[str, Any, Any]]:
    """``(key, saved value, current value)`` for every result-affecting key that differs, in key order.

    ``saved`` is the nested dict a checkpoint recorded (``RunConfig.to_dict()``); keys it lacks (a config
    key added since) count as their default value.
    """
    old = flat_keys(RunConfig().to_dict()) | flat_keys(saved)
    new = flat_keys(current.to_dict())
    return [(k, old.get(k), v) for k, v in new.items()
            if k not in RESUME_NEUTRAL_KEYS and not _same(k, old.get(k), v)]


def describe_changes(changes: list[tuple[str, Any, Any]]) -> str:
    """``optim.lr 0.001 -> 0.002, parallel.sp_degree 1 -> 2``: one line for a message or a log."""
    return ", ".join(f"{k} {a!r} -> {b!r}" for k, a, b in changes)


def dump_yaml(cfg: RunConfig) -> str:
    """The resolved config, as written beside the checkpoints."""
    return yaml.safe_dump(json.loads(json.dumps(cfg.to_dict())), sort_keys=False)


# Docs whose list lives in a registry, not in this file: a new layout shows up without editing it.
_REGISTRY_DOCS: dict[str, Callable[[], str]] = {"ParallelConfig.layout": layouts_help}


def field_docs() -> dict[str, str]:
    """``section.field`` -> docstring, read from this module's source (for --help and docs)."""
    out: dict[str, str] = {}
    tree = ast.parse(inspect.getsource(__import__(__name__, fromlist=["x"])))
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            body = node.body
            for a, b in zip(body, body[1:]):
                if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant):
                    out[f"{node.name}.{a.target.id}"] = " ".join(str(b.value.value).split())  # type: ignore[attr-defined]
    for key, more in _REGISTRY_DOCS.items():
        out[key] = f"{out[key]} {more()}"
    return out

