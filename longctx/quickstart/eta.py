"""How long the rest of the quick start will take, printed before each stage.

Each stage's cost is a reference time (the default run on 2 CPU cores, :data:`REFERENCE_S`) scaled by
the work the config asks for (models evaluated x prompts x lengths, conversations packed, training
steps x methods x pack length). Once stages have run, the estimates of the stages left are scaled by
how much slower or faster the finished ones were than estimated, so a loaded machine or a bigger
``--model`` corrects the forecast after the first stage.
"""

from __future__ import annotations

from longctx.quickstart.config import QuickstartConfig

STAGES = ("evaluate", "extend", "pack", "train", "re-evaluate")

# Per-stage shares: the sum of two default runs measured on shared 2-core machines (25.6 min at load
# average 4-6: evaluate 280 s, extend 546, pack 4, train 286, re-evaluate 414; 13.1 min at load ~4: 128,
# 180, 3, 291, 176), scaled to the 9 min 23 s a default run took on a less loaded 2-core machine (issue
# #26). Only the first forecast relies on that scale; later ones follow the measured pace.
_MEASURED_S = {"evaluate": 408.0, "extend": 726.0, "pack": 7.0, "train": 577.0, "re-evaluate": 590.0}
REFERENCE_S = {k: v * 563.0 / sum(_MEASURED_S.values()) for k, v in _MEASURED_S.items()}
"""Seconds per stage of the default quick start (3 methods, n = 20 over 4 lengths, 200 conversations,
100 steps at factor 8) on 2 CPU cores."""


def stage_estimates(cfg: QuickstartConfig) -> dict[str, float]:
    """Estimated seconds per stage for ``cfg``: the reference scaled by the work each stage does."""
    ref = QuickstartConfig()
    per_model = (cfg.eval_depths * cfg.eval_samples * sum(cfg.multiples)) / (
        ref.eval_depths * ref.eval_samples * sum(ref.multiples))
    methods = len(cfg.methods) / len(ref.methods)
    return {
        "evaluate": REFERENCE_S["evaluate"] * per_model,
        "extend": REFERENCE_S["extend"] * per_model * methods,  # writing the configs is instant; evaluating is not
        "pack": REFERENCE_S["pack"] * cfg.sft_records / ref.sft_records,
        "train": REFERENCE_S["train"] * methods * (cfg.steps / ref.steps) * (cfg.factor / ref.factor),
        "re-evaluate": REFERENCE_S["re-evaluate"] * per_model * methods,
    }


def seconds_left(estimates: dict[str, float], measured: dict[str, float]) -> float:
    """Estimated seconds for the stages not in ``measured``, scaled by measured / estimated so far."""
    done = [k for k in estimates if k in measured]
    pace = sum(measured[k] for k in done) / sum(estimates[k] for k in done) if done else 1.0
    return pace * sum(v for k, v in estimates.items() if k not in measured)


def eta_note(estimates: dict[str, float], measured: dict[str, float]) -> str:
    """``about 7 min left`` (``... on a 2-core reference machine`` before any stage has been timed)."""
    minutes = seconds_left(estimates, measured) / 60
    text = f"about {minutes:.0f} min left" if minutes >= 1.5 else "about 1 min left" if minutes >= 0.5 \
        else "under a minute left"
    return text if measured else f"{text} (judged from a 2-core reference run; corrected after each stage)"
