"""``longctx quickstart``: the quick start's recipe on the recipe runner, in the quick start's folder, with its report.

The steps, the resume rule (a rerun continues; ``--overwrite`` starts over) and every number are the
recipe runner's (:mod:`longctx.recipe.runner`); this module only names where the files go
(:class:`QuickstartLayout`), prints each step's header with a time estimate, and writes the report
(:mod:`longctx.quickstart.report`). Layout of ``out``: ``models/`` (extended checkpoints),
``data/sft.jsonl``, ``packs/``, ``configs/`` (trainer YAML), ``train/<method>/`` (trainer output;
``final/`` is the trained model), ``eval/`` (needle and ppl results.json), ``stages/`` (the runner's
progress) and ``report/``.
"""

from __future__ import annotations

import os
from pathlib import Path

from longctx.quickstart.config import QuickstartConfig
from longctx.quickstart.eta import eta_note, stage_estimates
from longctx.quickstart.recipe import RECIPE_PATH, base_model, method_label, quickstart_recipe
from longctx.quickstart.report import QuickstartView, quickstart_timings, write_report
from longctx.recipe.layout import EXTENDED, TRAINED, Layout
from longctx.recipe.runner import RecipeRun
from longctx.recipe.spec import StageSpec, parse_recipe

MARKER = "quickstart.json"


class QuickstartLayout(Layout):
    """``models/<method>-x<factor>``, one ``data/sft.jsonl`` and ``packs/`` for every method, ``configs/train-<method>.yaml``,
    ``train/<method>/``, one ``eval/`` for every model; the trained model is ``<stage>+ft`` in the results."""

    kind = "quick start folder"
    marker = MARKER

    def model(self, s: StageSpec) -> Path:
        return self.out / "models" / s.name

    def data(self, s: StageSpec) -> Path:
        return self.out / "data" / "sft.jsonl"

    def packs(self, s: StageSpec) -> Path:
        return self.out / "packs"

    def train_yaml(self, s: StageSpec) -> Path:
        return self.out / "configs" / f"train-{method_label(s.method)}.yaml"

    def train(self, s: StageSpec) -> Path:
        return self.out / "train" / method_label(s.method)

    def eval(self, s: StageSpec, which: str = TRAINED) -> Path:
        return self.out / "eval"

    def base_eval(self) -> Path:
        return self.out / "eval"

    def name(self, s: StageSpec, which: str = TRAINED) -> str:
        return s.name if which == EXTENDED else f"{s.name}+ft"

    def redo_hint(self, s: StageSpec) -> str:
        return "pass --overwrite to start over"


def headers(cfg: QuickstartConfig, windows: list[int], target: int) -> dict[str, str]:
    """The header printed before each runner phase (the five steps of the quick start)."""
    return {"base-eval": f"[1/5] evaluate the shipped model at {windows} tokens (n={cfg.eval_samples * cfg.eval_depths} "
                         "per length)",
            "extend": f"[2/5] extend RoPE x{cfg.factor} ({', '.join(cfg.methods)}) and evaluate training-free",
            "pack": f"[3/5] pack {cfg.sft_records} synthetic passkey conversations into {target}-token packs",
            "train": f"[4/5] continue training ({cfg.steps} steps per method, ring attention on {cfg.sp_degree} ranks)",
            "eval": "[5/5] evaluate the trained models"}


def run_quickstart(cfg: QuickstartConfig, overwrite: bool = False) -> dict:
    """Run every step (resuming an earlier run in ``cfg.out``) and write ``out/report``; returns the summary dict
    (also report/summary.json)."""
    cfg.validate()  # fields may have changed since the config was built
    base = base_model(cfg)
    recipe = parse_recipe(quickstart_recipe(cfg, base), RECIPE_PATH)
    titles = headers(cfg, list(recipe.eval.passkey_lengths), recipe.stages[0].context)
    estimates = stage_estimates(cfg)

    def announce(phase: str, stages: list[StageSpec]) -> None:
        if phase in titles:
            print(f"\n== {titles[phase]}; {eta_note(estimates, quickstart_timings(run.timings, done_only=True))}",
                  flush=True)

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    run = RecipeRun(recipe, cfg.out, progress=cfg.progress, layout=QuickstartLayout(cfg.out), announce=announce,
                    marker_data=cfg.to_dict())
    return run.run(overwrite, report=lambda r, seconds: write_report(QuickstartView.of(r, cfg), seconds))
