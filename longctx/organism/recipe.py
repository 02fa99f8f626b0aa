"""The exact pretraining recipe of the shipped tiny model, as one dataclass.

``longctx organism train --out DIR`` runs it: a random Llama (``longctx.models.tiny``), passkey data
(:mod:`longctx.recipe.pretrain_data`) written as packs, and the project's own trainer
(:mod:`longctx.train`) driven through its ``RunConfig``. Nothing here trains by itself.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from longctx.core.errors import LongctxError
from longctx.train.config import RunConfig, validate


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
        for cfg in (run_config(self, "init", "packs", "run"), mixed_run_config(self, "init", "packs", "run")):
            try:
                validate(cfg)
            except LongctxError as err:
                raise LongctxError(f"recipe: {err}") from None


def mixed_run_config(recipe: OrganismRecipe, phase1_model: str | Path, packs_dir: str | Path, run_dir: str | Path) -> RunConfig:
    """Phase 2: continue from phase 1 on mixed-length packs (longctx_varlen keeps sequences apart)."""
    cfg = run_config(recipe, phase1_model, packs_dir, run_dir)
    cfg.model.attn_implementation = "longctx_varlen"
    cfg.optim.lr = recipe.mixed_lr
    cfg.optim.warmup_steps = recipe.mixed_warmup_steps
    cfg.train.steps = recipe.mixed_steps
    cfg.train.seed = recipe.data_seed + 1
    return cfg


def run_config(recipe: OrganismRecipe, init_dir: str | Path, packs_dir: str | Path, run_dir: str | Path) -> RunConfig:
    """The phase-1 trainer config (single process, fp32, sdpa attention: one sequence per row)."""
    cfg = RunConfig()
    cfg.model.path = str(init_dir)
    cfg.model.attn_implementation = "sdpa"  # one sequence per row: plain causal attention is exact
    cfg.model.dtype = "float32"
    cfg.data.path = str(packs_dir)
    cfg.data.shuffle = False  # the rows are already i.i.d. samples
    cfg.optim.lr = recipe.lr
    cfg.optim.warmup_steps = recipe.warmup_steps
    cfg.optim.min_lr_ratio = recipe.min_lr_ratio
    cfg.optim.weight_decay = recipe.weight_decay
    cfg.optim.grad_clip = recipe.grad_clip
    cfg.train.steps = recipe.steps
    cfg.train.micro_batch = recipe.batch
    cfg.train.loss = "weighted"
    cfg.train.seed = recipe.data_seed
    cfg.checkpoint.out = str(run_dir)
    cfg.checkpoint.every = recipe.checkpoint_every
    cfg.checkpoint.keep_last = 2
    cfg.log.every = 10
    cfg.log.tensorboard = False
    return cfg
