"""A recipe file, read and validated up front: every stage's extension, data, trainer keys and evaluation.

A bad value anywhere is ONE :class:`LongctxError` naming the file, the stage and the key, raised
before any model is read or any file written. The checks are the ones the single commands run, not
copies: extensions are planned with :func:`rope_scaling.extend.plan_extension` (the method registry's
declarations) on the config each previous stage would write, trainer keys go through
:func:`longctx.train.config.from_dict` and :func:`~longctx.train.config.validate`.

The format (``configs/recipes/*.yaml`` are worked examples)::

    base: organism              # a checkpoint directory; "organism" = the shipped tiny model
    seed: 0
    eval: {passkey_lengths: [512, 2048], samples: 20, depths: 5, ppl_lengths: [512, 2048]}  # defaults
    plan: {gpus: 8, gpu_mem_gib: 80, model: llama-3-8b}   # optional memory check (longctx plan)
    stages:
      - name: 2k
        extend: {method: yarn, factor: 4}   # or target_length; method params by registry name
        data:
          sources: [{passkey: {records: 200}}, {jsonl: my.jsonl}]
          pack_length: 2048                 # default: the stage's context
          short_share: 0.2                  # of the synthetic records, drawn at <= the base context
        train: {steps: 60, lr: 1e-3, sp_degree: 2, eval: {...}}   # longctx train keys
        eval: {passkey_lengths: [512, 2048]}                        # after-stage evaluation
      - name: pi-x4
        from: base                          # default: the previous stage's trained model
        extend: {method: linear, factor: 4}
        data: {sources: [{passkey: {records: 200, stream: shared}}]}   # same stream + lengths: shared packs
        eval_extended: true                 # evaluate the extended model before training too

``base: {tiny: {family, seed, hidden_size, ...}}`` is a random checkpoint the run makes first
(:func:`longctx.models.tiny.make_tiny_checkpoint`, ``longctx make-tiny``); ``extend: none`` trains the
stage's input at its own context (pretraining); a ``{pretrain: {...}}`` data source writes the shipped
model's pretraining rows straight into packs (:mod:`longctx.recipe.pretrain_data`);
``eval: false`` (top level: every evaluation, the base's included) skips the after-stage evaluation;
``train: false`` makes a training-free stage (its output is the extended model; it has no ``data``).

Both ``eval`` sections are the trainer's eval spec (:class:`longctx.train.config.EvalConfig`: the same
keys, meanings and checks as a stage's ``train.eval``), limited to the keys an after-stage evaluation
uses (:data:`EVAL_KEYS`): ``samples`` is prompts per length, spread evenly over ``depths``.
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from longctx.core.errors import LongctxError
from longctx.core.io import read_yaml
from longctx.models.organism import shipped_model_dir
from longctx.models.tiny import tiny_config
from longctx.plan import RunShape, load_model_shape, plan_run
from longctx.plan.options import lora_fields
from longctx.train.config import EvalConfig, flat_keys, from_dict, parse_override, validate
from longctx.train.lora import embeddings_norms_on
from rope_scaling.checkpoint_config import patch_config, read_config
from rope_scaling.extend import plan_extension
from rope_scaling.registry import get_method, validate_params

TOP_KEYS = ("base", "seed", "eval", "plan", "stages", "description")
TINY_KEYS = ("family", "seed", "hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size",
             "max_position_embeddings", "rope_theta")
"""``base: {tiny: {...}}``: the arguments of :func:`longctx.models.tiny.make_tiny_checkpoint` (``longctx make-tiny``)."""
STAGE_KEYS = ("name", "from", "extend", "data", "train", "eval", "eval_extended")
BASE = "base"
"""``from: base``: the stage starts from the recipe's base model (the name no stage may take)."""
NO_EXTENSION = "none"
"""``extend: none``: the stage trains its input model as it is (no RoPE change)."""
PRETRAIN_KEYS = ("rows", "mixed", "min_len", "answer_weight")
"""A ``pretrain`` data source: ``rows`` of the organism's pretraining data (one conversation of exactly the pack
length per row; ``mixed: true``: packs filled with conversations of ``min_len``..pack length tokens)."""
HAYSTACKS = ("noise", "bible")
"""Named haystacks of the synthetic records (else a text file's path)."""
DATA_KEYS = ("sources", "pack_length", "short_share", "short_min_tokens", "train_on")
EVAL_KEYS = ("passkey_lengths", "samples", "depths", "ppl_lengths", "ppl_stride", "seed", "max_new_tokens")
"""The keys of the trainer's eval spec an after-stage evaluation uses (the others are about evaluation during
training: a stage's ``train.eval``). It always asks in the chat template and scores the builtin noise text."""
PLAN_KEYS = ("model", "gpus", "gpu_mem_gib", "sharding", "gpu")
OWNED_TRAIN_KEYS = ("model.path", "data.path", "checkpoint.out")
"""Trainer keys the recipe sets itself: the previous stage's model, this stage's packs and folder."""

