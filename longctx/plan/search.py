"""The largest sequence length that fits (bisection) and the sequence-parallel degree to use.

Memory grows monotonically with the sequence length in every term, so bisection over multiples of
the layout's granularity (its unit: 2·sp for zigzag) finds the largest fitting length exactly.
"""

from __future__ import annotations

from longctx.distributed.layouts import get_layout
from longctx.plan.memory import GiB
from longctx.plan.planner import plan_run
from longctx.plan.shapes import ModelShape, RunShape, seq_granularity

MAX_SEQ = 1 << 31


def _fits(shape: ModelShape, run: RunShape, seq_len: int) -> bool:
    return plan_run(shape, run.replace(seq_len=seq_len)).fits


def max_seq_len(shape: ModelShape, run: RunShape, multiple: int = 1) -> int:
    """Largest seq_len (a multiple of lcm(granularity, ``multiple``)) for which ``run`` fits; 0 if none."""
    g = seq_granularity(run)
    step = g * multiple // _gcd(g, multiple)
    if not _fits(shape, run, step):
        return 0
    lo, hi = 1, 2  # in units of `step`: lo fits, hi unknown
    while _fits(shape, run, hi * step):
        lo, hi = hi, hi * 2
        if hi * step > MAX_SEQ:
            return lo * step
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _fits(shape, run, mid * step):
            lo = mid
        else:
            hi = mid
    return lo * step


def recommend_sp(shape: ModelShape, run: RunShape) -> int | None:
    """Smallest SP degree dividing ``run.gpus`` (and the seq length by the layout's unit, and meeting
    the layout's head constraint) at which ``run.seq_len`` fits: the least communication and the
    most data parallelism. None if none fits."""
    layout = get_layout(run.layout)
    for sp in range(1, run.gpus + 1):
        if run.gpus % sp:
            continue
        if run.seq_len % layout.unit(sp) or layout.check_heads(sp, shape.num_heads, shape.num_kv_heads):
            continue
        if plan_run(shape, run.replace(sp=sp)).fits:
            return sp
    return None


LORA_SUGGESTED_RANK = 16
"""The rank :func:`lora_note` plans with (``peft.r``; the trainer's default is 8, the memory barely differs)."""


def lora_note(shape: ModelShape, run: RunShape, rank: int = LORA_SUGGESTED_RANK) -> str | None:
    """When full fine-tuning does not fit at ``run.seq_len``, the LoRA runs that would (same settings,
    attention targets): the longest sequence for LoRA and for LoRA+ (embeddings and norms trained); None
    when the run already fits or already is LoRA."""
    if run.lora or plan_run(shape, run).fits:
        return None
    lora = run.replace(lora_rank=rank, lora_targets="attention")
    plus = lora.replace(lora_embeddings_norms=True)
    longest, longest_plus = max_seq_len(shape, lora), max_seq_len(shape, plus)
    at = plan_run(shape, lora)
    verdict = f"fits ({at.total_bytes / GiB:.1f} GiB)" if at.fits else f"does not fit either ({at.total_bytes / GiB:.1f} GiB)"
    return (f"full fine-tuning does not fit at seq_len {run.seq_len}; LoRA (--peft lora --lora-rank {rank}, attention) "
            f"{verdict}: longest seq_len {longest or 'none'} with LoRA, {longest_plus or 'none'} with LoRA+ "
            "(--lora-train-embeddings-norms)")


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a
