"""Reproduce the shipped tiny model: its recipe (:func:`longctx.organism.recipe.organism_recipe`) on the recipe runner.

    longctx organism train --out runs/organism            # the recipe of longctx/assets/organism
    python -c "from longctx.organism.train import train_organism; train_organism('runs/organism')"

Layout of ``out``: ``init/`` (random weights), ``packs/`` (phase 1: 512-token conversations),
``run/`` (phase-1 trainer output: checkpoints, metrics.jsonl, config.yaml, final/), ``packs-mixed/``
and ``run-mixed/`` (phase 2: mixed lengths), ``model/`` (the exported model: safetensors, config,
tokenizer; no optimizer state), ``configs/`` (trainer YAML), ``stages/`` (the runner's progress) and
``recipe.json``. Rerunning resumes: the runner's rule (finished phases are kept, training continues
from its newest checkpoint).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from longctx.core.io import atomic_dir
from longctx.organism.recipe import RECIPE_PATH, OrganismRecipe, organism_recipe
from longctx.recipe.layout import Layout
from longctx.recipe.runner import RecipeRun
from longctx.recipe.spec import StageSpec, parse_recipe, trainer_settings
from longctx.train.config import from_dict

MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "chat_template.jinja")
FOLDERS = {"pretrain": ("packs", "run"), "mixed": ("packs-mixed", "run-mixed")}
"""Stage -> (packs folder, trainer folder)."""


class OrganismLayout(Layout):
    """``init/``, ``packs/`` + ``run/`` (phase 1), ``packs-mixed/`` + ``run-mixed/`` (phase 2), ``configs/<phase>.yaml``."""

    kind = "organism run"

    def init(self) -> Path:
        return self.out / "init"

    def packs(self, s: StageSpec) -> Path:
        return self.out / FOLDERS[s.name][0]

    def train(self, s: StageSpec) -> Path:
        return self.out / FOLDERS[s.name][1]

    def train_yaml(self, s: StageSpec) -> Path:
        return self.out / "configs" / f"{s.name}.yaml"


def copy_model(src: str | Path, dst: str | Path, overwrite: bool = True) -> Path:
    """Copy only what a user needs to load the model (weights, config, tokenizer), atomically."""
    src = Path(src)
    with atomic_dir(dst, overwrite=overwrite, command="organism train", legacy=("config.json", "model.safetensors")) as tmp:
        for name in MODEL_FILES:
            if (src / name).exists():
                shutil.copy2(src / name, tmp / name)
                (tmp / name).chmod(0o644)  # save_pretrained may leave 0600; shipped files are for everyone
    return Path(dst)


def export(run: RecipeRun, seconds: float) -> dict:
    """The run's result: steps and training seconds of both phases, and the exported model (``out/model``)."""
    steps = sum(from_dict(trainer_settings(run.recipe.stage(s["name"]).train)).train.steps for s in run.stages)
    train_s = sum(s["timings_s"].get("train", 0.0) for s in run.stages)
    model = copy_model(run.stages[-1]["output"], run.out / "model")
    return {"status": "done", "step": steps, "seconds": train_s, "total_seconds": round(seconds, 1), "model": str(model)}


def train_organism(out: str | Path, recipe: OrganismRecipe | None = None, *, progress: bool = True) -> dict:
    """Run the whole recipe into ``out`` (phase 1, then phase 2 when ``mixed_steps``); returns the summary."""
    recipe = recipe or OrganismRecipe()
    recipe.validate()  # fields may have been set after construction (longctx organism train --set)
    run = RecipeRun(parse_recipe(organism_recipe(recipe), RECIPE_PATH), out, progress=progress,
                    layout=OrganismLayout(out))
    return run.run(report=export)
