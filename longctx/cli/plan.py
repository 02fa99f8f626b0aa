"""``longctx plan``: will my run fit? The per-GPU memory table, the largest sequence length that
fits, the recommended sequence-parallel degree and the step time, before any GPU is rented.

    longctx plan --model llama-3-8b --seq-len 131072 --gpus 8 --gpu-mem 80 --sp 8 --sharding fsdp
    longctx plan --model path/to/checkpoint --seq-len 65536 --tiled-mlp --json
"""

from __future__ import annotations

import argparse
import json

from longctx.core.errors import LongctxError
from longctx.core.sizing import auto_loss_chunk
from longctx.distributed.layouts import DEFAULT_LAYOUT, LAYOUTS, get_layout, layouts_help
from longctx.plan.planner import plan_run
from longctx.plan.report import render_json, render_table
from longctx.plan.search import lora_note, max_seq_len, recommend_sp
from longctx.plan.shapes import (
    ATTN_KERNELS,
    CHECKPOINTINGS,
    PRESETS,
    ModelShape,
    RunShape,
    check_int,
    check_number,
    load_model_shape,
)

SHARDINGS_RUN = ("none", "fsdp")
"""The sharding modes ``longctx train`` runs (parallel.fsdp); the memory model also knows zero2/zero3."""
DTYPES_RUN = ("bf16", "fp32")
"""The dtypes ``longctx train`` runs (model.dtype)."""
PEFT_METHODS = ("none", "lora")
"""The ``peft.method`` values ``longctx train`` runs."""
LORA_DEFAULT_RANK = 8
"""``peft.r``'s default in ``longctx train``'s config (``PeftConfig.r``; tests/plan/test_plan_matches_trainer checks)."""


def _loss_chunk(text: str) -> int:
    """``--loss-chunk``: a positive integer, or auto / 0 (the automatic rule)."""
    if text.strip().lower() == "auto":
        return 0
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or auto, got {text!r}") from None
from longctx.plan.throughput import PEAK_FLOPS, step_time


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="longctx plan",
        description="Predict the per-GPU memory of a long-context training run, term by term (parameters, "
        "gradients, optimizer states, activations, attention workspace, ring buffers, logits/loss, margin), "
        "say whether it fits, find the largest sequence length that fits and the smallest sequence-parallel "
        "degree that makes it fit, and estimate the step time from FLOPs. The memory model and its "
        "assumptions are documented in docs/plan.md.",
        epilog="examples:\n"
        "  longctx plan --model llama-3-8b --seq-len 131072 --gpus 8 --sp 8 --sharding fsdp --tiled-mlp "
        "--checkpoint-offload\n"
        "  longctx plan --model path/to/checkpoint --seq-len 65536 --json\n"
        "every flag is a `longctx train` config key (named in its help) or a property of the machine/launch;\n"
        "the planner offers nothing the trainer cannot run.\n"
        "exit status: 0 fits, 1 does not fit, 2 bad arguments.",
        formatter_class=_Formatter,
    )
    p.add_argument("--model", required=True,
                   help=f"checkpoint directory (model.path), config.json, or a preset: {', '.join(PRESETS)}")
    p.add_argument("--seq-len", type=int, required=True, help="tokens per training sequence (pack)")
    p.add_argument("--gpus", type=int, default=1, help="total number of GPUs")
    p.add_argument("--gpu-mem", type=float, default=80.0, help="usable memory per GPU, GiB (plan_gpu_mem_gib)")
    p.add_argument("--gpu", default="h100", choices=list(PEAK_FLOPS), help="GPU type for the peak FLOP/s")
    p.add_argument("--peak-tflops", type=float, default=None, help="override the GPU's dense peak TFLOP/s")
    p.add_argument("--mfu", type=float, default=0.4, help="model FLOPs utilisation assumed for the step time")
    p.add_argument("--sp", type=int, default=1, help="sequence-parallel degree, ranks sharing one sequence (parallel.sp_degree)")
    p.add_argument("--layout", default=DEFAULT_LAYOUT, choices=list(LAYOUTS),
                   help=f"sequence-parallel layout (parallel.layout): {layouts_help()}")
    p.add_argument("--micro-batch", type=int, default=1, help="sequences per SP group per forward/backward (train.micro_batch)")
    p.add_argument("--sharding", default="none", choices=SHARDINGS_RUN,
                   help="none = a full replica per rank; fsdp = parameters, gradients and AdamW states sharded over "
                   "all ranks (parallel.fsdp)")
    p.add_argument("--checkpointing", default="full", choices=CHECKPOINTINGS,
                   help="activation checkpointing (model.gradient_checkpointing)")
    p.add_argument("--checkpoint-offload", action="store_true",
                   help="keep the layer checkpoints in host RAM (model.checkpoint_offload, ALST); needs "
                   "--checkpointing full")
    p.add_argument("--loss-chunk", type=_loss_chunk, default=0,
                   help="tokens per loss chunk (train.loss_chunk); auto or 0 = min(H, 2^23/V) rounded to 64 "
                   "(longctx.core.sizing.auto_loss_chunk); full logits are never built")
    p.add_argument("--tiled-mlp", action="store_true",
                   help="run each MLP over sequence tiles, recomputed in backward (train.tiled_mlp, ALST TiledMLP)")
    p.add_argument("--mlp-tiles", type=int, default=0,
                   help="tiles for --tiled-mlp (train.mlp_tiles); 0 = ALST's ceil(tokens / hidden)")
    p.add_argument("--attn-kernel", default="sdpa", choices=ATTN_KERNELS,
                   help="attention kernel (model.attn_implementation): flash = flash_attention_2/3 (fp32 dq "
                   "accumulator), sdpa = every other implementation (sdpa, longctx_varlen, longctx_ring)")
    p.add_argument("--dtype", default="bf16", choices=DTYPES_RUN,
                   help="model.dtype: bf16 (auto on CUDA: float32 weights, bf16 compute) or fp32 (float32)")
    p.add_argument("--peft", default="none", choices=PEFT_METHODS,
                   help="none = full fine-tuning; lora = LoRA adapters on a frozen base (peft.method)")
    p.add_argument("--lora-rank", type=int, default=None,
                   help=f"LoRA rank r, with --peft lora (peft.r; default {LORA_DEFAULT_RANK}, the key's)")
    p.add_argument("--lora-targets", default="attention",
                   help="linear layers LoRA adapts (peft.target_modules): attention (q/k/v/o, the key's []), "
                   "all-linear, or names joined by commas (q_proj,v_proj)")
    p.add_argument("--lora-train-embeddings-norms", action="store_true",
                   help="LongLoRA's LoRA+: the embedding and every norm also train (peft.train_embeddings_norms: "
                   "true; the trainer's auto turns it on for an extended RoPE)")
    p.add_argument("--lora-dropout", type=float, default=0.0,
                   help="dropout on each adapter's input (peft.dropout): above 0 each adapted linear keeps a dropped "
                   "copy of its input")
    p.add_argument("--frag-margin", type=float, default=0.05, help="allocator fragmentation margin (fraction)")
    p.add_argument("--overhead", type=float, default=1.0, help="fixed per-GPU overhead, GiB (CUDA context, NCCL)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of the table")
    return p


