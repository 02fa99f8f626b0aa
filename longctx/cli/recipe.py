"""``longctx recipe``: staged context extension (extend -> data -> pack -> train -> evaluate, per stage) from one YAML."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from longctx.recipe.runner import RecipeRun, dry_run
from longctx.recipe.spec import load_recipe

DESCRIPTION = """\
Run a context-extension schedule from one file, as GLM-4 went 2K -> 32K -> 128K: a recipe names the
base checkpoint and a list of stages; each stage extends RoPE (any `longctx extend` method and its
parameters, by registry name), builds its data (synthetic passkey conversations and/or your chat JSONL,
with a share of short records to keep short-context skill), packs it, continues training from the
previous stage's model (any `longctx train` key, including an `eval:` section for evaluation during
training) and evaluates the result (passkey heatmap, perplexity vs length).

The whole file is validated before anything runs; errors name the stage and the key. A rerun of the
same command continues where it stopped: finished stages are skipped (identified by a hash of their
resolved config and of the model they start from), an unfinished stage resumes its training from the
last checkpoint. A finished stage whose config changed is refused unless --from-stage names it.

OUT/report holds heatmaps.png (one panel per stage), accuracy_by_stage.png, ppl.png, loss.png,
summary.md + summary.json and commands.sh (the exact longctx commands of every stage).
"""

EPILOG = """\
examples:
  longctx recipe show configs/recipes/organism_512_2k_8k.yaml
  longctx recipe run configs/recipes/organism_512_2k_8k.yaml --dry-run
  longctx recipe run configs/recipes/organism_512_2k_8k.yaml --out runs/organism-8k
  longctx recipe run configs/recipes/organism_512_2k_8k.yaml --out runs/organism-8k --from-stage 8k
  longctx recipe run configs/recipes/quickstart.yaml --set stages.yarn-x8.train.steps=10 --dry-run
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="longctx recipe", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="action", required=True, metavar="{run,show}")
    run = sub.add_parser("run", help="validate, then run every stage (resumable)",
                         description="Validate the recipe, then run its stages into --out (a rerun continues).")
    run.add_argument("recipe", help="recipe YAML (see configs/recipes/)")
    run.add_argument("--out", help="output folder (default: runs/<recipe file name>)")
    run.add_argument("--dry-run", action="store_true",
                     help="validate and print the plan (what runs, what is skipped, the memory check); write nothing")
    run.add_argument("--from-stage", metavar="NAME", help="redo this stage and every stage after it")
    run.add_argument("--overwrite", action="store_true", help="delete an earlier run in --out (ours only) and start over")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="change one value of the recipe, e.g. seed=1, eval.samples=10, stages.2k.train.steps=5")
    show = sub.add_parser("show", help="validate and print the resolved recipe (JSON)",
                          description="Validate the recipe and print it with every default filled in.")
    show.add_argument("recipe", help="recipe YAML")
    show.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="change one value of the recipe (as for run)")
    return p


def main(argv: list[str]) -> int:
    a = build_parser().parse_args(argv)
    recipe = load_recipe(a.recipe, a.overrides)
    if a.action == "show":
        print(json.dumps(recipe.to_dict(), indent=2))
        return 0
    out = a.out or str(Path("runs") / Path(a.recipe).stem)
    if a.dry_run:
        print(dry_run(recipe, out, from_stage=a.from_stage))
        return 0
    RecipeRun(recipe, out, from_stage=a.from_stage, progress=not a.no_progress).run(overwrite=a.overwrite)
    print(f"\nrecipe done; report in {Path(out) / 'report'}")
    return 0
