"""The longest sequence one training step fits in a memory cap, for each step of the ALST memory set.

One fixed ~25M-parameter Llama shape (hidden 256, 2 layers, 4 heads, MLP 768, vocabulary 45000,
untied head: 24.7M parameters), float32, CPU, AdamW, one sequence per step. Rows, each adding one
thing to the row above (ALST's table, arXiv 2506.13996, scaled to a CPU):

    plain HF (sdpa, full logits)  ->  + chunked loss  ->  + checkpointing  ->  + tiled MLP  ->  + checkpoint offload
        ->  SP 2 ring (zigzag)  |  SP 2 Ulysses

For each row the longest length (a multiple of --granularity) whose step fits in --cap-mib is found by
bisection, every probe in a fresh subprocess: the probe runs a tiny warm-up step (libraries, thread
pools), records its resident set, then builds the model and AdamW, runs a 16-token step (creating
AdamW's states, as in every step after the first) and one full step (forward, backward, optimizer
step) at that length; it fits when the growth of
the peak RSS (glibc told to mmap large blocks, so freed tensors leave the resident set at once)
stays within the cap. An address-space limit (RLIMIT_AS: the cap plus 1 GiB over the warmed-up
process) stops runaway probes early. The cap is small (default 544 MiB, not the machine's 24 GiB) so
that every probe takes seconds on a shared 2-core CPU; the ratios between rows are the result.

Beside each measured maximum: the planner's predicted maximum for the same run
(``longctx.plan.options.run_from_train_config`` in its CPU mode, capacity = the cap). On a CPU the
checkpoint offload row equals the tiled-MLP row by construction (host RAM is the device), in the
measurement and in the planner; on a GPU it frees L - 2 layers of checkpoints.

The SP rows (``--rows sp2-ring,sp2-ulysses``, not in the default run) keep the whole memory set and
split the one sequence over two gloo ranks started by the trainer's launcher
(``longctx.distributed.launch.run_local``, fresh ranks per probe); each rank runs the trainer's own step
(``longctx.train.step.train_step``: the pack sharded for parallel.layout zigzag or ulysses,
``longctx_ring`` attention, gradient all-reduce) on a full copy of the model and AdamW (no FSDP). The cap
is PER RANK, as on GPUs (each rank's peak RSS growth must stay within it; the probe reports the larger
of the two), not summed. The planner's column is the same run with parallel.sp_degree 2 and the layout.
Their probes cost ~2x the CPU of a one-process probe (two ranks, twice the length), so they use
--sp-granularity (2048) and --start (e.g. the tiled-MLP row's maximum x 2) instead of bracketing from
the planner's guess.

Measured (2026-12-02, this shared CPU, cap 544 MiB, granularity 512; rows run as in the default
command, the offload row in a second run with --rows offload):

    row          measured max   planned max   probes (peak RSS growth)
    plain-hf                0             0   512: 578 MiB (no)
    chunked              2560          2560   2560: 524 fits, 3072: 549 no
    ckpt                 6656          5632   6656: 540 fits, 7168: 556 no
    tiled-mlp           13312         10240   13312: 541 fits, 13824: 549 no
    offload             13312         10240   10240: 495, 13312: 541 fits (= tiled-mlp), 13824: 549 no
    sp2-ring            16384         10240   26624: 672 no, 20480: 595 no, 16384: 543 fits, 18432: 569 no
    sp2-ulysses         22528         16384   26624: 564 no, 20480: 511 fits, 22528: 529 fits, 24576: 546 no
    (offload: the same peak RSS as tiled-mlp at every length probed, as the planner says for a CPU; the
    offload row alone took 4.9 CPU-minutes of probes. sp2-*: granularity 2048, from 26624 = 2 x the
    tiled-mlp row, peak RSS growth of the larger rank, cap per rank; run as two jobs side by side with
    the second command below, 8.1 + ~8 CPU-minutes of probes (the 24576 Ulysses probe rerun alone, 2.3,
    after a fix to how ranks report). SP 2 over one process: ring 1.23x, Ulysses 1.69x (a rank holds
    the full parameters, gradients and AdamW states: 377 MiB of the 544 MiB independent of the length,
    so halving the activations does not double the length). At 20480 the planner puts both ~70 MiB above
    the measurement (661 and 581 MiB per rank vs 595 and 511), but its ring-over-Ulysses difference (the
    ring buffers, 80 MiB) matches the measured one (84 MiB).

    nice -n 10 python benchmarks/bench_longest.py                  # all single-process rows
    nice -n 10 python benchmarks/bench_longest.py --rows sp2-ring --start 26624      # (and sp2-ulysses)
    python benchmarks/bench_longest.py --rows chunked,ckpt --cap-mib 512
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys

SHAPE = dict(hidden_size=256, num_layers=2, num_heads=4, num_kv_heads=4, intermediate_size=768, vocab_size=45000,
             tie_word_embeddings=False)

ROWS = {  # name -> trainer settings (the keys of longctx train's config)
    "plain-hf": dict(loss="hf"),
    "chunked": dict(loss="chunked"),
    "ckpt": dict(loss="chunked", checkpointing=True),
    "tiled-mlp": dict(loss="chunked", checkpointing=True, tiled_mlp=True),
    "offload": dict(loss="chunked", checkpointing=True, tiled_mlp=True, checkpoint_offload=True),
    # two gloo ranks, the sequence split over them (parallel.sp_degree 2), the trainer's own step
    "sp2-ring": dict(loss="chunked", checkpointing=True, tiled_mlp=True, checkpoint_offload=True, sp=2,
                     layout="zigzag"),
    "sp2-ulysses": dict(loss="chunked", checkpointing=True, tiled_mlp=True, checkpoint_offload=True, sp=2,
                        layout="ulysses"),
}
SP_GRANULARITY = 2048  # the SP rows' probes are 2 ranks x ~2x the length: fewer, coarser probes

def _statm(field: int) -> int:
    """Bytes of /proc/self/statm's ``field`` (0: address space, 1: resident set)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[field]) * resource.getpagesize()


