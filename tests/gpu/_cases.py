"""What the GPU tests compute: each case runs one CUDA path and its float64 CPU oracle on the same inputs
(the kernel cases are ``longctx.doctor.kernels``, shared with ``longctx doctor``; cached here).

A case returns ``{output name: (got, reference)}``; the tests compare one output each. Cases take
the kernel as an argument (``attn_fn``, ``block_fn``, ``loss_fn``) so tests/gpu_harness/test_gpu_run.py can
plant a wrong one on the CPU and see the comparison fail. Cases are cached: a test per output
reuses one forward/backward.
"""

from __future__ import annotations

import contextlib
import functools
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from _oracle import DTYPE_NAMES, cu_from_lengths, doc_lengths, packed_batch, qkv, tiny_model

from longctx.doctor import kernels

Pairs = kernels.Pairs


def flash_in_use(device: str) -> bool:
    """Whether ``varlen_attention``'s default path delegates to flash-attn on ``device``."""
    from longctx.attention import cuda

    return device.startswith("cuda") and cuda.has_flash_attn()


def auto_block_kernel(device: str, dtype: torch.dtype) -> str:
    """The block kernel the ring layouts pick on ``device`` (ring-flash-attn aside): ``blocks.pick_kernel``."""
    from longctx.attention.blocks import pick_kernel

    x = torch.zeros(1, 4, 256, 32, device=device, dtype=dtype)
    return pick_kernel(x, None, x)


@functools.cache
def varlen_case(device: str, dtype: torch.dtype, t: int = 320, kernel: str | None = None,
                attn_fn: Callable | None = None) -> Pairs:
    """``longctx.doctor.kernels.varlen_pairs``, cached: a test per output reuses one forward/backward."""
    return kernels.varlen_pairs(device, dtype, t, kernel, attn_fn)


@functools.cache
def block_case(device: str, dtype: torch.dtype, causal: bool, tq: int, tk: int,
               block_fn: Callable | None = None) -> Pairs:
    """``longctx.doctor.kernels.block_pairs``, cached."""
    return kernels.block_pairs(device, dtype, causal, tq, tk, block_fn)


