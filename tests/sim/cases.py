"""The simulator's cases: each runs inside a simulated child (:mod:`sim.child`) and returns plain data.

A case builds what the trainer builds (our attention, our loss module, our step) on fake ``cuda``
tensors in bf16 autocast, as rank 0 of a fake process group of any size, runs it, and reports what
the counters saw. The pytest files assert on the reports.
"""

from __future__ import annotations

import contextlib
import threading

import torch
import torch.distributed as dist
from torch._subclasses.fake_tensor import FakeTensorMode

from sim.runtime import CallLog, Counters, module_moves_onto, simulate, to_fake_cuda


def tiny_config(layers: int = 2, hidden: int = 64, heads: int = 4, kv_heads: int = 2, vocab: int = 256,
                intermediate: int = 128):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate,
                       num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                       max_position_embeddings=4096, rope_theta=10000.0, tie_word_embeddings=False)


def fake_world(world: int, rank: int = 0) -> None:
    """Rank ``rank`` of a fake process group of ``world`` ranks (collectives return at once)."""
    from torch.testing._internal.distributed.fake_pg import FakeStore

    if dist.is_initialized():
        dist.destroy_process_group()
    dist.init_process_group("fake", store=FakeStore(), rank=rank, world_size=world)


def packed_batch(total: int, seq_lens: list[int], vocab: int = 256, seed: int = 0) -> dict:
    """One pack on the host: input_ids, labels, position_ids, loss_weights, seq_lens (real CPU tensors)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (1, total), generator=g)
    pos = torch.cat([torch.arange(n) for n in seq_lens] + [torch.arange(total - sum(seq_lens))])[None]
    labels = ids.clone()
    weights = torch.zeros(1, total)
    start = 0
    for n in seq_lens:
        weights[0, start + 1 : start + n] = 1.0 / max(1, n - 1)
        start += n
    labels[0, sum(seq_lens):] = -100
    return {"input_ids": ids, "labels": labels, "position_ids": pos, "loss_weights": weights, "seq_lens": [list(seq_lens)]}


KERNEL_LABELS = {"varlen": "varlen ring", "zigzag": "zigzag ring", "ulysses": "ulysses", "usp": "usp"}


def _attention_log() -> CallLog:
    """Record each attention kernel call: the single-process fallback, or a layout's SP kernel (the one its
    registry row holds: ``longctx_ring`` calls the row's function object, so the row gets the wrapper)."""
    import dataclasses
    import types

    import longctx.distributed.hf_attention as hf
    from longctx.distributed.layouts import LAYOUTS

    log = CallLog()
    grad = lambda *a, **k: torch.is_grad_enabled()  # noqa: E731
    log.wrap(hf, "longctx_varlen_attention", "single-process varlen", grad)
    for name, label in KERNEL_LABELS.items():
        row = types.SimpleNamespace(attention=LAYOUTS[name].attention)
        log.wrap(row, "attention", label, grad)
        LAYOUTS[name] = dataclasses.replace(LAYOUTS[name], attention=row.attention)
    return log