def _build(cfg, row: dict, attn: str):
    """The model and AdamW of a row: checkpointing, tiled MLP and offload applied as the trainer does."""
    import torch
    from transformers import AutoModelForCausalLM

    from longctx.train.parallelize import apply_checkpoint_offload, apply_tiled_mlp, enable_checkpointing

    model = AutoModelForCausalLM.from_config(cfg, attn_implementation=attn).float().train()
    if row.get("checkpointing"):
        enable_checkpointing(model, {"use_reentrant": False})
    if row.get("tiled_mlp"):
        apply_tiled_mlp(model, 0)
    if row.get("checkpoint_offload"):
        apply_checkpoint_offload(model, pin_memory=False)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=False)


def _step_1proc(row: dict):
    """One process: a plain HF step (full logits) or the base model plus the chunked loss."""
    import torch

    from longctx.core.loss import chunked_lm_loss, shift_targets

    def step(model, opt, n: int) -> None:
        ids = torch.randint(0, model.config.vocab_size, (1, n))
        pos = torch.arange(n)[None]
        if row["loss"] == "hf":
            loss = model(input_ids=ids, position_ids=pos, labels=ids).loss
        else:
            hidden = model.model(input_ids=ids, position_ids=pos).last_hidden_state
            targets, _ = shift_targets(ids, None, pos)
            loss = chunked_lm_loss(hidden, model.lm_head.weight, targets) / n  # train.loss_chunk: auto
        loss.backward()
        del loss
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step, "sdpa"