RECIPE_TRAIN_DEFAULTS: dict[str, Any] = {
    "model.attn_implementation": "auto",  # longctx_ring with sp_degree > 1
    "parallel.layout": "varlen",  # packs hold several conversations
    "checkpoint.every": 25,  # a rerun continues from the last of these (or from the one a signal wrote)
    "checkpoint.keep_last": 1,
    "log.tensorboard": False,
}
"""What a stage's ``train`` starts from (the trainer's own defaults below these); the stage's keys win."""


RECIPE_EVAL_DEFAULTS: dict[str, Any] = {"samples": 20, "depths": 5, "ppl_stride": 256}
"""What a recipe's ``eval`` starts from (the trainer's defaults below these, the recipe's ``seed`` as the eval
seed): n = 20 prompts per length, 4 at each of 5 depths; perplexity windows moving by 256 tokens. The
passkey lengths are windows: prompt + chat template + reply fill each exactly."""


@dataclass
class DataSpec:
    pack_length: int
    passkey_records: int = 0
    """Synthetic passkey conversations (the quick start's generator); 0 = none."""
    passkey_min_tokens: int = 0
    passkey_max_tokens: int = 0
    passkey_edge_share: float = 0.0
    """Share of the long passkey records whose needle sits at depth 0 or 100 % (the rest: uniform)."""
    passkey_haystack: str = "noise"
    """What the needles hide in: ``noise`` (the organism's), ``bible`` (the World English Bible, Debian's
    sword-text-web) or a text file: a real model learns retrieval in real text."""
    passkey_qa_share: float = 0.0
    """Share of the synthetic records that ask for one of 4 key-value needles instead of a pass key."""
    pretrain: dict = field(default_factory=dict)
    """The ``pretrain`` source (rows, mixed, min_len, answer_weight); empty: none."""
    passkey_stream: str = ""
    """Name of the records' random stream (with the recipe seed); "" = ``recipe-<stage name>``, the stage's
    own. Stages giving the same stream and the same data keys draw the same records: made and packed once."""
    jsonl: list[str] = field(default_factory=list)
    """User chat JSONL files, packed as given."""
    short_share: float = 0.0
    """Share of the synthetic records drawn at short lengths (short_min_tokens .. base context): they keep
    the short-context skill while the model learns long."""
    short_min_tokens: int = 256
    """Shortest synthetic record (a passkey prompt needs ~160 tokens besides the chat template)."""
    train_on: str = "all"


@dataclass
class StageSpec:
    index: int
    name: str
    method: str
    factor: float | None
    target_length: int | None
    params: dict
    context: int | None
    """The stage's context (max_position_embeddings after extension); None when the base is not on disk."""
    data: DataSpec | None
    """``None``: a training-free stage (``train: false``)."""
    train: dict | None
    """Trainer settings as given (dotted keys / sections; ``eval`` passed through to the trainer); ``None``: the
    stage does not train (``train: false``): its output is its extended model."""
    nproc: int
    eval: EvalConfig | None
    """The after-stage evaluation; ``None``: none (``eval: false``)."""
    start: str = BASE
    """Where the stage starts: ``base`` or an earlier stage's name (whose trained model it extends)."""
    eval_extended: bool = False
    """Also evaluate the extended model before training (the training-free row of a comparison)."""
    embeddings_norms: bool = False
    """A LoRA stage: whether its embeddings and norms train too (peft.train_embeddings_norms, auto resolved on the
    config the stage trains, as the trainer resolves it); what the plan plans. False without LoRA."""

    def key(self) -> str:
        return f"{self.index:02d}-{self.name}"


