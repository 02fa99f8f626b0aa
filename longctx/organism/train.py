"""Reproduce the shipped tiny model: init -> passkey packs -> the project's trainer -> safetensors.

    longctx organism train --out runs/organism            # the recipe of longctx/assets/organism
    python -c "from longctx.organism.train import train_organism; train_organism('runs/organism')"

Layout of ``out``: ``init/`` (random weights), ``packs/`` (phase 1: 512-token conversations),
``run/`` (phase-1 trainer output: checkpoints, metrics.jsonl, config.yaml, final/), ``packs-mixed/``
and ``run-mixed/`` (phase 2: mixed lengths), ``model/`` (the exported model: safetensors, config,
tokenizer; no optimizer state) and ``recipe.json``. Rerunning resumes the trainer.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from longctx.core.io import atomic_dir, atomic_write_json
from longctx.organism.recipe import OrganismRecipe, mixed_run_config, run_config

MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "chat_template.jinja")


def make_init(recipe: OrganismRecipe, out: str | Path) -> Path:
    """The random starting checkpoint (skipped when it already exists, so reruns resume)."""
    from longctx.models.tiny import make_tiny_checkpoint

    out = Path(out)
    if (out / "config.json").exists():
        return out
    return make_tiny_checkpoint(out, "llama", seed=recipe.init_seed, hidden_size=recipe.hidden_size,
                                num_layers=recipe.num_layers, num_heads=recipe.num_heads,
                                num_kv_heads=recipe.num_kv_heads, intermediate_size=recipe.intermediate_size,
                                max_position_embeddings=recipe.context, rope_theta=recipe.rope_theta)


def make_packs(recipe: OrganismRecipe, out: str | Path, progress: bool = True) -> Path:
    from longctx.recipe.pretrain_data import write_pretrain_packs
    from packing.writer import MANIFEST

    out = Path(out)
    if (out / MANIFEST).exists():  # written last by the atomic writer: a complete pack dir
        return out
    return write_pretrain_packs(out, recipe.num_sequences, seq_len=recipe.context, seed=recipe.data_seed,
                                answer_weight=recipe.answer_weight, progress=progress)


def copy_model(src: str | Path, dst: str | Path, overwrite: bool = True) -> Path:
    """Copy only what a user needs to load the model (weights, config, tokenizer), atomically."""
    src = Path(src)
    with atomic_dir(dst, overwrite=overwrite, command="organism train", legacy=("config.json", "model.safetensors")) as tmp:
        for name in MODEL_FILES:
            if (src / name).exists():
                shutil.copy2(src / name, tmp / name)
                (tmp / name).chmod(0o644)  # save_pretrained may leave 0600; shipped files are for everyone
    return Path(dst)


def make_mixed_packs(recipe: OrganismRecipe, out: str | Path, progress: bool = True) -> Path:
    from longctx.recipe.pretrain_data import write_mixed_packs
    from packing.writer import MANIFEST

    out = Path(out)
    if (out / MANIFEST).exists():
        return out
    return write_mixed_packs(out, recipe.mixed_steps * recipe.batch, pack_len=recipe.context,
                             min_len=recipe.mixed_min_len, seed=recipe.data_seed, answer_weight=recipe.answer_weight,
                             progress=progress)


def train_organism(out: str | Path, recipe: OrganismRecipe | None = None, *, progress: bool = True) -> dict:
    """Run the whole recipe into ``out`` (phase 1, then phase 2 when ``mixed_steps``); returns the trainer summary."""
    from longctx.train.run import run_training

    recipe = recipe or OrganismRecipe()
    recipe.validate()  # fields may have been set after construction (longctx organism train --set)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "recipe.json", recipe.to_dict())
    init = make_init(recipe, out / "init")
    packs = make_packs(recipe, out / "packs", progress=progress)
    cfg = run_config(recipe, init, packs, out / "run")
    cfg.log.progress = progress
    summary = run_training(cfg)
    summary.pop("history", None)
    final = out / "run" / "final"
    if summary["status"] == "done" and recipe.mixed_steps:
        mixed = make_mixed_packs(recipe, out / "packs-mixed", progress=progress)
        cfg2 = mixed_run_config(recipe, final, mixed, out / "run-mixed")
        cfg2.log.progress = progress
        phase1 = summary
        summary = run_training(cfg2)
        summary.pop("history", None)
        summary["seconds"] += phase1["seconds"]
        summary["step"] += phase1["step"]
        final = out / "run-mixed" / "final"
    if summary["status"] == "done":
        summary["model"] = str(copy_model(final, out / "model"))
    return summary
