"""The staged-extension comparison on the shipped organism, at one training budget: two stages (512 -> 2K -> 8K)
vs one stage straight to 8K, each with YaRN, PI (linear) and ABF. Writes one recipe per cell into --work, runs
each with `longctx recipe run` and prints one markdown table (passkey at 512 / 8K with n, ppl at 512 / 8K,
training CPU seconds, passkey at 8K by needle depth). About 6 x 10 CPU-minutes on 2 cores; a finished cell is
skipped on a rerun (the recipe runner's own resume).

    python benchmarks/recipe_compare.py --work runs/recipe-compare
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


def variant(raw: dict, method: str) -> dict:
    """``raw`` with every stage's extension done by ``method`` (abf: the NTK-aware base for the stage's factor).
    The recipe's own method leaves it as shipped, so that cell is the shipped recipe's run (and a finished
    run of it in ``--work`` is reused, not retrained)."""
    from rope_scaling.basic import ntk_base

    out = copy.deepcopy(raw)
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
    last = sorted((run / "stages").iterdir())[-1]
    records = json.loads((last / "eval" / "needle" / "results.json").read_text())["records"]
    cells = sorted((r["depth"], r["score"]) for r in records.values() if r["length"] > 4096)
    return " / ".join(f"{score:g}" for _, score in cells)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="runs/recipe-compare")
    p.add_argument("--methods", default="yarn,linear,abf")
    a = p.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for sched, path in SCHEDULES.items():
        for method in a.methods.split(","):
            name = f"{sched}-{method}"
            recipe = work / f"{name}.yaml"
            recipe.write_text(yaml.safe_dump(variant(yaml.safe_load(path.read_text()), method), sort_keys=False))
            subprocess.run([sys.executable, "-m", "longctx", "recipe", "run", str(recipe), "--out", str(work / name),
                            "--no-progress"], check=True)
            summary = json.loads((work / name / "report" / "summary.json").read_text())
            last = summary["rows"][-1]
            cpu = sum(r.get("train_cpu_seconds", 0) for r in summary["rows"])
            rows.append(f"| {sched} | {method} | {last['passkey']['512']['accuracy']:.2f} (n={last['passkey']['512']['n']}) | "
                        f"{last['passkey']['8192']['accuracy']:.2f} (n={last['passkey']['8192']['n']}) | "
                        f"{last['ppl']['512']:.3f} | {last['ppl']['8192']:.3f} | {cpu:.0f} | {depths(work / name)} |")
    print("| schedule | method | passkey 512 | passkey 8K | ppl 512 | ppl 8K | train CPU s | 8K by depth |\n"
          "|---|---|---:|---:|---:|---:|---:|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
