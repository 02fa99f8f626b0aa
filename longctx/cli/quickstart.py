"""``longctx quickstart``: the whole pipeline on the shipped tiny model, on CPU, in a few minutes."""

from __future__ import annotations

import argparse

from longctx.core.errors import LongctxError
from longctx.quickstart.config import full, short
from longctx.quickstart.pipeline import run_quickstart

DESCRIPTION = """\
See a context extension work end to end, on a laptop CPU, without downloading a model:

  1. evaluate the shipped tiny model (context 512): passkey heatmap at 1x-8x its context
  2. extend its RoPE 8x with `longctx extend`: YaRN, and for comparison position interpolation
     (linear) and ABF (a larger rope_theta)
  3. pack synthetic long passkey conversations with `longctx pack`
  4. continue training each extended model with `longctx train` on 2 sequence-parallel ranks
     (ring attention over gloo)
  5. evaluate again and write OUT/report: heatmap_before.png, heatmap_after.png, ppl.png,
     summary.md + summary.json (accuracy and perplexity per length per method) and commands.sh
     (the exact longctx commands for each step, to repeat on your own checkpoint)

It is the recipe configs/recipes/quickstart.yaml (built from the flags) on the recipe runner: a rerun of
the same command continues where it stopped (--overwrite starts over).
"""

EPILOG = """\
examples:
  longctx quickstart                          # ~10 min on 2 free cores (more if shared), writes runs/quickstart
  longctx quickstart --full                   # 400 steps per method, n = 50 per length (~2.9x as long)
  longctx quickstart --steps 10 --eval-samples 1 --out /tmp/qs   # a smoke run
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="longctx quickstart", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/quickstart", help="output folder (default: runs/quickstart)")
    p.add_argument("--full", action="store_true", help="the longer run: 400 steps per method, 50 prompts per length")
    p.add_argument("--model", help="checkpoint to use instead of the shipped tiny model (must be small for a CPU)")
    p.add_argument("--methods", help="comma-separated RoPE methods to compare (default: yarn,linear,abf)")
    p.add_argument("--steps", type=int, help="training steps per method (default: 100; --full: 400)")
    p.add_argument("--sft-records", type=int, help="synthetic conversations to pack (default: 200; --full: 800)")
    p.add_argument("--eval-samples", type=int, help="passkey prompts per (length, depth) cell (default: 4; --full: 10)")
    p.add_argument("--eval-depths", type=int, help="needle depths per length (default: 5)")
    p.add_argument("--multiples", help="evaluated lengths as multiples of the context (default: 1,2,4,8)")
    p.add_argument("--factor", type=int, help="extension factor (default: 8)")
    p.add_argument("--lr", type=float, help="peak learning rate (default: 1e-3)")
    p.add_argument("--train-on", choices=["assistant", "all"], help="tokens with a loss: all (default) or only the assistant replies")
    p.add_argument("--seed", type=int, help="seed of data, evaluation and training (default: 0)")
    p.add_argument("--overwrite", action="store_true",
                   help="start over in an existing quick start folder (default: continue it; finished steps are kept)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def config_from_args(a: argparse.Namespace):
    """Map the flags onto a :class:`~longctx.quickstart.config.QuickstartConfig` (which validates itself)."""
    given: dict = {"out": a.out, "progress": not a.no_progress}
    if a.model:
        given["model"] = a.model
    if a.methods:
        given["methods"] = [m.strip() for m in a.methods.split(",") if m.strip()]
    for key in ("steps", "sft_records", "eval_samples", "eval_depths", "factor", "lr", "seed", "train_on"):
        value = getattr(a, key)
        if value is not None:
            given[key] = value
    if a.multiples:
        try:
            given["multiples"] = [int(x) for x in a.multiples.split(",") if x.strip()]
        except ValueError:
            raise LongctxError(f"--multiples: {a.multiples!r} is not a list of integers, e.g. 1,2,4,8") from None
    return full(**given) if a.full else short(**given)


def main(argv: list[str]) -> int:
    a = build_parser().parse_args(argv)
    cfg = config_from_args(a)
    run_quickstart(cfg, overwrite=a.overwrite)
    return 0
