"""``longctx plan``: will my run fit? The per-GPU memory table, the largest sequence length that
fits, the recommended sequence-parallel degree and the step time, before any GPU is rented.

    longctx plan --model llama-3-8b --seq-len 131072 --gpus 8 --gpu-mem 80 --sp 8 --sharding zero3
    longctx plan --model path/to/checkpoint --seq-len 65536 --loss-chunk 4096 --json
"""

from __future__ import annotations

import argparse
import json

from longctx.distributed.layouts import LAYOUTS, layouts_help
from longctx.plan.planner import plan_run
from longctx.plan.report import render_json, render_table
from longctx.plan.search import max_seq_len, recommend_sp
from longctx.plan.shapes import (ATTN_KERNELS, CHECKPOINTINGS, DTYPE_BYTES, IMPLS, NORMS, OFFLOADS, PRESETS, SHARDINGS,
                                 RunShape, check_number, load_model_shape)
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
        "  longctx plan --model llama-3-8b --seq-len 131072 --gpus 8 --sp 8 --sharding zero3 --loss-chunk 4096\n"
        "  longctx plan --model path/to/checkpoint --seq-len 65536 --json\n"
        "exit status: 0 fits, 1 does not fit, 2 bad arguments.",
        formatter_class=_Formatter,
    )
    p.add_argument("--model", required=True,
                   help=f"checkpoint directory, config.json, or a preset: {', '.join(PRESETS)}")
    p.add_argument("--seq-len", type=int, required=True, help="tokens per training sequence (pack)")
    p.add_argument("--gpus", type=int, default=1, help="total number of GPUs")
    p.add_argument("--gpu-mem", type=float, default=80.0, help="usable memory per GPU, GiB")
    p.add_argument("--gpu", default="h100", choices=list(PEAK_FLOPS), help="GPU type for the peak FLOP/s")
    p.add_argument("--peak-tflops", type=float, default=None, help="override the GPU's dense peak TFLOP/s")
    p.add_argument("--mfu", type=float, default=0.4, help="model FLOPs utilisation assumed for the step time")
    p.add_argument("--sp", type=int, default=1, help="sequence-parallel degree (ranks sharing one sequence)")
    p.add_argument("--layout", default="zigzag", choices=list(LAYOUTS),
                   help=f"sequence-parallel layout (those longctx train runs): {layouts_help()}")
    p.add_argument("--micro-batch", type=int, default=1, help="sequences per SP group per forward/backward")
    p.add_argument("--sharding", default="none", choices=SHARDINGS,
                   help="none = DDP replica; zero2 = grads+optimizer sharded; zero3/fsdp = params too")
    p.add_argument("--offload", default="none", choices=OFFLOADS,
                   help="optimizer = optimizer states+grads in CPU RAM; params = the parameters too (ZeRO-3)")
    p.add_argument("--checkpointing", default="full", choices=CHECKPOINTINGS, help="activation checkpointing")
    p.add_argument("--checkpoint-offload", action="store_true", help="keep layer checkpoints in CPU RAM (ALST)")
    p.add_argument("--loss-chunk", type=int, default=0, help="tokens per loss chunk; 0 = full logits")
    p.add_argument("--loss-impl", default="hf", choices=IMPLS,
                   help="hf = unfused cross-entropy (fp32 softmax); fused = in-place fused CE (flash-attn / Liger)")
    p.add_argument("--keep-logits", action="store_true", help="the loop keeps the full logits alive through backward")
    p.add_argument("--tiled-mlp", type=int, default=1, help="MLP tiles over the sequence (ALST TiledMLP); 1 = off")
    p.add_argument("--norm", default="hf", choices=NORMS, help="RMSNorm: hf (fp32 upcast copies) or fused kernel")
    p.add_argument("--swiglu", default="hf", choices=IMPLS, help="gated MLP: hf (eager) or fused (Liger)")
    p.add_argument("--attn-kernel", default="flash", choices=ATTN_KERNELS, help="attention kernel")
    p.add_argument("--dtype", default="bf16", choices=list(DTYPE_BYTES), help="parameter/activation dtype")
    p.add_argument("--frag-margin", type=float, default=0.05, help="allocator fragmentation margin (fraction)")
    p.add_argument("--overhead", type=float, default=1.0, help="fixed per-GPU overhead, GiB (CUDA context, NCCL)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of the table")
    return p


def run_from_args(a: argparse.Namespace) -> RunShape:
    return RunShape(
        seq_len=a.seq_len, gpus=a.gpus, gpu_mem_gib=a.gpu_mem, sp=a.sp, layout=a.layout, micro_batch=a.micro_batch,
        sharding=a.sharding, offload=a.offload, checkpointing=a.checkpointing, checkpoint_offload=a.checkpoint_offload,
        loss_chunk=a.loss_chunk, loss_impl=a.loss_impl, keep_logits=a.keep_logits, tiled_mlp=a.tiled_mlp,
        dtype=a.dtype, attn_kernel=a.attn_kernel, norm=a.norm, swiglu=a.swiglu, frag_margin=a.frag_margin,
        overhead_gib=a.overhead,
    )


def main(argv: list[str]) -> int:
    a = build_parser().parse_args(argv)
    check_number("mfu", a.mfu, low=0.0, high=1.0, low_open=True)
    if a.peak_tflops is not None:  # 0 is refused, never read as "not given"
        check_number("peak-tflops", a.peak_tflops, low=0.0, low_open=True)
    run = run_from_args(a)  # validates every other numeric flag before any file is read
    shape = load_model_shape(a.model)
    result = plan_run(shape, run)
    longest = max_seq_len(shape, run)
    sp = recommend_sp(shape, run)
    peak = a.peak_tflops * 1e12 if a.peak_tflops is not None else None
    time = step_time(shape, run, gpu=a.gpu, mfu=a.mfu, peak_flops=peak)
    if a.json:
        print(json.dumps(render_json(result, longest, sp, time), indent=2))
    else:
        print(render_table(result, longest, sp, time))
    return 0 if result.fits else 1