def run_from_args(a: argparse.Namespace, shape: ModelShape | None = None) -> RunShape:
    """The RunShape of the flags (each one a ``longctx train`` key, see ``longctx.plan.options``); with
    ``shape`` the automatic loss chunk is resolved (without it, a placeholder that validates the flags)."""
    if a.checkpoint_offload and a.checkpointing != "full":
        raise LongctxError("--checkpoint-offload: needs --checkpointing full (model.checkpoint_offload needs "
                           "model.gradient_checkpointing)")
    if a.mlp_tiles and not a.tiled_mlp:
        raise LongctxError(f"--mlp-tiles: {a.mlp_tiles} tiles set without --tiled-mlp")
    if a.loss_chunk < 0:
        raise LongctxError(f"--loss-chunk: must be a positive integer or auto/0, got {a.loss_chunk}")
    if a.mlp_tiles < 0:
        raise LongctxError(f"--mlp-tiles: must be >= 0 (0 = ceil(tokens / hidden)), got {a.mlp_tiles}")
    lora = a.peft == "lora"
    if not lora and (a.lora_rank is not None or a.lora_targets != "attention" or a.lora_train_embeddings_norms
                     or a.lora_dropout):
        raise LongctxError("--lora-rank/--lora-targets/--lora-train-embeddings-norms/--lora-dropout: need --peft lora")
    rank = LORA_DEFAULT_RANK if a.lora_rank is None else a.lora_rank
    if lora:
        check_int("lora-rank", rank, low=1)
    chunk = a.loss_chunk or (auto_loss_chunk(shape.vocab_size, shape.hidden_size) if shape is not None else 1)
    return RunShape(
        seq_len=a.seq_len, gpus=a.gpus, gpu_mem_gib=a.gpu_mem, sp=a.sp, layout=a.layout, micro_batch=a.micro_batch,
        sharding=a.sharding, checkpointing=a.checkpointing, checkpoint_offload=a.checkpoint_offload,
        loss_chunk=chunk, tiled_mlp=a.mlp_tiles if a.tiled_mlp else 1, dtype=a.dtype, attn_kernel=a.attn_kernel,
        # bf16 = the trainer's model.dtype: auto on CUDA (float32 weights, bf16 compute); fp32 has no second copy
        master_weights="params" if a.dtype == "bf16" else "none",
        foreach_optimizer=False, frag_margin=a.frag_margin, overhead_gib=a.overhead,
        lora_rank=rank if lora else 0, lora_targets=a.lora_targets if lora else "attention",
        lora_embeddings_norms=a.lora_train_embeddings_norms, lora_dropout=a.lora_dropout,
    )


def main(argv: list[str]) -> int:
    a = build_parser().parse_args(argv)
    check_number("mfu", a.mfu, low=0.0, high=1.0, low_open=True)
    if a.peak_tflops is not None:  # 0 is refused, never read as "not given"
        check_number("peak-tflops", a.peak_tflops, low=0.0, low_open=True)
    run_from_args(a)  # validates every other numeric flag before any file is read
    shape = load_model_shape(a.model)
    run = run_from_args(a, shape)
    refused = get_layout(run.layout).check_heads(run.sp, shape.num_heads, shape.num_kv_heads)
    if refused:  # longctx train refuses this run, so it fits nothing, whatever its memory
        raise LongctxError(f"--layout: {refused} (--sp {run.sp}, {shape.name})")
    result = plan_run(shape, run)
    longest = max_seq_len(shape, run)
    sp = recommend_sp(shape, run)
    peak = a.peak_tflops * 1e12 if a.peak_tflops is not None else None
    time = step_time(shape, run, gpu=a.gpu, mfu=a.mfu, peak_flops=peak)
    note = lora_note(shape, run)
    if a.json:
        print(json.dumps({**render_json(result, longest, sp, time), "lora_note": note}, indent=2))
    else:
        print(render_table(result, longest, sp, time) + (f"\nnote: {note}" if note else ""))
    return 0 if result.fits else 1
