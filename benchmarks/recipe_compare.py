"""The staged-extension comparison on the shipped organism, at one training budget: two stages (512 -> 2K -> 8K)
vs one stage straight to 8K, each with YaRN, PI (linear) and ABF, and each with full fine-tuning, LoRA (rank 16
on the attention projections) or LoRA+ (LongLoRA's: LoRA plus trainable embeddings and norms) at the same steps
and learning rate. Writes one recipe per cell into --work, runs each with `longctx recipe run` and prints one
markdown table (passkey at 512 / 8K with n, ppl at 512 / 8K, training CPU seconds, passkey at 8K by needle
depth). About 10 CPU-minutes a cell on 2 cores; a finished cell is skipped on a rerun (the recipe runner's own
resume).

    python benchmarks/recipe_compare.py --work runs/recipe-compare                     # schedules x methods, full
    python benchmarks/recipe_compare.py --work runs/recipe-compare --schedules two-stage --methods yarn \
        --peft full,lora,lora+                                                          # full vs LoRA vs LoRA+
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEDULES = {"two-stage": ROOT / "configs/recipes/organism_512_2k_8k.yaml",
             "one-stage": ROOT / "configs/recipes/organism_8k_one_stage.yaml"}
LORA = {"method": "lora", "r": 16, "alpha": 32}
"""LoRA's cells: rank 16 (a quarter of the organism's 128 hidden), alpha 2r, the default targets (the attention
projections), the stages' own learning rates (LongLoRA trained LoRA and full fine-tuning at the same rate)."""
PEFT = {"full": None, "lora": {**LORA, "train_embeddings_norms": False},
        "lora+": {**LORA, "train_embeddings_norms": True}}


def variant(raw: dict, method: str, peft: str = "full") -> dict:
    """``raw`` with every stage's extension done by ``method`` (abf: the NTK-aware base for the stage's factor)
    and every stage trained as ``peft`` says (a key of :data:`PEFT`). The recipe's own method with full
    fine-tuning leaves it as shipped, so that cell is the shipped recipe's run (and a finished run of it in
    ``--work`` is reused, not retrained)."""
    from rope_scaling.basic import ntk_base

    out = copy.deepcopy(raw)
    if PEFT[peft] is not None:
        for s in out["stages"]:
            s["train"] = {**s.get("train", {}), "peft": dict(PEFT[peft])}
    if all(s["extend"]["method"] == method for s in out["stages"]):
        return out
    for s in out["stages"]:
        factor = s["extend"]["factor"]
        # target_length, not factor: after an ABF stage the config records the new length as the trained one
        s["extend"] = {"method": method, "target_length": 512 * factor}
        if method == "abf":
            s["extend"]["rope_theta"] = float(round(ntk_base(10000.0, factor, 32)))
    return out


def depths(run: Path) -> str:
    """The last stage's 8K passkey accuracy per needle depth, ``a / b / ...`` from shallow to deep."""
    last = max((run / "stages").iterdir())
    records = json.loads((last / "eval" / "needle" / "results.json").read_text())["records"]
    cells = sorted((r["depth"], r["score"]) for r in records.values() if r["length"] > 4096)
    return " / ".join(f"{score:g}" for _, score in cells)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="runs/recipe-compare")
    p.add_argument("--schedules", default=",".join(SCHEDULES), help="comma-separated: " + ", ".join(SCHEDULES))
    p.add_argument("--methods", default="yarn,linear,abf")
    p.add_argument("--peft", default="full", help="comma-separated: " + ", ".join(PEFT))
    a = p.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    cells = [(s, m, t) for s in a.schedules.split(",") for m in a.methods.split(",") for t in a.peft.split(",")]
    for sched, method, peft in cells:
        name = f"{sched}-{method}" + ("" if peft == "full" else f"-{peft}")
        recipe = work / f"{name}.yaml"
        raw = yaml.safe_load(SCHEDULES[sched].read_text())
        recipe.write_text(yaml.safe_dump(variant(raw, method, peft), sort_keys=False))
        subprocess.run([sys.executable, "-m", "longctx", "recipe", "run", str(recipe), "--out", str(work / name),
                        "--no-progress"], check=True)
        summary = json.loads((work / name / "report" / "summary.json").read_text())
        last = summary["rows"][-1]
        cpu = sum(r.get("train_cpu_seconds", 0) for r in summary["rows"])
        rows.append(f"| {sched} | {method} | {peft} | {last['passkey']['512']['accuracy']:.2f} (n={last['passkey']['512']['n']}) | "
                    f"{last['passkey']['8192']['accuracy']:.2f} (n={last['passkey']['8192']['n']}) | "
                    f"{last['ppl']['512']:.3f} | {last['ppl']['8192']:.3f} | {cpu:.0f} | {depths(work / name)} |")
    print("| schedule | method | training | passkey 512 | passkey 8K | ppl 512 | ppl 8K | train CPU s | 8K by depth |\n"
          "|---|---|---|---:|---:|---:|---:|---:|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