def _step_sp(row: dict, rank: int, world: int):
    """One SP rank: the trainer's own step (``longctx.train.step.train_step``: shard the pack for the
    layout, ``longctx_ring`` attention inside ``sequence_parallel``, chunked loss, gradient all-reduce)."""
    import torch

    from longctx.distributed.mesh import Mesh, build_groups
    from longctx.train.step import LMLoss, StepOptions, train_step

    groups = build_groups(Mesh.from_world(world, world, rank))
    opts = StepOptions(loss_mode="token", layout=row["layout"])

    def step(model, opt, n: int) -> None:
        g = torch.Generator().manual_seed(n)  # every rank holds the same pack
        ids = torch.randint(0, model.config.vocab_size, (1, n), generator=g)
        batch = {"input_ids": ids, "labels": ids, "position_ids": torch.arange(n)[None],
                 "loss_weights": torch.ones(1, n), "seq_lens": [[n]]}
        train_step(LMLoss(model, opts), opt, None, [batch], groups, opts)

    return step, "longctx_ring"


def _measure(rank: int, world: int, spec: dict) -> dict:
    """Peak RSS growth of this process over a warmed-up baseline for one steady-state step at spec["seq"]."""
    import torch

    from longctx.distributed.hf_attention import register
    from longctx.models.tiny import tiny_config

    register()  # longctx_ring, with transformers
    torch.set_num_threads(1)
    shape, row, cap = spec["shape"], spec["row"], spec["cap"]
    step, attn = _step_sp(row, rank, world) if world > 1 else _step_1proc(row)
    tiny = dict(shape, hidden_size=32, intermediate_size=64, vocab_size=512)
    m, o = _build(tiny_config("llama", **tiny), row, attn)
    step(m, o, 64)  # warm-up: libraries, thread pools, the process group's buffers
    del m, o
    base, vm = _statm(1), _statm(0)
    resource.setrlimit(resource.RLIMIT_AS, (vm + cap + (1 << 30), resource.RLIM_INFINITY))
    try:
        torch.manual_seed(0)
        m, o = _build(tiny_config("llama", **shape), row, attn)
        step(m, o, 16)  # AdamW's states exist from the first step on: measure a steady-state step
        step(m, o, spec["seq"])
        ok = True
    except (MemoryError, RuntimeError) as err:
        if "memory" not in str(err).lower() and not isinstance(err, MemoryError):
            raise
        ok = False
    hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out = {"rank": rank, "growth": hwm - base, "completed": ok}
    os.write(1, (json.dumps(out) + "\n").encode())  # one write: the ranks share the probe's stdout pipe
    if not ok and world > 1:
        os._exit(1)  # the peer waits in a collective: end the job instead of letting it time out
    return out


def _probe_main(spec: dict) -> None:
    """The probe process: one step in this process, or on ``sp`` gloo ranks (the trainer's launcher)."""
    sp = spec["row"].get("sp", 1)
    if sp == 1:
        _measure(0, 1, spec)
        return
    from longctx.distributed.launch import run_local

    run_local(_measure, sp, spec, timeout=3600, threads_per_rank=1)


