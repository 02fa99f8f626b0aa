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

REFERENCE_S = {"evaluate": 60.0, "extend": 180.0, "pack": 10.0, "train": 300.0, "re-evaluate": 180.0}
"""Seconds per stage of the default quick start (3 methods, n = 20 over 4 lengths, 200 conversations,
100 steps at factor 8), placeholder to be measured."""


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
