"""``longctx plan``: will my run fit? Per-GPU memory, the largest sequence length, the SP degree, the step time.

The memory model (one pure function per term, formula in each docstring) is in
:mod:`longctx.plan.memory`; its assumptions and the published configurations it reproduces are in
``docs/plan.md``. ``longctx train`` calls :func:`plan_run` before starting.
"""

from longctx.plan.memory import GiB, Term, memory_terms
from longctx.plan.planner import PlanResult, device_capacity_gib, plan_run, run_for_device
from longctx.plan.search import max_seq_len, recommend_sp
from longctx.plan.shapes import PRESETS, ModelShape, RunShape, load_model_shape, shape_from_config
from longctx.plan.throughput import PEAK_FLOPS, StepTime, step_time

__all__ = [
    "GiB", "Term", "memory_terms", "PlanResult", "plan_run", "run_for_device", "device_capacity_gib", "max_seq_len", "recommend_sp", "PRESETS",
    "ModelShape", "RunShape", "load_model_shape", "shape_from_config", "PEAK_FLOPS", "StepTime", "step_time",
]
