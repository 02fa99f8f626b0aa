"""The exact pretraining recipe of the shipped tiny model: its settings (one dataclass) and the recipe they make.

``longctx organism train --out DIR`` runs :func:`organism_recipe` on the recipe runner
(:mod:`longctx.recipe.runner`): a random Llama (``base: {tiny: ...}``, :mod:`longctx.models.tiny`),
phase 1 on passkey conversations of exactly the context length, phase 2 on packs of mixed lengths
(``pretrain`` data, :mod:`longctx.recipe.pretrain_data`), each trained by the project's trainer with
the settings below (``--set`` changes them: :func:`longctx.train.config.apply_overrides`). Nothing here
trains by itself.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from longctx.core.errors import LongctxError
from longctx.recipe.spec import trainer_settings
from longctx.train.config import RunConfig, from_dict, validate

RECIPE_PATH = "longctx organism train"
"""How the recipe is named in messages."""


@dataclass
class OrganismRecipe:
    # model (LlamaForCausalLM, byte vocabulary 258, tied embeddings)
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 4
    intermediate_size: int = 384
    context: int = 512
    """The original context window: max_position_embeddings and the length of every training sequence."""
    rope_theta: float = 10000.0
    init_seed: int = 0
    """Seed of the random initialisation (longctx.models.tiny.make_tiny_checkpoint)."""
    # data
    data_seed: int = 0
    """Base seed of the passkey sequences (see longctx.recipe.pretrain_data.sample_seed)."""
    answer_weight: float = 5.0
    """Loss weight of each answer digit relative to every other token."""
    # optimisation (longctx.train)
    steps: int = 3000
    batch: int = 8
    """Sequences per optimizer step (micro_batch; one process)."""
    lr: float = 2e-3
    warmup_steps: int = 200
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    checkpoint_every: int = 250
    # phase 2: mixed lengths (see longctx.recipe.pretrain_data.mixed_pack)
    mixed_steps: int = 600
    """Steps of phase 2 on packs of conversations with uniform lengths in [mixed_min_len, context]; 0 = skip."""
    mixed_min_len: int = 224
    mixed_lr: float = 1e-3
    mixed_warmup_steps: int = 50

    @property
    def num_sequences(self) -> int:
        """Every step sees fresh sequences: one epoch of the data = the whole run."""
        return self.steps * self.batch

    def to_dict(self) -> dict:
        return asdict(self)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse values no run can use before any data is written (each names its ``--set`` key).

        Counts and sizes are positive integers (seeds, warmups, weight decay and phase 2's steps
        may be 0), numbers finite; then the two trainer configs the recipe builds go through the
        trainer's own checks (learning rates, schedule, clipping)."""
        may_be_zero = {"init_seed", "data_seed", "warmup_steps", "mixed_steps", "mixed_warmup_steps", "weight_decay",
                       "min_lr_ratio", "grad_clip", "checkpoint_every"}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise LongctxError(f"--set {f.name}: must be a finite number, got {value!r}")
            if value < 0 or (value == 0 and f.name not in may_be_zero):
                need = ">= 0" if f.name in may_be_zero else "positive"
                raise LongctxError(f"--set {f.name}: must be {need}, got {value!r}")
        if self.hidden_size % self.num_heads or (self.hidden_size // self.num_heads) % 2:
            raise LongctxError(f"--set num_heads: {self.num_heads} heads must split hidden_size {self.hidden_size} "
                               "into an even head dimension")
        if self.num_heads % self.num_kv_heads:
            raise LongctxError(f"--set num_kv_heads: {self.num_kv_heads} must divide num_heads {self.num_heads}")
        if self.mixed_steps and not 0 < self.mixed_min_len <= self.context:
            raise LongctxError(f"--set mixed_min_len: must be in [1, context {self.context}], got {self.mixed_min_len}")
        for settings in (phase1_settings(self), phase2_settings(self)):
            try:
                validate(from_dict(trainer_settings(settings)))
            except LongctxError as err:
                raise LongctxError(f"recipe: {err}") from None


def phase1_settings(recipe: OrganismRecipe) -> dict:
    """Phase 1's trainer keys: one process, fp32, sdpa attention (one sequence per row: plain causal attention is
    exact), the rows in their written order (already i.i.d. samples)."""
    return {"model.attn_implementation": "sdpa", "model.dtype": "float32", "data.shuffle": False,
            "parallel.layout": RunConfig().parallel.layout,
            "optim.lr": recipe.lr, "optim.warmup_steps": recipe.warmup_steps, "optim.min_lr_ratio": recipe.min_lr_ratio,
            "optim.weight_decay": recipe.weight_decay, "optim.grad_clip": recipe.grad_clip,
            "train.steps": recipe.steps, "train.micro_batch": recipe.batch, "train.loss": "weighted",
            "train.seed": recipe.data_seed, "checkpoint.every": recipe.checkpoint_every, "checkpoint.keep_last": 2,
            "log.every": 10, "log.tensorboard": False}


def phase2_settings(recipe: OrganismRecipe) -> dict:
    """Phase 2: continue from phase 1 on mixed-length packs (longctx_varlen keeps the sequences apart)."""
    return {**phase1_settings(recipe), "model.attn_implementation": "longctx_varlen", "optim.lr": recipe.mixed_lr,
            "optim.warmup_steps": recipe.mixed_warmup_steps, "train.steps": recipe.mixed_steps,
            "train.seed": recipe.data_seed + 1}


def organism_recipe(recipe: OrganismRecipe) -> dict:
    """The recipe mapping of ``recipe`` (phase 2 only when ``mixed_steps``); no evaluation (``longctx organism
    check`` measures the result)."""
    tiny = {"family": "llama", "seed": recipe.init_seed, "hidden_size": recipe.hidden_size,
            "num_layers": recipe.num_layers, "num_heads": recipe.num_heads, "num_kv_heads": recipe.num_kv_heads,
            "intermediate_size": recipe.intermediate_size, "max_position_embeddings": recipe.context,
            "rope_theta": recipe.rope_theta}
    stages = [{"name": "pretrain", "extend": "none", "train": phase1_settings(recipe),
               "data": {"sources": [{"pretrain": {"rows": recipe.num_sequences, "answer_weight": recipe.answer_weight}}]}}]
    if recipe.mixed_steps:
        stages.append({"name": "mixed", "extend": "none", "train": phase2_settings(recipe),
                       "data": {"sources": [{"pretrain": {"rows": recipe.mixed_steps * recipe.batch, "mixed": True,
                                                          "min_len": recipe.mixed_min_len,
                                                          "answer_weight": recipe.answer_weight}}]}})
    return {"base": {"tiny": tiny}, "seed": recipe.data_seed, "eval": False, "stages": stages}
