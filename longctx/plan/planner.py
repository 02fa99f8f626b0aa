"""``plan_run(shape, run) -> PlanResult``: the per-GPU peak and whether it fits. Called by ``longctx train``.

peak = max over phases (sum of live terms) + frag_margin · that + overhead. The breakdown keeps
every term (so a person sees what is large even when it is not live at the peak).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from longctx.distributed.layouts import get_layout
from longctx.plan.memory import GiB, Term, memory_terms, phase_totals
from longctx.plan.shapes import ModelShape, RunShape


@dataclass(frozen=True)
class PlanResult:
    """The verdict for one (model, run) pair on one GPU."""

    shape: ModelShape
    run: RunShape
    breakdown: list[Term]
    """Every memory term (bytes and the phases it is live in)."""
    phase_bytes: dict[str, float]
    """Sum of the live terms in each phase."""
    peak_phase: str
    """The phase with the largest sum."""
    margin_bytes: float
    """frag_margin · (peak phase sum)."""
    overhead_bytes: float
    """Fixed CUDA context / communication workspace."""
    total_bytes: float
    """Predicted peak per GPU: peak phase sum + margin + overhead."""
    capacity_bytes: float
    """run.gpu_mem_gib in bytes."""
    notes: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return self.total_bytes <= self.capacity_bytes

    @property
    def live_terms(self) -> list[Term]:
        return [t for t in self.breakdown if self.peak_phase in t.phases]

    def message(self) -> str:
        """One paragraph a trainer can print when it refuses a run (or confirms it)."""
        big = sorted(self.live_terms, key=lambda t: -t.bytes)[:3]
        parts = ", ".join(f"{t.name} {t.bytes / GiB:.1f}" for t in big)
        verdict = "fits" if self.fits else "does NOT fit"
        return (
            f"{self.shape.name} at seq_len {self.run.seq_len} on {self.run.gpus} GPU(s) (sp {self.run.sp}, "
            f"{self.run.sharding}, offload {self.run.offload}, checkpointing {self.run.checkpointing}): "
            f"{verdict}: predicted peak {self.total_bytes / GiB:.1f} GiB per GPU vs {self.capacity_bytes / GiB:.1f} GiB "
            f"(peak in {self.peak_phase}; largest: {parts} GiB)"
        )

    def to_dict(self) -> dict:
        return {
            "model": self.shape.name,
            "params": self.shape.num_params,
            "run": {k: getattr(self.run, k) for k in self.run.__dataclass_fields__},
            "terms": [{"name": t.name, "bytes": t.bytes, "gib": t.bytes / GiB, "phases": list(t.phases),
                       "live_at_peak": self.peak_phase in t.phases, "formula": t.formula} for t in self.breakdown],
            "phase_bytes": self.phase_bytes,
            "peak_phase": self.peak_phase,
            "margin_bytes": self.margin_bytes,
            "overhead_bytes": self.overhead_bytes,
            "total_bytes": self.total_bytes,
            "total_gib": self.total_bytes / GiB,
            "capacity_gib": self.capacity_bytes / GiB,
            "fits": self.fits,
            "notes": list(self.notes),
        }


def plan_run(shape: ModelShape, run: RunShape) -> PlanResult:
    """Predict the per-GPU peak memory of training ``shape`` as ``run`` describes, and whether it fits."""
    terms = memory_terms(shape, run)
    phases = phase_totals(terms)
    peak_phase = max(phases, key=phases.get)
    margin = run.frag_margin * phases[peak_phase]
    overhead = run.overhead_gib * GiB
    notes = []
    why = get_layout(run.layout).check_heads(run.sp, shape.num_heads, shape.num_kv_heads)
    if why:
        notes.append(why)
    if run.loss_chunk <= 0 and run.tokens_per_rank * shape.vocab_size * 4 > 0.1 * run.gpu_mem_gib * GiB:
        notes.append("full logits take over 10% of memory: try --loss-chunk 4096")
    return PlanResult(shape, run, terms, phases, peak_phase, margin, overhead,
                      phases[peak_phase] + margin + overhead, run.gpu_mem_gib * GiB, notes)


def device_capacity_gib(device: str = "cuda") -> float:
    """Memory of one device in GiB: the CUDA device's total memory, or the machine's physical RAM for "cpu"."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_properties(torch.device(device)).total_memory / GiB
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GiB


def run_for_device(device: str, seq_len: int, **fields) -> RunShape:
    """A RunShape with the right defaults for ``device``: on "cpu" the fp32 / SDPA / per-tensor-AdamW
    mode with no allocator margin or CUDA overhead, and RAM as the capacity; on CUDA the bf16 flash
    defaults and the device's memory. Explicit ``fields`` win. This is what ``longctx train`` calls:

        result = plan_run(shape_from_config(model.config), run_for_device("cuda", 131072, gpus=8, sp=8))
        if not result.fits and not force: raise LongctxError(result.message())
    """
    if device == "cpu":
        defaults = dict(dtype="fp32", attn_kernel="sdpa", foreach_optimizer=False, frag_margin=0.0, overhead_gib=0.0)
    else:
        defaults = {}
    if "gpu_mem_gib" not in fields:
        defaults["gpu_mem_gib"] = device_capacity_gib(device)
    return RunShape(seq_len=seq_len, **{**defaults, **fields})