@dataclass
class Recipe:
    path: str
    base: str
    """The base checkpoint's folder; "" when the run makes it (``base_tiny``)."""
    base_context: int | None
    seed: int
    eval: EvalConfig | None
    """The base's evaluation and every stage's default; ``None``: no evaluation at all (``eval: false``)."""
    plan: dict | None
    stages: list[StageSpec]
    raw: dict
    base_tiny: dict | None = None
    """``base: {tiny: ...}``: the random checkpoint the run makes first (make_tiny_checkpoint's arguments)."""

    def stage(self, name: str) -> StageSpec:
        for s in self.stages:
            if s.name == name:
                return s
        raise LongctxError(f"--from-stage {name}: no such stage in {self.path} (stages: "
                           + ", ".join(s.name for s in self.stages) + ")")

    def to_dict(self) -> dict:
        return {"path": self.path, "base": self.base or {"tiny": self.base_tiny}, "base_context": self.base_context,
                "seed": self.seed,
                "eval": eval_dict(self.eval), "plan": self.plan,
                "stages": [{**asdict(s), "eval": eval_dict(s.eval)} for s in self.stages]}


def eval_dict(ev: EvalConfig | None) -> dict | None:
    """The after-stage keys of an eval spec (:data:`EVAL_KEYS`), as plain JSON (``None``: no evaluation)."""
    return None if ev is None else {k: copy.deepcopy(getattr(ev, k)) for k in EVAL_KEYS}


class _Where:
    """Builds the one-line error prefix ``recipe.yaml: stage '2k': data.short_share``."""

    def __init__(self, path: str, stage: str | None = None):
        self.path, self.stage = path, stage

    @property
    def where(self) -> str:
        """``recipe.yaml: stage '2k'`` (or just the path): the prefix the trainer's own checks are given."""
        return f"{self.path}: stage {self.stage!r}" if self.stage else self.path

    def __call__(self, key: str, msg: str) -> LongctxError:
        return LongctxError(f"{self.where}: {key}: {msg}")


def _mapping(value: Any, key: str, bad: _Where, allowed: tuple[str, ...] | None = None) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad(key, f"expected a mapping, got {value!r}")
    if allowed is not None:
        unknown = [k for k in value if k not in allowed]
        if unknown:
            raise bad(f"{key}.{unknown[0]}", f"unknown key (known: {', '.join(allowed)})")
    return value


def _int(value: Any, key: str, bad: _Where, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise bad(key, f"expected an integer >= {low}, got {value!r}")
    return value


def _fraction(value: Any, key: str, bad: _Where, *, below_one: bool = False) -> float:
    """A share: a number in [0, 1] (or [0, 1) with ``below_one``)."""
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value)
            or not (0 <= value < 1 if below_one else 0 <= value <= 1)):
        raise bad(key, f"expected a number in [0, 1{')' if below_one else ']'}, got {value!r}")
    return float(value)


def _int_list(value: Any, key: str, bad: _Where) -> list[int]:
    if not isinstance(value, list) or not value:
        raise bad(key, f"expected a non-empty list of token counts, got {value!r}")
    return [_int(v, key, bad) for v in value]


def resolve_base(base: str) -> str:
    """``organism`` (the shipped tiny model) or a path, as given."""
    if base == "organism":
        return str(shipped_model_dir())
    return base


