"""One-shot GPU check for a lent device: correctness of every CUDA path, then throughput and memory.

    PYTHONUNBUFFERED=1 python scripts/gpu_check.py --out $OUT          # full (~5 min on an H100)
    python scripts/gpu_check.py --quick                                 # ~90 s on an H100; runs on CPU too

Every correctness check compares a CUDA result with its float64 CPU oracle on the SAME inputs
(inputs are first rounded to the tested dtype, so only the arithmetic's error is measured) and
reports max abs error, relative error ||got - ref|| / ||ref|| and PASS/FAIL against a tolerance
per dtype. Each check runs in its own try/except: one failure never hides the others. Without
CUDA the checks run on the CPU where that still means something and say SKIPPED otherwise, so the
harness itself is tested (tests/test_gpu_check.py). Exit status 1 when any correctness check
FAILs or raises; throughput numbers never fail the run. Results: a table on stdout and
OUT/gpu_check.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the device machine has the tree, not an installed package
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import torch  # noqa: E402

# Relative-error tolerances ||got - ref|| / ||ref||: float32 arithmetic lands far below 1e-4,
# bf16 outputs carry a 2^-9 rounding per element (plus bf16 gradients of several summed blocks).
TOL = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 2e-2, torch.float64: 1e-10}
DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "fp64"}


@dataclass
class Result:
    name: str
    status: str  # PASS | FAIL | SKIPPED | ERROR
    max_abs: float | None = None
    rel: float | None = None
    tol: float | None = None
    detail: str = ""
    seconds: float = 0.0


@dataclass
class Report:
    env: dict = field(default_factory=dict)
    checks: list[Result] = field(default_factory=list)
    bench: list[dict] = field(default_factory=list)

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.checks if r.status in ("FAIL", "ERROR")]


# ----------------------------------------------------------------------------- helpers
def compare(name: str, got: torch.Tensor, ref: torch.Tensor, tol: float) -> Result:
    """PASS when ``got`` (any device/dtype) is finite and within relative error ``tol`` of ``ref``."""
    g = got.detach().to("cpu", torch.float64)
    r = ref.detach().to("cpu", torch.float64)
    if g.shape != r.shape:
        return Result(name, "FAIL", tol=tol, detail=f"shape {tuple(g.shape)} != reference {tuple(r.shape)}")
    finite = torch.isfinite(r)
    if not bool(torch.isfinite(g[finite]).all()) or not bool((g[~finite] == r[~finite]).all()):
        return Result(name, "FAIL", tol=tol, detail="non-finite values where the reference is finite (or vice versa)")
    diff = (g[finite] - r[finite])
    max_abs = float(diff.abs().max()) if diff.numel() else 0.0
    norm = float(r[finite].norm())
    rel = float(diff.norm()) / norm if norm > 0 else max_abs
    return Result(name, "PASS" if rel <= tol else "FAIL", max_abs, rel, tol)


def has_cuda() -> bool:
    return torch.cuda.is_available()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_fn(fn: Callable[[], object], device: str, warmup: int = 1, reps: int = 3) -> float:
    """Median seconds of ``fn`` after ``warmup`` calls (device synchronised around each call)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_mem(fn: Callable[[], object], device: str) -> float | None:
    """Peak CUDA memory (GiB) allocated while ``fn`` runs, above what was allocated before; None on CPU."""
    if not device.startswith("cuda"):
        fn()
        return None
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**30


def import_status(name: str) -> str:
    try:
        mod = __import__(name)
    except Exception as err:  # ImportError, or a CUDA/ABI error from a broken wheel
        return f"no ({type(err).__name__}: {str(err).splitlines()[0][:100] if str(err) else ''})"
    return f"yes {getattr(mod, '__version__', '')}".strip()


def environment() -> dict:
    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda_runtime": torch.version.cuda,
           "cuda_available": has_cuda(), "flash_attn": import_status("flash_attn"),
           "ring_flash_attn": import_status("ring_flash_attn"), "datasets": import_status("datasets")}
    try:
        import transformers

        env["transformers"] = transformers.__version__
    except Exception as err:
        env["transformers"] = f"missing ({err})"
    if has_cuda():
        try:
            p = torch.cuda.get_device_properties(0)
            env.update(gpu=p.name, capability=f"{p.major}.{p.minor}", gpu_mem_gib=round(p.total_memory / 2**30, 1),
                       sms=p.multi_processor_count, nccl=".".join(map(str, torch.cuda.nccl.version())))
        except Exception as err:
            env["gpu_error"] = f"{type(err).__name__}: {err}"
    return env