def ring_rank(rank: int, world: int, layout: str, device: str, dtype_name: str, t: int) -> dict:
    """One rank of the ring case (module-level: spawned processes import it)."""
    from longctx.distributed.layouts import get_layout
    from longctx.distributed.sharding import local_indices

    dtype = getattr(torch, dtype_name)
    dev = torch.device(device)
    if dev.type == "cuda":  # no index: the device run_local set for this rank (NCCL), else cuda:0
        dev = torch.device("cuda", torch.cuda.current_device() if dev.index is None else dev.index)
        torch.cuda.set_device(dev)
    q, k, v, dout = qkv(t, 4, 2, 32, dtype, seed=3)
    idx = local_indices(t, layout, rank, world)
    loc = [x[:, :, idx].to(dev, dtype).requires_grad_(True) for x in (q, k, v)]
    spec = get_layout(layout)  # the layout registry names the attention function and whether it takes documents
    kw = {"cu_seqlens": cu_from_lengths(doc_lengths(t, t // 3)).to(dev)} if spec.multi_document else {}
    out = spec.attention(*loc, **kw)
    out.backward(dout[:, :, idx].to(dev, dtype))
    return {"out": out.detach().cpu().double().numpy(), **{f"d{n}": x.grad.cpu().double().numpy() for n, x in zip("qkv", loc)}}


@dataclass
class RingRun:
    """The ring case's outcome: pairs from the first process group that ran, and why others did not."""

    pairs: Pairs = field(default_factory=dict)
    backend: str = ""
    world: int = 0
    reasons: list[str] = field(default_factory=list)


_DEAD_BACKENDS: set[str] = set()  # a backend that hung or refused ranks on one GPU is not retried


@functools.cache
def ring_case(device: str, dtype: torch.dtype, layout: str, world: int = 2, t: int = 256,
              backends: tuple[str, ...] | None = None, timeout: float = 90.0) -> RingRun:
    """Ring attention of one registered layout on ``world`` local ranks sharing ``device`` vs the float64 oracle.

    On one GPU NCCL normally refuses two ranks on the same device, so gloo with CUDA tensors is
    tried next, then (last resort) one NCCL rank: no exchange, the CUDA math only.
    """
    from longctx.attention import full_attention_reference
    from longctx.distributed.launch import run_local
    from longctx.distributed.sharding import unshard

    backends = backends or (("nccl", "gloo") if device.startswith("cuda") else ("gloo",))
    q, k, v, dout = qkv(t, 4, 2, 32, dtype, seed=3)
    from longctx.distributed.layouts import get_layout

    cu = cu_from_lengths(doc_lengths(t, t // 3)) if get_layout(layout).multi_document else None
    leaves = [x.clone().requires_grad_(True) for x in (q, k, v)]
    ref = full_attention_reference(*leaves, cu)
    ref.backward(dout)
    run = RingRun(reasons=[f"{b} x{world}: not retried (failed before)" for b in backends if b in _DEAD_BACKENDS])
    attempts = [(b, world) for b in backends if b not in _DEAD_BACKENDS]
    if device.startswith("cuda") and world > 1:
        attempts.append(("nccl", 1))
    for backend, w in attempts:
        try:
            outs = run_local(ring_rank, w, layout, device, str(dtype).split(".")[-1], t, backend=backend,
                             timeout=timeout)
        except Exception as err:
            lines = [ln for ln in str(err).strip().splitlines() if ln.strip()]
            run.reasons.append(f"{backend} x{w}: {lines[-1][:160] if lines else type(err).__name__}")
            # A hang costs the whole timeout, and NCCL refusing several ranks on one GPU is a property of
            # the backend, not of the layout: do not retry those. Gloo may fail one op (send/recv) only.
            if isinstance(err, TimeoutError) or (backend == "nccl" and w > 1):
                _DEAD_BACKENDS.add(backend)
            continue
        wants = {"out": ref, "dq": leaves[0].grad, "dk": leaves[1].grad, "dv": leaves[2].grad}
        run.pairs = {key: (unshard([torch.from_numpy(o[key]) for o in outs], layout, dim=2), want)
                     for key, want in wants.items()}
        run.backend, run.world = backend, w
        break
    return run


@functools.cache
def loss_case(device: str, dtype: torch.dtype, t: int = 512, vocab: int = 300, hidden: int = 64,
              loss_fn: Callable | None = None) -> Pairs:
    """``longctx.doctor.kernels.loss_pairs``, cached."""
    return kernels.loss_pairs(device, dtype, t, vocab, hidden, loss_fn)


@contextlib.contextmanager
def spy_attention_dtypes(seen: list):
    """Record the (q, k, v) dtypes that ``longctx_varlen`` hands to ``varlen_attention`` (autocast diagnostics)."""
    import longctx.attention.varlen as mod

    orig = mod.varlen_attention

    def spy(q, k, v, *args, **kwargs):
        seen.append(tuple(DTYPE_NAMES.get(x.dtype, str(x.dtype)) for x in (q, k, v)))
        return orig(q, k, v, *args, **kwargs)

    mod.varlen_attention = spy
    try:
        yield seen
    finally:
        mod.varlen_attention = orig


@functools.cache
def tiny_llama_case(device: str, t: int = 192, attn: str = "longctx_varlen") -> tuple[Pairs, list]:
    """Tiny Llama (packed) loss and grad norm: ``device`` under bf16 autocast vs CPU float32; + q/k/v dtypes seen."""
    batch = packed_batch(t)
    ref_model = tiny_model(attn, max_position_embeddings=max(256, t))
    model = tiny_model(attn, max_position_embeddings=max(256, t)).to(device)
    ref = ref_model(**batch, use_cache=False).loss
    ref.backward()
    seen: list = []
    try:
        with spy_attention_dtypes(seen), torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
            got = model(**{k: x.to(device) for k, x in batch.items()}, use_cache=False).loss
    except Exception as err:  # name the dtypes: the usual cause is mixed q/k/v dtypes under autocast
        raise RuntimeError(f"{type(err).__name__}: {str(err).splitlines()[0][:120]}; attention saw q/k/v dtypes "
                           f"{sorted(set(seen))}") from err
    got.backward()
    gn = lambda m: torch.stack([p.grad.double().norm() for p in m.parameters() if p.grad is not None]).norm()  # noqa: E731
    return {"loss": (got.detach().float(), ref.detach()), "grad_norm": (gn(model), gn(ref_model))}, sorted(set(seen))


def motif_sequences(n_seqs: int, pack_length: int, seed: int = 0) -> list[list[int]]:
    """Learnable data: each sequence repeats a short random motif, so the loss falls within a few steps."""
    g = torch.Generator().manual_seed(seed)
    seqs = []
    for _ in range(n_seqs):
        n = int(torch.randint(pack_length // 4, pack_length // 2, (1,), generator=g))
        motif = torch.randint(0, 16, (8,), generator=g).tolist()  # 16 of 258 tokens: unigram stats are learnt fast
        seqs.append((motif * (n // 8 + 1))[:n])
    return seqs


def write_pack_dir(out: Path, seqs: list[list[int]], pack_length: int, pad_id: int = 257) -> Path:
    """A pack directory in the `longctx pack` format (packing.writer): first-fit packs, LongAlign weights.

    The first two tokens of each sequence carry no label (like a prompt). Writing needs ``datasets``.
    """
    import numpy as np

    from packing.binpack import first_fit
    from packing.writer import make_manifest, rows_from_groups, write_packs

    sequences = [{"input_ids": np.asarray(s), "labels": np.asarray([-100, -100] + list(s[2:]))} for s in seqs]
    groups = first_fit([len(s) for s in seqs], pack_length)
    manifest = make_manifest("pack", pack_length, len(groups), {"pad_token_id": pad_id})
    return write_packs(out, rows_from_groups(sequences, groups, "pack", pack_length, pad_id), manifest)


@dataclass
class TrainRun:
    losses: list[float]
    device: str
    autocast_dtype: torch.dtype | None
    seconds: float
    tokens_per_s: float | None

    def mean_first_last(self) -> tuple[float, float, int]:
        """(mean loss of the first quarter of steps, of the last quarter, the quarter's size)."""
        k = max(1, len(self.losses) // 4)
        return sum(self.losses[:k]) / k, sum(self.losses[-k:]) / k, k

    @property
    def loss_fell(self) -> bool:
        first, last, _ = self.mean_first_last()
        return math.isfinite(last) and last < 0.9 * first


@functools.cache
def train_case(steps: int = 12, pack_length: int = 256, hidden: int = 64) -> TrainRun:
    """A short single-process `longctx train` run (the Trainer library path, which picks CUDA when present)."""
    from longctx.models.tiny import make_tiny_checkpoint
    from longctx.train.config import load_config
    from longctx.train.trainer import Trainer

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ckpt = make_tiny_checkpoint(work / "ckpt", "llama", hidden_size=hidden, num_heads=4, num_kv_heads=2,
                                    intermediate_size=2 * hidden, max_position_embeddings=pack_length, overwrite=True)
        packs = write_pack_dir(work / "packs", motif_sequences(8 * 3, pack_length), pack_length)
        cfg = load_config(None, [f"model.path={ckpt}", f"data.path={packs}", f"checkpoint.out={work / 'run'}",
                                 "log.progress=false", "log.tensorboard=false", "optim.lr=3e-3", "optim.warmup_steps=0",
                                 f"train.steps={steps}", "checkpoint.export=false", "checkpoint.resume=false"])
        trainer = Trainer(cfg)
        out = trainer.run()
    return TrainRun([h["loss"] for h in out["history"]], trainer.device.type, trainer.step_opts.autocast_dtype,
                    time.perf_counter() - t0, out["history"][-1].get("tokens_per_s"))


@functools.cache
def kernel_case(device: str, dtype: torch.dtype, name: str, causal: bool, tq: int, tk: int) -> Pairs:
    """``longctx.doctor.kernels.sdpa_kernel_pairs``, cached."""
    return kernels.sdpa_kernel_pairs(device, dtype, name, causal, tq, tk)
