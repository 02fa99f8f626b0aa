"""What one quick start does, as a dataclass; ``--full`` is the same pipeline with bigger numbers."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


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
    """rope_theta for the abf method; 0 = NTK-aware theta * factor ** (d / (d - 2))."""
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

    def to_dict(self) -> dict:
        return asdict(self)


def short() -> QuickstartConfig:
    """The default: 2.5 minutes measured on 2 CPU cores."""
    return QuickstartConfig()


def full() -> QuickstartConfig:
    """``--full``: 4x the training and n = 50 prompts per length (8.4 minutes measured on 2 CPU cores)."""
    return QuickstartConfig(eval_samples=10, sft_records=800, steps=400)