def _doc_lengths(total: int, doc: int) -> list[int]:
    """Split ``total`` tokens into documents of varied lengths around ``doc`` (deterministic)."""
    lens, i = [], 0
    while sum(lens) < total:
        n = max(1, int(doc * (0.5 + (i * 0.37) % 1.0)))
        lens.append(min(n, total - sum(lens)))
        i += 1
    return lens


def cu_from_lengths(lens: list[int]) -> torch.Tensor:
    return torch.tensor([0] + list(torch.tensor(lens).cumsum(0).tolist()), dtype=torch.int32)


def qkv(t: int, h: int, hk: int, d: int, dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random q, k, v, dout ``[1, H, T, D]`` on the CPU in float64, already rounded to ``dtype``."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(1, h, t, d), (1, hk, t, d), (1, hk, t, d), (1, h, t, d)]
    return tuple(torch.randn(s, generator=g, dtype=torch.float64).to(dtype).to(torch.float64) for s in shapes)


# ----------------------------------------------------------------------------- correctness checks
def check_varlen(device: str, dtype: torch.dtype, t: int = 320, attn_fn: Callable | None = None,
                 kernel: str | None = None) -> list[Result]:
    """varlen_attention (flash-attn if importable on CUDA, else the torch path) vs the float64 dense oracle, fwd+bwd."""
    from longctx.attention import full_attention_reference, varlen_attention

    attn_fn = attn_fn or (lambda q, k, v, cu: varlen_attention(q, k, v, cu, kernel=kernel))
    q, k, v, dout = qkv(t, 4, 2, 32, dtype, seed=1)
    cu = cu_from_lengths(_doc_lengths(t, max(8, t // 4)))
    leaves = [x.clone().requires_grad_(True) for x in (q, k, v)]
    ref = full_attention_reference(*leaves, cu)
    ref.backward(dout)
    xs = [x.to(device, dtype).requires_grad_(True) for x in (q, k, v)]
    out = attn_fn(*xs, cu.to(device))
    out.backward(dout.to(device, dtype))
    path = kernel or ("flash-attn" if device.startswith("cuda") and _flash() else "default")
    tag = f"[{device},{DTYPE_NAMES[dtype]},{path},GQA 4/2,{len(cu) - 1} docs]"
    tol = TOL[dtype]
    return [compare(f"varlen_attention fwd{tag}", out, ref, tol)] + [
        compare(f"varlen_attention d{n}{tag}", x.grad, leaf.grad, tol) for n, x, leaf in zip("qkv", xs, leaves)]


def _flash() -> bool:
    from longctx.attention import cuda

    return cuda.has_flash_attn()


def check_block_forward(device: str, dtype: torch.dtype, block_fn: Callable | None = None) -> list[Result]:
    """block_attention_forward (out, lse) vs the exact float64 block kernel, causal square and full rectangular."""
    from longctx.attention.blocks import block_attention_forward, torch_block_forward

    block_fn = block_fn or block_attention_forward
    res = []
    for causal, (tq, tk) in ((True, (96, 96)), (False, (64, 160))):
        g = torch.Generator().manual_seed(2 + tq)
        q = torch.randn(1, 4, tq, 32, generator=g).to(dtype).double()
        k, v = (torch.randn(1, 2, tk, 32, generator=g).to(dtype).double() for _ in range(2))
        ref_out, ref_lse = torch_block_forward(q, k, v, causal, 32 ** -0.5)
        out, lse = block_fn(q.to(device, dtype), k.to(device, dtype), v.to(device, dtype), causal, 32 ** -0.5)
        tag = f"[{device},{DTYPE_NAMES[dtype]},{'causal' if causal else 'full'} {tq}x{tk}]"
        res += [compare(f"block_attention_forward out{tag}", out, ref_out, TOL[dtype]),
                compare(f"block_attention_forward lse{tag}", lse, ref_lse, TOL[dtype])]
    return res


def _ring_rank(rank: int, world: int, layout: str, device: str, dtype_name: str, t: int) -> dict:
    """One rank of the ring check (module-level: spawned processes import it)."""
    from longctx.attention import varlen_ring_attention, zigzag_ring_attention
    from longctx.distributed.sharding import local_indices

    dtype = getattr(torch, dtype_name)
    dev = torch.device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", dev.index or 0)
        torch.cuda.set_device(dev)
    q, k, v, dout = qkv(t, 4, 2, 32, dtype, seed=3)
    idx = local_indices(t, layout, rank, world)
    loc = [x[:, :, idx].to(dev, dtype).requires_grad_(True) for x in (q, k, v)]
    if layout == "zigzag":
        out = zigzag_ring_attention(*loc)
    else:
        out = varlen_ring_attention(*loc, cu_from_lengths(_doc_lengths(t, t // 3)).to(dev))
    out.backward(dout[:, :, idx].to(dev, dtype))
    return {"out": out.detach().cpu().double().numpy(), **{f"d{n}": x.grad.cpu().double().numpy() for n, x in zip("qkv", loc)}}


def check_ring(device: str, dtype: torch.dtype, world: int = 2, t: int = 256, backends: tuple[str, ...] | None = None,
               timeout: float = 120.0) -> list[Result]:
    """zigzag / varlen ring attention on ``world`` local ranks sharing ``device`` vs the float64 oracle.

    On one GPU NCCL normally refuses two ranks on the same device, so gloo with CUDA tensors is tried
    next; when every backend fails the check is SKIPPED with each backend's reason.
    """
    from longctx.attention import full_attention_reference
    from longctx.distributed.launch import run_local
    from longctx.distributed.sharding import unshard

    backends = list(backends or (("nccl", "gloo") if device.startswith("cuda") else ("gloo",)))
    q, k, v, dout = qkv(t, 4, 2, 32, dtype, seed=3)
    res, dead = [], set()
    for layout in ("zigzag", "varlen"):
        cu = None if layout == "zigzag" else cu_from_lengths(_doc_lengths(t, t // 3))
        leaves = [x.clone().requires_grad_(True) for x in (q, k, v)]
        ref = full_attention_reference(*leaves, cu)
        ref.backward(dout)
        reasons = []
        attempts = [(b, world) for b in backends if b not in dead]
        reasons += [f"{b} x{world}: not retried (failed for the layout before)" for b in backends if b in dead]
        if device.startswith("cuda") and world > 1:  # last resort: one NCCL rank (no exchange, the CUDA math only)
            attempts.append(("nccl", 1))
        for backend, w in attempts:
            t0 = time.perf_counter()
            try:
                outs = run_local(_ring_rank, w, layout, device, str(dtype).split(".")[-1], t, backend=backend,
                                 timeout=timeout)
            except Exception as err:
                lines = [ln for ln in str(err).strip().splitlines() if ln.strip()]
                reasons.append(f"{backend} x{w}: {lines[-1][:160] if lines else type(err).__name__}")
                # A hang costs the whole timeout, and NCCL refusing several ranks on one GPU is a property of
                # the backend, not of the layout: do not retry those. Gloo may fail one op (send/recv) only.
                if isinstance(err, TimeoutError) or (backend == "nccl" and w > 1):
                    dead.add(backend)
                continue
            if w < world:
                res.append(Result(f"{layout}_ring_attention[{device},{DTYPE_NAMES[dtype]},{world} ranks]", "SKIPPED",
                                  detail="multi-rank group failed: " + "; ".join(reasons)))
            tag = f"[{device},{DTYPE_NAMES[dtype]},{layout},{w} ranks,{backend}]"
            for key, want in (("out", ref), ("dq", leaves[0].grad), ("dk", leaves[1].grad), ("dv", leaves[2].grad)):
                got = unshard([torch.from_numpy(o[key]) for o in outs], layout, dim=2)
                r = compare(f"{layout}_ring_attention {key}{tag}", got, want, TOL[dtype])
                r.seconds = time.perf_counter() - t0
                res.append(r)
            break
        else:
            res.append(Result(f"{layout}_ring_attention[{device},{DTYPE_NAMES[dtype]},{world} ranks]", "SKIPPED",
                              detail="; ".join(reasons)))
    return res


def check_chunked_loss(device: str, dtype: torch.dtype, t: int = 512, vocab: int = 300, hidden: int = 64,
                       loss_fn: Callable | None = None) -> list[Result]:
    """chunked_lm_loss (value, d hidden, d head) vs full_lm_loss in float64 on the CPU, LongAlign weights."""
    from packing.loss import chunked_lm_loss, full_lm_loss

    loss_fn = loss_fn or (lambda h, w, y, wt: chunked_lm_loss(h, w, y, wt, chunk_size=max(1, t // 5)))
    g = torch.Generator().manual_seed(4)
    h = torch.randn(t, hidden, generator=g).to(dtype).double()
    w = (torch.randn(vocab, hidden, generator=g) * hidden ** -0.5).to(dtype).double()
    y = torch.randint(0, vocab, (t,), generator=g)
    y[torch.rand(t, generator=g) < 0.2] = -100
    wt = torch.where(y != -100, torch.rand(t, generator=g, dtype=torch.float64) + 0.1, torch.zeros(t, dtype=torch.float64))
    h64, w64 = h.clone().requires_grad_(True), w.clone().requires_grad_(True)
    ref = full_lm_loss(h64, w64, y, wt)
    ref.backward()
    hd, wd = h.to(device, dtype).requires_grad_(True), w.to(device, dtype).requires_grad_(True)
    got = loss_fn(hd, wd, y.to(device), wt.float().to(device))
    got.backward()
    tag = f"[{device},{DTYPE_NAMES[dtype]},T={t},V={vocab}]"
    return [compare(f"chunked_lm_loss value{tag}", got, ref, TOL[dtype]),
            compare(f"chunked_lm_loss d_hidden{tag}", hd.grad, h64.grad, TOL[dtype]),
            compare(f"chunked_lm_loss d_head{tag}", wd.grad, w64.grad, TOL[dtype])]


def _tiny_model(attn: str, seed: int = 0, **kw):
    from transformers import AutoModelForCausalLM

    import longctx.attention  # noqa: F401  (registers longctx_varlen)
    from longctx.tiny import tiny_config

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(tiny_config("llama", **kw), attn_implementation=attn)


def _packed_batch(t: int, vocab: int = 256, seed: int = 5) -> dict:
    g = torch.Generator().manual_seed(seed)
    lens = _doc_lengths(t, max(4, t // 3))
    pos = torch.cat([torch.arange(n) for n in lens])[None]
    ids = torch.randint(0, vocab, (1, t), generator=g)
    return {"input_ids": ids, "position_ids": pos, "labels": ids.clone()}


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


def check_tiny_llama(device: str, t: int = 192, attn: str = "longctx_varlen") -> list[Result]:
    """Tiny Llama (longctx_varlen, packed) loss and grad norm: ``device`` under bf16 autocast vs CPU float32."""
    batch = _packed_batch(t)
    ref_model = _tiny_model(attn, max_position_embeddings=max(256, t))
    model = _tiny_model(attn, max_position_embeddings=max(256, t)).to(device)
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
    tag = f"[{device} bf16-autocast vs cpu fp32,{attn},T={t}]"
    res = [compare(f"tiny_llama loss{tag}", got.float(), ref, TOL[torch.bfloat16]),
           compare(f"tiny_llama grad_norm{tag}", gn(model), gn(ref_model), 5e-2)]
    res[0].detail = f"attention saw q/k/v dtypes {sorted(set(seen))}"
    return res


def write_packs(out: Path, n_seqs: int, pack_length: int, seed: int = 0, pad_id: int = 257) -> Path:
    """A tiny pack directory in the `longctx pack` format (first-fit packs, LongAlign weights)."""
    from datasets import Dataset

    g = torch.Generator().manual_seed(seed)
    # Learnable data: each sequence repeats a short random motif, so the loss falls within a few steps.
    seqs = []
    for _ in range(n_seqs):
        n = int(torch.randint(pack_length // 4, pack_length // 2, (1,), generator=g))
        motif = torch.randint(0, 16, (8,), generator=g).tolist()  # 16 of 258 tokens: unigram stats are learnt fast
        seqs.append((motif * (n // 8 + 1))[:n])
    groups: list[list[list[int]]] = []
    for s in seqs:
        for grp in groups:
            if sum(map(len, grp)) + len(s) <= pack_length:
                grp.append(s)
                break
        else:
            groups.append([s])
    rows = []
    for grp in groups:
        ids, labels, pos, w = [], [], [], []
        for s in grp:
            lab = [-100, -100] + s[2:]
            ids += s; labels += lab; pos += list(range(len(s))); w += [1.0 / (len(s) - 2) if x != -100 else 0.0 for x in lab]  # noqa: E702
        p = pack_length - len(ids)
        ids += [pad_id] * p; labels += [-100] * p; pos += list(range(p)); w += [0.0] * p  # noqa: E702
        rows.append({"input_ids": ids, "labels": labels, "position_ids": pos, "seq_lens": [len(s) for s in grp],
                     "loss_weights": w})
    Dataset.from_list(rows).save_to_disk(str(out))
    (out / "manifest.json").write_text(json.dumps({"format": "longctx-packs", "version": 1, "mode": "pack",
                                                    "pack_length": pack_length, "num_rows": len(rows),
                                                    "tokenizer": {"pad_token_id": pad_id}}))
    return out


def check_train(device: str, steps: int = 12, pack_length: int = 256, hidden: int = 64, workdir: Path | None = None
                ) -> tuple[list[Result], dict]:
    """A short single-process `longctx train` run (Trainer): the loss falls; on CUDA bf16 autocast is on."""
    if not import_status("datasets").startswith("yes"):
        why = f"datasets not importable ({import_status('datasets')}): carry its wheels (scripts/README.md)"
        return [Result("train loss falls", "SKIPPED", detail=why), Result("train uses bf16 autocast", "SKIPPED", detail=why)], {}
    from longctx.tiny import make_tiny_checkpoint
    from longctx.train.config import load_config
    from longctx.train.trainer import Trainer

    with contextlib.ExitStack() as stack:
        work = Path(workdir) if workdir else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        ckpt = make_tiny_checkpoint(work / "ckpt", "llama", hidden_size=hidden, num_heads=4, num_kv_heads=2,
                                    intermediate_size=2 * hidden, max_position_embeddings=pack_length, overwrite=True)
        packs = write_packs(work / "packs", 8 * 3, pack_length)
        cfg = load_config(None, [f"model.path={ckpt}", f"data.path={packs}", f"checkpoint.out={work / 'run'}",
                                 "log.progress=false", "log.tensorboard=false", "optim.lr=3e-3", "optim.warmup_steps=0",
                                 f"train.steps={steps}", "checkpoint.export=false", "checkpoint.resume=false"])
        trainer = Trainer(cfg)
        out = trainer.run()
    losses = [h["loss"] for h in out["history"]]
    k = max(1, len(losses) // 4)
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    tag = f"[{trainer.device},{steps} steps,pack {pack_length}]"
    res = [Result(f"train loss falls{tag}", "PASS" if math.isfinite(last) and last < 0.9 * first else "FAIL",
                  detail=f"mean of first {k} steps {first:.4f} -> last {k} steps {last:.4f} (need < 90%)")]
    amp = trainer.step_opts.autocast_dtype
    if trainer.device.type == "cuda":
        res.append(Result(f"train uses bf16 autocast{tag}", "PASS" if amp == torch.bfloat16 else "FAIL",
                          detail=f"autocast_dtype={amp}"))
    else:
        res.append(Result(f"train uses bf16 autocast{tag}", "SKIPPED", detail=f"trainer ran on {trainer.device} "
                          f"(autocast_dtype={amp}); bf16 autocast is a CUDA setting"))
    stats = {"tokens_per_s": out["history"][-1].get("tokens_per_s"), "seconds": out["seconds"], "losses": losses}
    return res, stats


# ----------------------------------------------------------------------------- throughput and memory
def _sdpa_per_doc(q, k, v, cu):
    """Baseline: one SDPA call (flash / efficient kernel on CUDA) per document of the pack."""
    import torch.nn.functional as F

    cu = cu.tolist()
    outs = [F.scaled_dot_product_attention(q[:, :, s:e], k[:, :, s:e], v[:, :, s:e], is_causal=True, enable_gqa=True)
            for s, e in zip(cu[:-1], cu[1:])]
    return torch.cat(outs, dim=2)


def bench_varlen(device: str, sizes: list[int], h: int = 8, hk: int = 2, d: int = 128, doc: int = 4096,
                 reps: int = 3) -> list[dict]:
    """bf16 fwd+bwd tokens/s and peak memory: varlen_attention vs a per-document SDPA loop, per pack size."""
    from longctx.attention import varlen_attention

    dtype = torch.bfloat16
    rows = []
    for t in sizes:
        cu = cu_from_lengths(_doc_lengths(t, min(doc, t)))
        g = torch.Generator(device=device).manual_seed(0)
        xs = [torch.randn(1, n, t, d, device=device, dtype=dtype, generator=g).requires_grad_(True) for n in (h, hk, hk)]
        dout = torch.randn(1, h, t, d, device=device, dtype=dtype, generator=g)
        row = {"bench": "varlen_attention fwd+bwd bf16", "tokens": t, "docs": len(cu) - 1, "heads": f"{h}/{hk}x{d}"}
        for label, fn in (("ours", lambda: varlen_attention(*xs, cu.to(device))), ("sdpa_per_doc", lambda: _sdpa_per_doc(*xs, cu))):
            step = lambda fn=fn: fn().backward(dout)  # noqa: E731
            try:
                row[f"{label}_tok_s"] = t / time_fn(step, device, warmup=1, reps=reps)
                row[f"{label}_peak_gib"] = peak_mem(step, device)
            except Exception as err:  # e.g. out of memory at 128K on the fallback path
                row[f"{label}_error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:120]}"
            for x in xs:
                x.grad = None
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
        if "ours_tok_s" in row and "sdpa_per_doc_tok_s" in row:
            row["speed_ratio"] = row["ours_tok_s"] / row["sdpa_per_doc_tok_s"]
        row["path"] = "flash-attn" if device.startswith("cuda") and _flash() else "default (no flash-attn)"
        rows.append(row)
    return rows


def bench_loss(device: str, t: int, vocab: int, hidden: int = 1024, chunk: int = 4096, reps: int = 3) -> dict:
    """Chunked loss vs full logits (bf16): fwd+bwd time and peak memory above the inputs."""
    from packing.loss import chunked_lm_loss, full_lm_loss

    g = torch.Generator(device=device).manual_seed(0)
    h = torch.randn(t, hidden, device=device, dtype=torch.bfloat16, generator=g).requires_grad_(True)
    w = (torch.randn(vocab, hidden, device=device, dtype=torch.bfloat16, generator=g) * hidden ** -0.5).requires_grad_(True)
    y = torch.randint(0, vocab, (t,), device=device, generator=g)
    row = {"bench": "lm loss fwd+bwd bf16", "tokens": t, "vocab": vocab, "hidden": hidden, "chunk": chunk}
    for label, fn in (("chunked", lambda: chunked_lm_loss(h, w, y, chunk_size=chunk)), ("full", lambda: full_lm_loss(h, w, y))):
        step = lambda fn=fn: fn().backward()  # noqa: E731
        try:
            row[f"{label}_peak_gib"] = peak_mem(step, device)
            row[f"{label}_tok_s"] = t / time_fn(step, device, warmup=0, reps=reps)
        except Exception as err:
            row[f"{label}_error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:120]}"
        h.grad = w.grad = None
    if row.get("chunked_peak_gib") and row.get("full_peak_gib"):
        row["mem_ratio_full_over_chunked"] = row["full_peak_gib"] / row["chunked_peak_gib"]
    if "chunked_tok_s" in row and "full_tok_s" in row:
        row["speed_ratio"] = row["chunked_tok_s"] / row["full_tok_s"]
    return row


def bench_train_step(device: str, t: int, hidden: int = 256, layers: int = 4, reps: int = 3) -> dict:
    """Tokens/s of a small Llama training step (fwd+bwd+AdamW, bf16 autocast on CUDA): longctx_varlen vs sdpa."""
    row = {"bench": "tiny llama train step", "tokens": t, "hidden": hidden, "layers": layers}
    batch = {k: x.to(device) for k, x in _packed_batch(t).items()}
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else contextlib.nullcontext()
    for attn in ("longctx_varlen", "sdpa"):
        model = _tiny_model(attn, hidden_size=hidden, num_layers=layers, num_heads=8, num_kv_heads=2,
                            intermediate_size=4 * hidden, max_position_embeddings=t).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step():
            with amp:
                loss = model(**batch, use_cache=False).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        try:
            row[f"{attn}_tok_s"] = t / time_fn(step, device, warmup=1, reps=reps)
            row[f"{attn}_peak_gib"] = peak_mem(step, device)
        except Exception as err:
            row[f"{attn}_error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:120]}"
        del model, opt
    if "longctx_varlen_tok_s" in row and "sdpa_tok_s" in row:
        row["speed_ratio"] = row["longctx_varlen_tok_s"] / row["sdpa_tok_s"]
    row["note"] = "sdpa ignores document boundaries (plain causal): a speed reference only"
    return row


# ----------------------------------------------------------------------------- plan and driver
def plan(device: str, quick: bool) -> tuple[list[tuple[str, Callable]], list[tuple[str, Callable]]]:
    """(correctness checks, benchmarks) as (group name, zero-arg callable) for ``device``."""
    cuda = device.startswith("cuda")
    bf16, fp32, fp16 = torch.bfloat16, torch.float32, torch.float16
    checks: list[tuple[str, Callable]] = []
    for dt in ((bf16, fp32) if quick or not cuda else (bf16, fp16, fp32)):
        checks.append(("varlen", lambda dt=dt: check_varlen(device, dt)))
    if cuda and not quick:
        checks.append(("varlen", lambda: check_varlen(device, bf16, t=2048)))
    if cuda:  # the block-plan path that the ring variants run on CUDA without ring-flash-attn
        checks.append(("varlen", lambda: check_varlen(device, bf16, kernel="torch")))
    for dt in (bf16, fp32):
        checks.append(("block", lambda dt=dt: check_block_forward(device, dt)))
    checks.append(("ring", lambda: check_ring(device, bf16 if cuda else fp32, timeout=45 if quick else 90)))
    for dt in (bf16, fp32):
        checks.append(("loss", lambda dt=dt: check_chunked_loss(device, dt, t=512 if quick else 2048)))
    checks.append(("llama", lambda: check_tiny_llama(device, t=192 if quick else 1024)))
    checks.append(("train", lambda: check_train(device, steps=12 if quick or not cuda else 30,
                                                pack_length=256 if quick or not cuda else 1024)))
    if cuda:
        sizes = [8192, 32768] if quick else [8192, 32768, 131072]
        benches = [("varlen", lambda: bench_varlen(device, sizes, reps=2 if quick else 3)),
                   ("loss", lambda: [bench_loss(device, 8192 if quick else 32768, 32768)]),
                   ("train", lambda: [bench_train_step(device, 4096 if quick else 16384)])]
    else:  # CPU: tiny sizes, only to exercise the harness (timings on a shared CPU mean little)
        benches = [("varlen", lambda: bench_varlen(device, [256, 512], h=4, hk=2, d=32, doc=128, reps=1)),
                   ("loss", lambda: [bench_loss(device, 512, 512, hidden=64, chunk=128, reps=1)]),
                   ("train", lambda: [bench_train_step(device, 128, hidden=64, layers=2, reps=1)])]
    return checks, benches


def run_checks(checks: list[tuple[str, Callable]], report: Report, log=print) -> None:
    for group, fn in checks:
        t0 = time.perf_counter()
        try:
            out = fn()
            results, extra = out if isinstance(out, tuple) else (out, None)
        except Exception as err:
            tb = traceback.format_exc().strip().splitlines()
            results, extra = [Result(f"{group} check", "ERROR",
                                     detail=f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''} "
                                            f"({tb[-3].strip() if len(tb) > 2 else ''})")], None
        dt = time.perf_counter() - t0
        for r in results:
            r.seconds = r.seconds or dt
            report.checks.append(r)
            log(format_result(r))
        if extra:
            report.bench.append({"bench": f"{group} run", **extra})


def run_benches(benches: list[tuple[str, Callable]], report: Report, log=print) -> None:
    for group, fn in benches:
        try:
            rows = fn()
        except Exception as err:
            rows = [{"bench": group, "error": f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"}]
        for row in rows:
            report.bench.append(row)
            log("bench " + json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()
                                       if k != "losses"}))


def _fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.3g}" if abs(x) < 1e4 else f"{x:,.0f}"
    return str(x)


def format_result(r: Result) -> str:
    nums = f"max_abs={_fmt(r.max_abs)} rel={_fmt(r.rel)} tol={_fmt(r.tol)}" if r.rel is not None else ""
    return f"{r.status:<7} {r.name} {nums} {r.detail}".rstrip()


def summary_table(report: Report) -> str:
    lines = ["", "== correctness ==", f"{'status':<7} {'rel err':>9} {'tol':>7} {'max abs':>9}  check"]
    for r in report.checks:
        lines.append(f"{r.status:<7} {_fmt(r.rel):>9} {_fmt(r.tol):>7} {_fmt(r.max_abs):>9}  {r.name}"
                     + (f"  ({r.detail[:150]})" if r.status != "PASS" and r.detail else ""))
    lines += ["", "== throughput / memory ==",
              f"{'bench':<32} {'tokens':>7} {'ours tok/s':>11} {'base tok/s':>11} {'speed x':>8} {'ours GiB':>9} {'base GiB':>9}"]
    pairs = {"varlen_attention fwd+bwd bf16": ("ours", "sdpa_per_doc"), "lm loss fwd+bwd bf16": ("chunked", "full"),
             "tiny llama train step": ("longctx_varlen", "sdpa")}
    for row in report.bench:
        a, b = pairs.get(row.get("bench"), ("", ""))
        if not a:
            if "tokens_per_s" in row:
                lines.append(f"{row['bench']:<32} {'':>7} {_fmt(row.get('tokens_per_s')):>11}  (includes start-up)")
            elif "error" in row:
                lines.append(f"{row['bench']:<32} ERROR {row['error']}")
            continue
        lines.append(f"{row['bench']:<32} {row.get('tokens', ''):>7} {_fmt(row.get(a + '_tok_s')):>11} "
                     f"{_fmt(row.get(b + '_tok_s')):>11} {_fmt(row.get('speed_ratio')):>8} "
                     f"{_fmt(row.get(a + '_peak_gib')):>9} {_fmt(row.get(b + '_peak_gib')):>9}"
                     + "".join(f"  {k}: {v}" for k, v in row.items() if k.endswith("_error")))
    lines.append("(base = sdpa per document / full logits / sdpa model; speed x = ours / base; GiB = peak CUDA "
                 "memory above the inputs)")
    n_fail = len(report.failed)
    counts = {s: sum(r.status == s for r in report.checks) for s in ("PASS", "FAIL", "ERROR", "SKIPPED")}
    lines.append(f"\n{counts}  ->  {'FAILED' if n_fail else 'OK'}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python scripts/gpu_check.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller sizes, no 128K pack (about 90 s on an H100)")
    p.add_argument("--out", default=os.environ.get("OUT"), help="folder for gpu_check.json (default: $OUT if set)")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--only", default="", help="comma-separated groups to run: varlen,block,ring,loss,llama,train")
    p.add_argument("--no-bench", action="store_true", help="correctness checks only")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    device = args.device or ("cuda" if has_cuda() else "cpu")
    t_start = time.perf_counter()
    report = Report(env=environment())
    report.env.update(device=device, quick=args.quick)
    print("== environment ==")
    for k, v in report.env.items():
        print(f"  {k}: {v}")
    if not device.startswith("cuda"):
        print("  NOTE: no CUDA: checks run on the CPU to exercise the harness; CUDA paths stay unverified")
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    checks, benches = plan(device, args.quick)
    checks = [c for c in checks if not only or c[0] in only]
    benches = [] if args.no_bench else [b for b in benches if not only or b[0] in only]
    print("\n== checks ==")
    run_checks(checks, report)
    print("\n== benchmarks ==")
    run_benches(benches, report)
    report.env["total_seconds"] = round(time.perf_counter() - t_start, 1)
    print(summary_table(report))
    print(f"total {report.env['total_seconds']} s")
    if args.out:
        from longctx.io import atomic_write_json

        Path(args.out).mkdir(parents=True, exist_ok=True)
        atomic_write_json(Path(args.out) / "gpu_check.json",
                          {"env": report.env, "checks": [asdict(r) for r in report.checks], "bench": report.bench})
        print(f"wrote {Path(args.out) / 'gpu_check.json'}")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
