"""``longctx organism``: reproduce (``train``) or measure (``check``) the shipped tiny model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from eval_longbench.passkey import format_accuracy, passkey_cells, per_length
from longctx.core.errors import LongctxError
from longctx.core.io import atomic_write_json, check_out_vs_inputs
from longctx.models.organism import CHECK_SEED, shipped_model_dir
from longctx.organism.recipe import OrganismRecipe
from longctx.organism.train import train_organism
from longctx.train.config import apply_overrides

DESCRIPTION = """\
The tiny pretrained model shipped in longctx/assets/organism: a 0.46M-parameter Llama with a byte
tokenizer and a 512-token context, pretrained by `longctx train` on chat-formatted passkey tasks in
RULER-style noise (longctx/assets/organism/MODEL_CARD.md). It retrieves the key inside 512 tokens and fails far beyond, so a context
extension is visible on a laptop CPU (see `longctx quickstart`).

subcommands:
  train   reproduce the model: random init -> passkey packs -> longctx train -> OUT/model
  check   passkey accuracy per context length of the shipped model (or --model DIR)
"""

EPILOG = """\
examples:
  longctx organism check                                   # the shipped model, 256..2048 tokens
  longctx organism check --model runs/organism/model --lengths 512,2048 --samples 20
  longctx organism train --out runs/organism               # ~15 min on 2 CPU cores
  longctx organism train --out runs/organism --set steps=500 --set lr=1e-3
"""


def _lengths(text: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise LongctxError(f"--lengths: {text!r} is not a comma-separated list of integers") from None
    if not out or min(out) < 64:
        raise LongctxError(f"--lengths: need lengths >= 64, got {text!r}")
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="longctx organism", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="{train,check}")
    t = sub.add_parser("train", help="reproduce the shipped model with the project's trainer",
                       description="Write OUT/init (random weights), OUT/packs and OUT/packs-mixed (passkey data), "
                       "OUT/run and OUT/run-mixed (trainer checkpoints, metrics.jsonl; phase 1 at 512 tokens, phase 2 "
                       "at mixed lengths) and OUT/model (safetensors + config + tokenizer). Rerunning the same command "
                       "resumes from the newest checkpoint.")
    t.add_argument("--out", required=True, help="output directory")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe field (longctx.organism.recipe.OrganismRecipe), e.g. steps=500")
    t.add_argument("--print-recipe", action="store_true", help="print the recipe as JSON and exit")
    t.add_argument("--no-progress", action="store_true")
    c = sub.add_parser("check", help="passkey accuracy per length",
                       description="Greedy passkey retrieval (chat prompt, exact 5-digit match), pooled over needle "
                       "depths, per context length. Default: the shipped model.")
    c.add_argument("--model", help="checkpoint directory (default: the shipped model)")
    c.add_argument("--lengths", default="256,512,1024,2048", help="prompt lengths in tokens (default: 256,512,1024,2048)")
    c.add_argument("--samples", type=int, default=20, help="samples per length, spread over 5 depths (default: 20)")
    c.add_argument("--seed", type=int, default=None, help="evaluation seed (default: the model card's)")
    c.add_argument("--out", help="also write the per-length results (JSON) and every cell (results.json) here")
    c.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str]) -> int:
    a = build_parser().parse_args(argv)
    if a.cmd == "train":
        recipe = apply_overrides(OrganismRecipe(), a.overrides)  # the trainer's --set parser
        if a.print_recipe:
            print(json.dumps(recipe.to_dict(), indent=2))
            return 0
        summary = train_organism(a.out, recipe, progress=not a.no_progress)
        print(f"longctx organism train: {summary['step']} steps ({summary['status']}) in {summary['seconds']:.0f} s; "
              f"model in {summary.get('model', a.out + '/run (resume by rerunning)')}")
        return 0

    if a.samples < 5 or a.samples % 5:
        raise LongctxError(f"--samples: must be a positive multiple of 5 (5 depths), got {a.samples}")
    model = Path(a.model) if a.model else shipped_model_dir()
    out = Path(a.out) if a.out else None
    if out:
        check_out_vs_inputs(out, [model])
    cells = passkey_cells(model, _lengths(a.lengths), samples_per_cell=a.samples // 5,
                          seed=CHECK_SEED if a.seed is None else a.seed,
                          results=out / "results.json" if out else None, progress=not a.no_progress)
    acc = per_length(cells)
    context = json.loads((model / "config.json").read_text()).get("max_position_embeddings")
    print(f"{model}: passkey accuracy (greedy, exact match, chat prompt)")
    print(format_accuracy(acc, context))
    if out:
        atomic_write_json(out / "accuracy.json", {"model": str(model), "per_length": {str(k): v for k, v in acc.items()}})
    return 0
