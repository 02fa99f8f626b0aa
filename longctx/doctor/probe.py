"""A short throughput and peak-memory probe: one training step of a model shape, measured beside
the planner's prediction for the same shape.

The model is random-initialised from its shape (no weights, no download), bf16 parameters on CUDA
(fp32 on the CPU), one sequence (``attn_implementation="longctx_varlen"``), gradient checkpointing
(non-reentrant) and the chunked loss. A "step" is forward + backward, no optimizer step (AdamW's
fp32 states of an 8B model would not leave room for long sequences on one GPU; ALST offloads them).
The planner column is ``longctx.plan.plan_run`` for the same shape (``--layers`` included) with the
optimizer offloaded, its forward+backward peak (optimizer terms left out), so the two numbers
answer the same question. ``benchmarks/bench_gpu_model.py`` builds on these helpers.

MFU = model FLOPs (``longctx.plan.throughput.sequence_flops``: 6·N·T + causal attention) / (step
seconds x the GPU's dense peak, ``PEAK_FLOPS``); ``hw_mfu`` counts the recomputed forward (x 4/3).
On the CPU the memory is the bytes of live tensors the step made (``LiveTensorBytes``), not RSS.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import time
from typing import Any, Callable

import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from longctx.core.loss import chunked_lm_loss
from longctx.distributed.hf_attention import register
from longctx.doctor.report import PASS, Check, failed_with, skipped
from longctx.plan.memory import PHASES
from longctx.plan.planner import plan_run
from longctx.plan.search import max_seq_len
from longctx.plan.shapes import ModelShape, RunShape, load_model_shape
from longctx.plan.throughput import PEAK_FLOPS, sequence_flops
from longctx.train.measure import LiveTensorBytes
from longctx.train.parallelize import enable_checkpointing

GiB = 2**30
TINY_SHAPE = ModelShape(64, 2, 4, 2, 16, 128, 512, False, False, "tiny-llama")


def llama_config(shape: ModelShape, max_len: int):
    """A transformers LlamaConfig of ``shape`` (the planner's shapes are Llama-like)."""
    return LlamaConfig(hidden_size=shape.hidden_size, intermediate_size=shape.intermediate_size,
                       num_hidden_layers=shape.num_layers, num_attention_heads=shape.num_heads,
                       num_key_value_heads=shape.num_kv_heads, head_dim=shape.head_dim, vocab_size=shape.vocab_size,
                       max_position_embeddings=max_len, rope_theta=500000.0, tie_word_embeddings=shape.tie_embeddings,
                       use_cache=False)


def build_model(shape: ModelShape, device: str, max_len: int, attn: str = "longctx_varlen"):
    """Random-initialised, bf16 on CUDA (fp32 on the CPU), gradient checkpointing on, train mode."""
    register()  # longctx_varlen, with transformers

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(llama_config(shape, max_len), dtype=dtype, attn_implementation=attn)
    enable_checkpointing(model)
    model.train()
    return model


def make_step(model, t: int, device: str, chunk: int) -> Callable[[], float]:
    """One forward + backward on ``t`` random tokens (one sequence); returns the loss."""
    vocab = model.config.vocab_size
    g = torch.Generator(device=device).manual_seed(t)
    ids = torch.randint(0, vocab, (1, t), device=device, generator=g)
    pos = torch.arange(t, device=device)[None]
    targets = torch.cat([ids[0, 1:], torch.full((1,), -100, device=device)])

    def step() -> float:
        hidden = model.model(input_ids=ids, position_ids=pos, use_cache=False).last_hidden_state
        loss = chunked_lm_loss(hidden[0], model.lm_head.weight, targets, chunk_size=chunk) / t
        loss.backward()
        model.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(step: Callable[[], float], device: str) -> dict[str, float]:
    """Seconds and peak memory (GiB; CUDA: max allocated incl. parameters; CPU: tensors the step made)."""
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        mode: Any = contextlib.nullcontext()
    else:
        mode = LiveTensorBytes()
    _sync(device)
    t0 = time.perf_counter()
    with mode:
        loss = step()
    _sync(device)
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / GiB if device.startswith("cuda") else mode.peak / GiB
    return {"seconds": seconds, "peak_gib": peak, "loss": loss}


def is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


def planner(shape: ModelShape, t: int, capacity_gib: float, chunk: int, cpu: bool = False) -> dict[str, float]:
    """The planner for this run: fwd+bwd peak (optimizer terms left out), full step, predicted max length.
    ``cpu``: the planner's CPU mode (fp32, no allocator margin or CUDA overhead), as the CPU probe runs."""
    mode = dict(dtype="fp32", frag_margin=0.0, overhead_gib=0.0, foreach_optimizer=False) if cpu else dict(dtype="bf16")
    run = RunShape(seq_len=t, gpus=1, gpu_mem_gib=capacity_gib, checkpointing="full", loss_chunk=chunk,
                   attn_kernel="sdpa", offload="optimizer", **mode)
    res = plan_run(shape, run)
    fwd_bwd = max(sum(term.bytes for term in res.breakdown if ph in term.phases and not term.name.startswith("optimizer"))
                  for ph in PHASES if ph != "step")
    fwd_bwd = fwd_bwd * (1 + run.frag_margin) + res.overhead_bytes
    return {"plan_fwd_bwd_gib": fwd_bwd / GiB, "plan_step_gib": res.total_bytes / GiB,
            "plan_max_seq": max_seq_len(shape, run, multiple=1024)}


def flops_row(shape: ModelShape, t: int, seconds: float, peak_flops: float | None) -> dict[str, float | None]:
    """tokens/s, model TFLOPs of the step, MFU and hardware MFU (None without a known peak)."""
    dense, attn = sequence_flops(shape, t)
    model_flops = dense + attn
    mfu = model_flops / (seconds * peak_flops) if peak_flops else None
    return {"tok_s": t / seconds, "model_tflops": model_flops / 1e12, "mfu": mfu, "hw_mfu": mfu * 4 / 3 if mfu else None}


def peak_flops_of(device: str) -> tuple[float | None, str]:
    """The dense bf16 peak of this GPU from the planner's table (by name), and the table key used."""
    if not device.startswith("cuda"):
        return None, "cpu"
    name = torch.cuda.get_device_name(torch.device(device)).lower()
    for key in PEAK_FLOPS:
        if key in name:
            return PEAK_FLOPS[key]["bf16"], key
    return None, name


def parse_tokens(text: str) -> int:
    """``32k`` -> 32768, ``128K`` -> 131072, ``4096`` -> 4096 (the --seq-len flag)."""
    s = str(text).strip().lower()
    mult = 1024 if s.endswith("k") else 1
    try:
        n = int(s[:-1] if mult > 1 else s) * mult
    except ValueError:
        raise ValueError(f"--seq-len: {text!r} is not a token count (e.g. 32k, 4096)") from None
    if n < 16:
        raise ValueError(f"--seq-len: {text!r} is too short (>= 16 tokens)")
    return n


def probe_shape(model: str, layers: int | None, device: str) -> ModelShape:
    """The probed shape: the planner preset (or config.json) ``model`` cut to ``layers``; the tiny shape on CPU."""
    shape = TINY_SHAPE if device == "cpu" else load_model_shape(model)
    return dataclasses.replace(shape, num_layers=layers) if layers and device != "cpu" else shape


def run_probe(device: str, model: str, seq_len: int, layers: int | None, chunk: int = 4096) -> Check:
    """One row: a warm-up step, then a measured one, beside the planner's prediction for the same shape.
    Out of memory is a FAIL (the planner said it would fit is the interesting case; the detail says)."""
    shape = probe_shape(model, layers, device)
    t = min(seq_len, 256) if device == "cpu" else seq_len
    name, what = "probe", f"{shape.name} L={shape.num_layers} T={t}: "
    chunk = min(chunk, t)
    t0 = time.perf_counter()
    try:
        net = build_model(shape, device, max_len=t)
        measure(make_step(net, min(t, 1024), device, chunk), device)  # kernels, cuBLAS handles, autotuning
        m = measure(make_step(net, t, device, chunk), device)
    except Exception as err:
        row = failed_with(name, err)
        row.detail = what + row.detail
        if is_oom(err):
            row.detail = what + f"out of memory at {t} tokens; planner: {planner(shape, t, 80.0, chunk)['plan_fwd_bwd_gib']:.1f} GiB"
        return row
    capacity = torch.cuda.get_device_properties(torch.device(device)).total_memory / GiB if device.startswith("cuda") else 80.0
    plan = planner(shape, t, capacity, chunk, cpu=device == "cpu")
    peak, gpu = peak_flops_of(device)
    flops = flops_row(shape, t, m["seconds"], peak)
    numbers = {"tok_s": flops["tok_s"], "mfu": flops["mfu"], "peak_gib": m["peak_gib"],
               "plan_gib": plan["plan_fwd_bwd_gib"], "step_s": m["seconds"]}
    if device == "cpu":
        detail = "tiny shape on the CPU; peak = live tensor bytes of the step, plan = planner fwd+bwd peak (fp32)"
    else:
        detail = ("peak = torch.cuda.max_memory_allocated; plan = planner fwd+bwd peak (optimizer offloaded)"
                  + ("" if peak else f"; MFU: no peak FLOP/s known for {gpu!r}"))
    return Check(name, PASS, numbers, what + detail, seconds=time.perf_counter() - t0)