def parse_eval(raw: Any, key: str, bad: _Where, defaults: dict[str, Any], *, absent: bool = True) -> EvalConfig | None:
    """An ``eval`` section on top of ``defaults``, read and checked by the trainer (``from_dict`` + ``validate``:
    the errors ``longctx train`` gives for its ``eval`` section, naming ``eval.<key>``); ``false`` (or no
    section when ``absent`` is false): no evaluation."""
    if raw is False or (raw is None and not absent):
        return None
    e = _mapping(raw, key, bad, EVAL_KEYS)
    for k in ("passkey_lengths", "ppl_lengths"):
        if k in e:
            _int_list(e[k], f"{key}.{k}", bad)
    cfg = from_dict({"eval": {**defaults, **e}}, bad.where)
    validate(cfg, where=bad.where)
    ev = cfg.eval
    if ev.ppl_stride < 1:
        raise bad(f"{key}.ppl_stride", "must be >= 1 here (0, half the window, is for evaluation during training)")
    if ev.samples % ev.depths:
        raise bad(f"{key}.samples", f"{ev.samples} prompts per length do not spread evenly over {ev.depths} depths; "
                  f"give a multiple of {ev.depths} (samples counts prompts per length, not per depth)")
    return ev


def _flag_to_key(msg: str) -> str:
    """``--target-length: ...`` (a ``longctx extend`` message) -> ``target_length: ...`` (the recipe key)."""
    return re.sub(r"--([a-z][a-z-]*)", lambda m: m.group(1).replace("-", "_"), msg)


def _extend_key(msg: str, method: str, factor: Any, target: Any, params: dict) -> str:
    """The recipe key an extension error is about: the given key the message names first; else the length key."""
    found = [(m.start(), k) for k in ("method", "factor", "target_length", *params)
             for m in [re.search(rf"\b{k}\b", msg)] if m]
    if found:
        return f"extend.{min(found)[1]}"
    return "extend.target_length" if target is not None else "extend.factor" if factor is not None else "extend"


def parse_extend(raw: Any, bad: _Where, source: dict | None) -> tuple[str, float | None, int | None, dict, dict | None, int | None]:
    """(method, factor, target_length, method params, the config the extension writes, new context).

    With ``source`` (the config.json the stage starts from) the whole extension is planned as
    ``longctx extend`` would; without it (a base not on disk) only the method and its parameters are checked.
    """
    if raw == NO_EXTENSION:
        context = int(source.get("max_position_embeddings", 0)) or None if source else None
        return NO_EXTENSION, None, None, {}, source, context
    e = dict(_mapping(raw, "extend", bad))
    if not e:
        raise bad("extend", f"missing: give method and factor or target_length (or rope_theta for ABF), or {NO_EXTENSION}")
    method = e.pop("method", "auto")
    factor = e.pop("factor", None)
    target = e.pop("target_length", None)
    if factor is not None and (isinstance(factor, bool) or not isinstance(factor, (int, float))):
        raise bad("extend.factor", f"expected a number, got {factor!r}")
    if target is not None:
        _int(target, "extend.target_length", bad)
    params = e
    try:
        if method != "auto":
            get_method(method)
            validate_params(method, params)
        if source is None:
            return method, factor, target, params, None, target
        plan = plan_extension(source, "config.json", method=method, target_length=target, factor=factor, **params)
    except LongctxError as err:
        msg = _flag_to_key(str(err))
        raise bad(_extend_key(msg, method, factor, target, params), msg) from None
    new = patch_config(source, plan.rope_parameters, plan.max_position_embeddings)
    return plan.method, factor, target, params, new, int(plan.max_position_embeddings)