def probe(row: dict, seq: int, cap: int) -> tuple[bool, int]:
    """(fits, peak RSS growth: the largest over the ranks) of one step at ``seq`` tokens, in a fresh
    process (and fresh ranks); the cap applies to every rank."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_ARENA_MAX="1", OMP_NUM_THREADS="1")
    spec = {"shape": SHAPE, "row": row, "seq": seq, "cap": cap}
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--probe", json.dumps(spec)],
                          env=env, capture_output=True, text=True)
    ranks = [json.loads(m) for m in re.findall(r'\{"rank"[^{}]*\}', proc.stdout)]
    growth = max((r["growth"] for r in ranks), default=-1)
    if len(ranks) < row.get("sp", 1):  # killed or failed to allocate outside torch
        return False, growth
    return all(r["completed"] for r in ranks) and growth <= cap, growth


def longest(row: dict, cap: int, start: int, unit: int, log) -> int:
    """The largest multiple of ``unit`` that fits: bracket from ``start`` (the planner's guess) in steps of
    25 %, then bisect. Memory grows with the length, so the boundary is unique."""
    def fits(n: int) -> bool:
        ok, growth = probe(row, n * unit, cap)
        log(f"    {n * unit:>7} tokens: {'fits' if ok else 'no'} (peak RSS growth {growth / 2**20:.0f} MiB)")
        return ok

    n = max(1, start // unit)
    if fits(n):
        lo, hi = n, None
        while hi is None:
            m = lo * 5 // 4 + 1
            lo, hi = (m, None) if fits(m) else (lo, m)
    else:
        lo, hi = 0, n
        while lo == 0:
            m = hi * 4 // 5
            if m == 0:
                return 0
            lo, hi = (m, hi) if fits(m) else (0, m)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo * unit


def planned(row: dict, cap: int, unit: int) -> int:
    from longctx.plan import max_seq_len, shape_from_config
    from longctx.plan.options import run_from_train_config
    from longctx.models.tiny import tiny_config
    from longctx.train.config import load_config

    sets = [f"model.gradient_checkpointing={bool(row.get('checkpointing'))}",
            f"model.checkpoint_offload={bool(row.get('checkpoint_offload'))}",
            f"train.tiled_mlp={bool(row.get('tiled_mlp'))}"]
    sp = row.get("sp", 1)
    if sp > 1:  # the trainer's attention for SP (model.attn_implementation: auto -> longctx_ring)
        sets += [f"parallel.sp_degree={sp}", f"parallel.layout={row['layout']}",
                 "model.attn_implementation=longctx_ring"]
    else:
        sets += ["model.attn_implementation=sdpa"]
    shape = shape_from_config(tiny_config("llama", **SHAPE))
    run = run_from_train_config(load_config(None, sets), shape, unit, sp, "cpu", cap / 2**30)
    if row["loss"] == "hf":
        run = run.replace(loss_chunk=0)  # full logits: a plain HF step, not a trainer option
    return max_seq_len(shape, run, multiple=unit)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cap-mib", type=int, default=544, help="memory cap of one step (peak RSS growth), MiB")
    ap.add_argument("--granularity", type=int, default=512, help="sequence lengths are multiples of this")
    ap.add_argument("--sp-granularity", type=int, default=SP_GRANULARITY,
                    help="the same for the two-rank rows (sp2-*), whose probes cost ~2x the CPU")
    ap.add_argument("--rows", default="plain-hf,chunked,ckpt,tiled-mlp,offload",
                    help=f"comma-separated rows: {', '.join(ROWS)}")
    ap.add_argument("--start", type=int, default=0,
                    help="first length probed (default: the planner's prediction), e.g. a row above x sp")
    ap.add_argument("--probe", help=argparse.SUPPRESS)  # internal: one probe process (JSON spec)
    a = ap.parse_args(argv)
    if a.probe:
        _probe_main(json.loads(a.probe))
        return 0
    cap = a.cap_mib * 2**20
    from longctx.plan import shape_from_config
    from longctx.models.tiny import tiny_config

    params = shape_from_config(tiny_config("llama", **SHAPE)).num_params
    print(f"model: Llama {SHAPE}, {params / 1e6:.1f}M parameters, float32, AdamW; cap {a.cap_mib} MiB", flush=True)
    results = []
    for name in a.rows.split(","):
        row = ROWS[name]
        unit = a.sp_granularity if row.get("sp", 1) > 1 else a.granularity
        pred = planned(row, cap, unit)
        print(f"{name}: planner predicts {pred}" + (f" ({row['sp']} ranks, cap per rank)" if "sp" in row else ""),
              flush=True)
        got = longest(row, cap, a.start or pred or unit, unit, lambda s: print(s, flush=True))
        results.append((name, got, pred))
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"\n{'row':<12} {'measured max':>12} {'planned max':>12} {'planned/measured':>16}")
    for name, got, pred in results:
        ratio = f"{pred / got:.2f}" if got else "-"
        print(f"{name:<12} {got:>12} {pred:>12} {ratio:>16}")
    print(f"probes' CPU time: {(cpu.ru_utime + cpu.ru_stime) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
