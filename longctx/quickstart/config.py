"""What one quick start does, as a dataclass of its flags; ``--full`` is the same pipeline with bigger numbers.

The flags are turned into a recipe (:func:`longctx.quickstart.recipe.quickstart_recipe`): the eval fields
become the recipe's eval spec (the trainer's :class:`~longctx.train.config.EvalConfig`: n = eval_samples x
eval_depths prompts per length), the rest its stages.

The config checks itself (:meth:`QuickstartConfig.validate`, also run on construction), so a bad
value is refused the same way from the CLI and from library code; messages name the
``longctx quickstart`` flag of the field, the one place a user sets it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from longctx.core.errors import LongctxError
from rope_scaling.registry import METHODS

POSITIVE = ("steps", "sft_records", "eval_samples", "eval_depths", "factor")
"""Fields that must be >= 1."""


def flag(key: str) -> str:
    """The ``longctx quickstart`` flag that sets field ``key``: ``eval_samples`` -> ``--eval-samples``."""
    return "--" + key.replace("_", "-")


@dataclass
class QuickstartConfig:
    out: str = "runs/quickstart"
    """Output folder: models/, data/, packs/, train/, eval/ and report/ (the part to read)."""
    model: str = ""
    """Checkpoint to extend; empty = the shipped tiny model (longctx/assets/organism)."""
    factor: int = 8
    """Extension factor: the new context is factor x the model's max_position_embeddings."""
    multiples: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    """Evaluated context lengths as multiples of the original context."""
    methods: list[str] = field(default_factory=lambda: ["yarn", "linear", "abf"])
    """RoPE methods to compare (rope_scaling names: yarn, linear = position interpolation, abf, ...)."""
    abf_theta: float = 0.0
    """rope_theta for the abf method; 0 = NTK-aware theta * factor ** (d / (d - 2)), d = rotary dimension."""
    eval_depths: int = 5
    """Needle depths per length (evenly spaced 0..100%)."""
    eval_samples: int = 4
    """Passkey prompts per (length, depth) cell: n per length = eval_depths * eval_samples."""
    sft_records: int = 200
    """Synthetic passkey conversations to pack (prompt lengths uniform between half the original context and the new one)."""
    steps: int = 100
    """Optimizer steps of continued training per method (one pack of factor x context tokens per step)."""
    train_on: str = "all"
    """Packing's --train-on: "all" (every token; LongAlign weights 1/N per conversation) or "assistant" (replies
    only). Measured at 100 steps: both bring YaRN to >= 0.8 at 8x, but replies-only training let the perplexity
    on the haystack text rise from ~1.5 to ~20, while "all" brought it to ~1.1 at every length."""
    lr: float = 1e-3
    warmup_steps: int = 4
    sp_degree: int = 2
    """Sequence-parallel ranks (ring attention, gloo): every pack is split across them."""
    ppl_stride: int = 256
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse values the pipeline cannot run (a one-line ``LongctxError`` naming the flag).

        Runs on construction and again when the pipeline starts, for fields changed in between.
        """
        for key in POSITIVE:
            if getattr(self, key) < 1:
                raise LongctxError(f"{flag(key)}: must be >= 1, got {getattr(self, key)}")
        if not self.methods:
            raise LongctxError("--methods: give at least one method, e.g. yarn,linear")
        if not self.multiples or min(self.multiples) < 1 or max(self.multiples) > self.factor:
            raise LongctxError(f"--multiples: need values between 1 and --factor {self.factor}, got {self.multiples}")
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise LongctxError(f"--methods: unknown {', '.join(bad)}; choose from {', '.join(METHODS)}")

    def to_dict(self) -> dict:
        return asdict(self)


FULL = {"eval_samples": 10, "sft_records": 800, "steps": 400}
"""What ``--full`` changes."""


def short(**overrides) -> QuickstartConfig:
    """The default: 2.5 minutes measured on 2 CPU cores (``overrides``: any other field values)."""
    return QuickstartConfig(**overrides)


def full(**overrides) -> QuickstartConfig:
    """``--full``: 4x the training and n = 50 prompts per length (about 2.9x the default run's time)."""
    return QuickstartConfig(**{**FULL, **overrides})