def parse_data(raw: Any, bad: _Where, context: int | None, base_context: int | None, seed: int) -> DataSpec:
    d = _mapping(raw, "data", bad, DATA_KEYS)
    pack = d.get("pack_length", context)
    if pack is None:
        raise bad("data.pack_length", "required when the stage's context is not known (base not on disk)")
    spec = DataSpec(pack_length=_int(pack, "data.pack_length", bad))
    if context is not None and spec.pack_length > context:
        raise bad("data.pack_length", f"{spec.pack_length} is longer than the stage's extended context {context} "
                  "(extend: max_position_embeddings): training would run past the model's window; extend further "
                  "or pack shorter")
    sources = d.get("sources", [{"passkey": {}}])
    if not isinstance(sources, list) or not sources:
        raise bad("data.sources", f"expected a non-empty list of {{passkey: ...}} / {{jsonl: path}}, got {sources!r}")
    for i, src in enumerate(sources):
        key = f"data.sources[{i}]"
        if not isinstance(src, dict) or len(src) != 1 or next(iter(src)) not in ("passkey", "jsonl", "pretrain"):
            raise bad(key, f"expected {{passkey: {{records, min_tokens, max_tokens}}}}, {{jsonl: path}} or "
                      f"{{pretrain: {{rows}}}}, got {src!r}")
        kind, value = next(iter(src.items()))
        if kind == "pretrain":
            if len(sources) != 1:
                raise bad(key, "a pretrain source writes its packs itself: it is a stage's only source")
            spec.pretrain = parse_pretrain(value, f"{key}.pretrain", bad, spec.pack_length)
            continue
        if kind == "jsonl":
            if not isinstance(value, str) or not Path(value).is_file():
                raise bad(f"{key}.jsonl", f"{value!r} is not a file")
            spec.jsonl.append(value)
            continue
        p = _mapping(value, f"{key}.passkey", bad, ("records", "min_tokens", "max_tokens", "edge_share", "haystack",
                                                   "qa_share", "stream"))
        spec.passkey_records = _int(p.get("records", 200), f"{key}.passkey.records", bad)
        low = max(256, (base_context or 512) // 2)
        spec.passkey_max_tokens = _int(p.get("max_tokens", spec.pack_length), f"{key}.passkey.max_tokens", bad, low=256)
        spec.passkey_min_tokens = _int(p.get("min_tokens", low), f"{key}.passkey.min_tokens", bad, low=256)
        if spec.passkey_min_tokens > spec.passkey_max_tokens or spec.passkey_max_tokens > spec.pack_length:
            raise bad(f"{key}.passkey", f"need min_tokens <= max_tokens <= pack_length {spec.pack_length}, got "
                      f"{spec.passkey_min_tokens} / {spec.passkey_max_tokens}")
        spec.passkey_edge_share = _fraction(p.get("edge_share", 0.0), f"{key}.passkey.edge_share", bad)
        spec.passkey_qa_share = _fraction(p.get("qa_share", 0.0), f"{key}.passkey.qa_share", bad)
        hay = p.get("haystack", "noise")
        if not isinstance(hay, str) or not (hay in HAYSTACKS or Path(hay).is_file()):
            raise bad(f"{key}.passkey.haystack", f"expected {' or '.join(HAYSTACKS)} or a text file, got {hay!r}")
        spec.passkey_haystack = hay
        stream = p.get("stream", "")
        if not isinstance(stream, str):
            raise bad(f"{key}.passkey.stream", f"expected a name, got {stream!r}")
        spec.passkey_stream = stream
    share = _fraction(d.get("short_share", 0.0), "data.short_share", bad, below_one=True)
    if share and not spec.passkey_records:
        raise bad("data.short_share", "applies to the synthetic passkey records; add a {passkey: ...} source")
    spec.short_share = share
    spec.short_min_tokens = _int(d.get("short_min_tokens", 256), "data.short_min_tokens", bad, low=256)
    train_on = d.get("train_on", "all")
    if train_on not in ("all", "assistant"):
        raise bad("data.train_on", f"expected all or assistant, got {train_on!r}")
    spec.train_on = train_on
    return spec


def parse_pretrain(raw: Any, key: str, bad: _Where, pack_length: int) -> dict:
    p = _mapping(raw, key, bad, PRETRAIN_KEYS)
    out = {"rows": _int(p.get("rows"), f"{key}.rows", bad), "mixed": p.get("mixed", False),
           "min_len": _int(p.get("min_len", 224), f"{key}.min_len", bad), "answer_weight": p.get("answer_weight", 5.0)}
    if not isinstance(out["mixed"], bool):
        raise bad(f"{key}.mixed", f"expected true or false, got {out['mixed']!r}")
    if out["mixed"] and out["min_len"] > pack_length:
        raise bad(f"{key}.min_len", f"must be <= the pack length {pack_length}, got {out['min_len']}")
    w = out["answer_weight"]
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
        raise bad(f"{key}.answer_weight", f"expected a positive number, got {w!r}")
    out["answer_weight"] = float(w)
    return out


def trainer_settings(train: dict) -> dict:
    """The stage's trainer settings: the recipe defaults, then the stage's keys as given (``eval`` included,
    unchanged: the trainer owns and checks it)."""
    return {**RECIPE_TRAIN_DEFAULTS, **train}


def parse_train(raw: Any, bad: _Where, pack_length: int) -> tuple[dict, int]:
    """Check the stage's trainer keys with the trainer's own validation; returns (settings, ranks)."""
    t = dict(_mapping(raw, "train", bad))
    if "eval" in t and not isinstance(t["eval"], dict):
        raise bad("train.eval", f"expected a mapping (the trainer's eval section), got {t['eval']!r}")
    given = set(flat_keys({k: v for k, v in t.items() if k != "eval"}))
    owned = [k for k in OWNED_TRAIN_KEYS if k in given or k.split(".")[1] in given]
    if owned:
        raise bad(f"train.{owned[0]}", "set by the recipe (the previous stage's model, this stage's packs and folder)")
    where = f"{bad.path}: stage {bad.stage!r}: train"
    cfg = from_dict(trainer_settings(t), where)  # the trainer's own type checks, naming the key
    nproc = cfg.parallel.sp_degree
    validate(cfg, world_size=nproc, pack_length=pack_length, where=where)
    return t, nproc


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read the recipe at ``path``, apply ``--set`` ``overrides`` and validate it (every stage, before anything runs)."""
    raw = read_yaml(path, missing="recipe file not found")
    return parse_recipe(apply_overrides(raw, overrides) if overrides else raw, str(path))


def apply_overrides(raw: Any, overrides: list[str]) -> Any:
    """``--set key=value`` items on a recipe mapping (a copy): dotted keys (``seed=1``, ``eval.samples=10``,
    ``stages.2k.train.optim.lr=2e-3``: a stage by name or index; what follows ``train``/``eval`` is one key
    there). Parsed by the trainer's ``--set`` parser (values as YAML); the recipe's own checks then name the key."""
    raw = copy.deepcopy(raw)
    for text in overrides:
        key, value = parse_override(text)
        parts, target = key.split("."), raw
        for i, part in enumerate(parts[:-1]):
            if isinstance(target, list):
                found = [x for x in target if isinstance(x, dict) and x.get("name") == part]
                if not found and part.isdigit() and int(part) < len(target):
                    found = [target[int(part)]]
                if not found:
                    raise LongctxError(f"--set {text}: {'.'.join(parts[:i + 1])}: no such stage")
                target = found[0]
                continue
            if not isinstance(target, dict):
                raise LongctxError(f"--set {text}: {'.'.join(parts[:i])}: not a mapping")
            if part in ("train", "eval") and isinstance(target.get(part, {}), dict) and i > 0:
                target.setdefault(part, {})[".".join(parts[i + 1:])] = value  # the trainer's (dotted) key
                break
            target = target.setdefault(part, {})
        else:
            if not isinstance(target, dict):
                raise LongctxError(f"--set {text}: {'.'.join(parts[:-1])}: not a mapping")
            target[parts[-1]] = value
    return raw


def parse_recipe(raw: Any, path: str = "<recipe>") -> Recipe:
    bad = _Where(path)
    top = _mapping(raw, "recipe", bad, TOP_KEYS)
    if "base" not in top or not isinstance(top["base"], (str, dict)):
        raise bad("base", "missing: a checkpoint directory, organism for the shipped tiny model, or {tiny: {...}}")
    tiny = parse_tiny(top["base"], bad) if isinstance(top["base"], dict) else None
    base = "" if tiny else resolve_base(top["base"])
    seed = _int(top.get("seed", 0), "seed", bad, low=0)
    source = None
    base_context = None
    if tiny:
        source = tiny_config(tiny["family"], **{k: v for k, v in tiny.items() if k not in ("family", "seed")}).to_dict()
        base_context = int(source["max_position_embeddings"])
    elif Path(base).is_dir():
        try:
            source = read_config(base)[0]
        except LongctxError as err:
            raise bad("base", str(err)) from None
        base_context = int(source.get("max_position_embeddings", 0)) or None
    plan = _mapping(top.get("plan"), "plan", bad, PLAN_KEYS) or None
    if source is None and plan is None:
        raise bad("base", f"{base!r} is not a checkpoint directory")
    defaults = parse_eval(top.get("eval"), "eval", bad, {**RECIPE_EVAL_DEFAULTS, "seed": seed})
    stages_raw = top.get("stages")
    if not isinstance(stages_raw, list) or not stages_raw:
        raise bad("stages", "expected a non-empty list of stages")
    stages: list[StageSpec] = []
    names: set[str] = set()
    configs = {BASE: source}  # the config.json each stage's model will have (None: base not on disk)
    for i, s in enumerate(stages_raw):
        sbad = _Where(path, f"stages[{i}]")
        s = _mapping(s, "stage", sbad, STAGE_KEYS)
        name = s.get("name", f"stage{i + 1}")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            raise sbad("name", f"expected a short name (letters, digits, . _ -), got {name!r}")
        if name in names or name == BASE:
            raise sbad("name", f"{name!r} is used by an earlier stage" if name in names
                       else f"{BASE!r} names the base model (from: {BASE})")
        names.add(name)
        sbad = _Where(path, name)
        start = s.get("from", stages[-1].name if stages else BASE)
        if start not in configs:
            raise sbad("from", f"expected {BASE} or an earlier stage ({', '.join(st.name for st in stages) or 'none'}), "
                       f"got {start!r}")
        eval_extended = s.get("eval_extended", False)
        if not isinstance(eval_extended, bool):
            raise sbad("eval_extended", f"expected true or false, got {eval_extended!r}")
        method, factor, target, params, configs[name], context = parse_extend(s.get("extend"), sbad, configs[start])
        if s.get("train") is False:
            if "data" in s:
                raise sbad("data", "a stage with train: false has no data")
            if method == NO_EXTENSION:
                raise sbad("train", "false with extend: none leaves nothing to do")
            data, train, nproc = None, None, 1
        else:
            data = parse_data(s.get("data"), sbad, context, base_context, seed)
            train, nproc = parse_train(s.get("train"), sbad, data.pack_length)
        ev = parse_eval(s.get("eval"), "eval", sbad, eval_dict(defaults) or {**RECIPE_EVAL_DEFAULTS, "seed": seed},
                        absent=defaults is not None)
        if ev is not None and not ev.passkey_lengths and context:
            ev.passkey_lengths = sorted({base_context or context, context})
        if ev is not None and not ev.ppl_lengths:
            ev.ppl_lengths = list(ev.passkey_lengths)
        if eval_extended and (ev is None or method == NO_EXTENSION):
            raise sbad("eval_extended", "needs an extension and an evaluation (extend and eval)")
        stages.append(StageSpec(i + 1, name, method, factor, target, params, context, data, train, nproc, ev, start,
                                eval_extended, train is not None and lora_embeddings_norms(train, configs[name], method)))
    if defaults is not None and not defaults.passkey_lengths:
        evaluated = [st.eval for st in stages if st.eval is not None]
        defaults.passkey_lengths = list(evaluated[-1].passkey_lengths) if evaluated else [base_context or 512]
    if defaults is not None and not defaults.ppl_lengths:
        defaults.ppl_lengths = list(defaults.passkey_lengths)
    check_outputs(stages, path)
    if plan:
        check_plan(plan, stages, bad)
    return Recipe(path, base, base_context, seed, defaults, plan, stages, json.loads(json.dumps(top)), tiny)


def lora_embeddings_norms(train: dict, config: dict | None, method: str) -> bool:
    """Whether a stage trains LoRA with the embeddings and norms (LoRA+): ``peft.train_embeddings_norms``, its
    auto resolved on ``config`` (the config.json the stage trains) by the trainer's rule
    (:func:`longctx.train.lora.embeddings_norms_on`); with no config (base not on disk), auto is on when the
    stage extends the RoPE."""
    p = from_dict(trainer_settings(train)).peft
    if not p.enabled:
        return False
    if config is None:
        return method != NO_EXTENSION if p.train_embeddings_norms is None else p.train_embeddings_norms
    return embeddings_norms_on(p, SimpleNamespace(**config))[0]


def check_outputs(stages: list[StageSpec], path: str) -> None:
    """A training stage's output (``train/final``) is what a later stage starts from and what its evaluation
    loads, so it must be a full checkpoint: ``checkpoint.export: merged`` (a LoRA stage's adapters merged into
    the base). ``adapter`` (a PEFT adapter folder, no config.json) or ``none`` (no final model) fits only a last
    stage nothing starts from and nothing evaluates; otherwise one error naming the key, before anything runs."""
    for s in stages:
        if s.train is None:
            continue
        export = from_dict(trainer_settings(s.train)).checkpoint.export
        if export == "merged":
            continue
        bad = _Where(path, s.name)
        what = "a PEFT adapter folder, not a model" if export == "adapter" else "no model"
        users = [t.name for t in stages if t.start == s.name]
        if users:
            raise bad("train.checkpoint.export", f"{export} leaves {what} in train/final, and stage {users[0]!r} "
                      "starts from it: it needs a full model; use merged (the default: LoRA merged into the base)")
        if s.eval is not None:
            raise bad("train.checkpoint.export", f"{export} leaves {what} in train/final, and the after-stage "
                      "evaluation loads it: use merged (the default: LoRA merged into the base), or eval: false")


def parse_tiny(raw: dict, bad: _Where) -> dict:
    """``{tiny: {family, seed, sizes...}}``: checked as ``longctx make-tiny`` checks them (one error naming the key)."""
    t = _mapping(_mapping(raw, "base", bad, ("tiny",)).get("tiny"), "base.tiny", bad, TINY_KEYS)
    out = {"family": t.get("family", "llama"), "seed": _int(t.get("seed", 0), "base.tiny.seed", bad, low=0),
           **{k: t[k] for k in TINY_KEYS[2:] if k in t}}
    try:
        tiny_config(out["family"], **{k: v for k, v in out.items() if k not in ("family", "seed")})
    except LongctxError as err:
        raise bad("base.tiny", str(err)) from None
    return out


def plan_rows(plan: dict, stages: list[StageSpec]) -> list[dict]:
    """One ``longctx plan`` verdict per stage for the GPUs the recipe states (its ``plan`` section)."""
    shape = load_model_shape(str(plan.get("model", "")))
    rows = []
    for s in stages:
        if s.train is None:
            continue  # training-free: nothing to plan
        cfg = from_dict(trainer_settings(s.train))
        run = RunShape(seq_len=s.data.pack_length, gpus=int(plan.get("gpus", cfg.parallel.sp_degree)),
                       gpu_mem_gib=float(plan.get("gpu_mem_gib", 80.0)), sp=cfg.parallel.sp_degree,
                       layout=cfg.parallel.layout, micro_batch=1 if cfg.parallel.sp_degree > 1 else cfg.train.micro_batch,
                       sharding="fsdp" if cfg.parallel.fsdp else str(plan.get("sharding", "none")),
                       checkpointing="full" if cfg.model.gradient_checkpointing else "none",
                       loss_chunk=cfg.train.loss_chunk, dtype="bf16", attn_kernel="sdpa",
                       **lora_fields(cfg.peft, s.embeddings_norms))
        result = plan_run(shape, run)
        rows.append({"stage": s.name, "seq_len": s.data.pack_length, "sp": cfg.parallel.sp_degree, "gpus": run.gpus,
                     "gpu_mem_gib": run.gpu_mem_gib, "fits": result.fits,
                     "gib_per_gpu": round(result.total_bytes / 2**30, 2), "message": result.message()})
    return rows


def check_plan(plan: dict, stages: list[StageSpec], bad: _Where) -> None:
    if "model" not in plan:
        raise bad("plan.model", "missing: a longctx plan preset (llama-3-8b, ...) or a config.json path")
    try:
        rows = plan_rows(plan, stages)
    except LongctxError as err:
        raise bad("plan", _flag_to_key(str(err))) from None
    for r in rows:
        if not r["fits"]:
            raise _Where(bad.path, r["stage"])("train", f"longctx plan: does not fit on {r['gpus']} x "
                                               f"{r['gpu_mem_gib']:g} GiB: {r['message']}")