def sp_step(layout: str = "varlen", sp: int = 2, layers: int = 2, checkpointing: bool = True,
            tiled_mlp: bool = False, total: int = 256, offload: bool = False) -> dict:
    """One trainer step (``train_step``) as SP rank 0 of ``sp`` on fake CUDA, bf16 autocast.

    Returns which attention each forward and each recompute ran, and on which thread."""
    from transformers import AutoModelForCausalLM

    from longctx.distributed.hf_attention import register
    from longctx.distributed.layouts import get_layout
    from longctx.distributed.mesh import Mesh, build_groups, build_layout_groups
    from longctx.train.step import LMLoss, StepOptions, train_step

    register()  # longctx_ring, with transformers
    fake_world(sp)
    mesh = Mesh.from_world(sp, sp, 0)
    groups = build_groups(mesh)
    groups.sub = build_layout_groups(groups, get_layout(layout), 2)  # usp: Ulysses 2 x ring sp/2; others: none
    log = _attention_log()
    counters = Counters()
    seq_lens = [total] if layout == "zigzag" else [total // 2, total // 4, total // 8]
    model = AutoModelForCausalLM.from_config(tiny_config(layers), attn_implementation="longctx_ring")
    fake = FakeTensorMode(allow_non_fake_inputs=True)
    with fake:
        to_fake_cuda(model, fake)
        model.train()
        if checkpointing:
            from longctx.train.parallelize import enable_checkpointing

            enable_checkpointing(model)
        if tiled_mlp:
            from longctx.train.parallelize import apply_tiled_mlp

            apply_tiled_mlp(model, 4)
        stats_offload: dict = {}
        if offload:
            from longctx.train.parallelize import apply_checkpoint_offload

            apply_checkpoint_offload(model, pin_memory=True, min_bytes=0, stats=stats_offload)
        opts = StepOptions(layout=layout, autocast_dtype=torch.bfloat16)
        loss_module = LMLoss(model, opts)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        with simulate(fake, counters):
            stats = train_step(loss_module, opt, None, [packed_batch(total, seq_lens)], groups, opts, "cuda")
    return {"calls": log.calls, "main_thread": threading.main_thread().name, "counters": counters.as_dict(),
            "stats_keys": sorted(stats), "offloaded": stats_offload}


def loss_head_dtypes(vocab: int = 512, hidden: int = 64, tokens: int = 256) -> dict:
    """The chunked loss on fake CUDA under bf16 autocast with float32 weights: matmul dtypes, fwd + bwd."""
    from longctx.core.loss import chunked_lm_loss

    fake = FakeTensorMode(allow_non_fake_inputs=True)
    counters = Counters()
    with simulate(fake, counters):
        w = torch.randn(vocab, hidden, device="cuda", requires_grad=True)
        h = torch.randn(tokens, hidden, device="cuda", requires_grad=True)
        y = torch.randint(0, vocab, (tokens,)).to("cuda")
        rows = torch.arange(tokens).to("cuda")
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = chunked_lm_loss(h, w, y, chunk_size=64, rows=rows)
        loss.backward()
    return {"counters": counters.as_dict(), "loss_dtype": str(loss.dtype), "grad_w_dtype": str(w.grad.dtype)}


def _fake_model_from_shape(shape, layers: int, fake, attn: str):
    """A Llama-family model of ``shape`` (a planner ModelShape) with ``layers`` layers, fake cuda fp32."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    cfg = LlamaConfig(vocab_size=shape.vocab_size, hidden_size=shape.hidden_size, intermediate_size=shape.intermediate_size,
                      num_hidden_layers=layers, num_attention_heads=shape.num_heads, num_key_value_heads=shape.num_kv_heads,
                      max_position_embeddings=1 << 20, tie_word_embeddings=False)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg, attn_implementation=attn, dtype=torch.float32)
    with fake:
        to_fake_cuda(model, fake)
    # RoPE frequencies: recompute on the device (a meta buffer holds no values)
    rope = model.model.rotary_emb
    with fake:
        inv = rope.rope_init_fn(rope.config, "cuda")[0] if hasattr(rope, "rope_init_fn") else rope.inv_freq
        rope.register_buffer("inv_freq", inv.to("cuda"), persistent=False)
    return model, cfg


def traced_peak(preset: str = "llama-3-8b", layers: int = 2, seq_len: int = 4096, sp: int = 1, layout: str = "varlen",
                fsdp: bool = False, tiled_mlp: bool = True, offload: bool = False, shape: dict | None = None) -> dict:
    """MemTracker's peak of one trainer step (checkpointing on) vs the planner's prediction, same shape.
    (Tiled MLP is off under FSDP, as the trainer requires.)"""
    import dataclasses

    from torch.distributed._tools.mem_tracker import MemTracker

    from longctx.distributed.hf_attention import register
    from longctx.distributed.mesh import Mesh, build_groups
    from longctx.plan import plan_run
    from longctx.plan.options import run_from_train_config
    from longctx.train.config import RunConfig
    from longctx.plan.shapes import PRESETS
    from longctx.train.parallelize import apply_checkpoint_offload, apply_fsdp, apply_tiled_mlp, enable_checkpointing
    from longctx.train.step import LMLoss, StepOptions, train_step

    register()  # longctx_ring / longctx_varlen, with transformers
    world = sp
    tiled_mlp = tiled_mlp and not fsdp  # the trainer refuses train.tiled_mlp with parallel.fsdp
    fake_world(world)
    mesh = Mesh.from_world(world, sp, 0)
    groups = build_groups(mesh)
    from longctx.plan.shapes import ModelShape

    shape = dataclasses.replace(ModelShape(**shape) if shape else PRESETS[preset], num_layers=layers)
    fake = FakeTensorMode(allow_non_fake_inputs=True)
    model, _ = _fake_model_from_shape(shape, layers, fake, "longctx_ring" if sp > 1 else "longctx_varlen")
    counters = Counters()
    with simulate(fake, counters):
        model.train()
        enable_checkpointing(model)
        if tiled_mlp:
            apply_tiled_mlp(model, 0)
        if offload:
            apply_checkpoint_offload(model, pin_memory=True)
        opts = StepOptions(layout=layout, autocast_dtype=None if fsdp else torch.bfloat16, reduce_grads=not fsdp)
        loss_module = LMLoss(model, opts)
        if fsdp:
            apply_fsdp(loss_module, model, "cuda", world, mixed_precision=True)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-5, foreach=False)
        docs = [seq_len] if layout == "zigzag" else [seq_len // 2, seq_len // 4, seq_len // 4]
        batch = packed_batch(seq_len, docs, vocab=shape.vocab_size)
        train_step(loss_module, opt, None, [batch], groups, opts, "cuda")  # creates the optimizer states
        mt = MemTracker()
        mt.track_external(loss_module, opt)
        with mt:
            train_step(loss_module, opt, None, [batch], groups, opts, "cuda")
        snap = {str(k): v for k, v in mt.get_tracker_snapshot("peak").items() if str(k).startswith("cuda")}
        peak = max(v.get("Total", 0) for v in snap.values())
        categories = {str(c).split(".")[-1]: b / 2**30 for v in snap.values() for c, b in v.items() if b}
    cfg = RunConfig()
    cfg.parallel.sp_degree, cfg.parallel.layout, cfg.parallel.fsdp = sp, layout, fsdp
    cfg.model.gradient_checkpointing, cfg.model.checkpoint_offload = True, offload
    cfg.model.attn_implementation = "auto"
    cfg.train.tiled_mlp, cfg.train.mlp_tiles = tiled_mlp, 0
    run = run_from_train_config(cfg, shape, seq_len, world, "cuda", 80.0, layout=layout)
    plan = plan_run(shape, run)
    return {"traced_gib": peak / 2**30, "planned_gib": max(plan.phase_bytes.values()) / 2**30,
            "counters": counters.as_dict(), "traced_categories_gib": categories,
            "peak_phase": plan.peak_phase, "terms": {t.name: t.bytes / 2**30 for t in plan.breakdown}}


def trainer_step(sp: int = 2, layout: str = "varlen", fsdp: bool = False, offload: bool = False,
                 peft: dict | None = None) -> dict:
    """One optimizer step of the real ``Trainer`` (setup_distributed, build_data, check_plan, build_model,
    build_optimizer, train_one_step) as rank 0 of ``sp`` fake ranks on the simulated GPU: the trainer's own
    wiring (device, dtype policy, checkpointing, tiled MLP, offload, FSDP2, ``peft`` keys: LoRA) on the CUDA path.

    Also reports, per parameter, what a fake tensor can tell without values: which had a gradient at the
    optimizer step, which the step wrote in place (the version counter moved), and where each lives."""
    import os
    import tempfile
    from pathlib import Path

    import transformers

    from support import train_ranks as tr
    from longctx.models.tiny import make_tiny_checkpoint
    from longctx.train.trainer import Trainer

    tmp = Path(tempfile.mkdtemp())
    model_dir = make_tiny_checkpoint(tmp / "model", "llama")
    packs = tr.make_packs(tmp / "packs", tr.random_seqs(12, 12, 50, seed=1), 128)
    os.environ.update(RANK="0", WORLD_SIZE=str(sp), LOCAL_RANK="0")
    fake_world(sp)
    cfg = tr.base_config(model_dir, packs, tmp / "out", **{
        "parallel.sp_degree": sp, "parallel.layout": layout, "parallel.fsdp": str(fsdp).lower(),
        "model.gradient_checkpointing": "true", "model.checkpoint_offload": str(offload).lower(),
        "train.tiled_mlp": str(not fsdp).lower(), **(peft or {})})
    fake = FakeTensorMode(allow_non_fake_inputs=True)
    load = transformers.AutoModelForCausalLM.from_pretrained

    def from_pretrained(*args, **kwargs):  # the real checkpoint, its tensors then moved to the fake device
        model = to_fake_cuda(load(*args, **kwargs), fake)
        model.to = lambda *a, **k: model  # already there (nn.Module._apply cannot swap fake parameters)
        return model

    transformers.AutoModelForCausalLM.from_pretrained = from_pretrained
    log = _attention_log()
    counters = Counters()
    with simulate(fake, counters), module_moves_onto(fake):
        t = Trainer(cfg)
        t.setup_distributed()
        t.build_data()
        t.check_plan()
        t.build_model()
        t.build_optimizer()
        params = dict(t.model.named_parameters())
        grads: dict[str, str] = {}
        t.optimizer.register_step_pre_hook(lambda *_: grads.update(
            {n: f"{p.grad.device} {p.grad.dtype}" for n, p in params.items() if p.grad is not None}))
        versions = {n: p._version for n, p in params.items()}
        stats = t.train_one_step()
    return {"device": str(t.device), "autocast": str(t.step_opts.autocast_dtype), "calls": log.calls,
            "counters": counters.as_dict(), "step": t.step, "stats_keys": sorted(stats),
            "param_dtypes": sorted({str(p.dtype) for p in t.model.parameters()}),
            "param_devices": sorted({str(p.device) for p in t.model.parameters()}),
            "trainable": sorted(n for n, p in params.items() if p.requires_grad), "grads": grads,
            "written": sorted(n for n, p in params.items() if p._version != versions[n]),
            "optimized": sum(len(g["params"]) for g in t.optimizer.param_groups)}
