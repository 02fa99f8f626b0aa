"""Step time of sequence-parallel layouts side by side: Ulysses vs ring (varlen) at equal length, SP 2.

One job of ``--sp`` gloo ranks (``longctx.distributed.launch.run_local``). Every rank builds the same
random Llama-shaped model (``--hidden``, ``--heads``, ``--kv-heads``, ``--layers``) and one pack of
``--length`` tokens (documents of ``--doc`` tokens, boundaries crossing ranks), shards it per layout
(``shard_for_layout``) and times a training step: forward through ``longctx_ring`` inside
``sequence_parallel``, the chunked loss, backward, gradient all-reduce over the SP group. Layouts are
timed round robin (step i of every layout before step i+1 of any): on a shared machine the load
changes within a run, and timing one layout after the other would compare loads, not layouts.
Prints the median step time of each layout and its ratio to the first. On CPU the two also differ
in kernel: Ulysses runs single-process packed attention (SDPA per document group), the varlen ring
the block kernel with lse merging (``longctx.attention.blocks``), so the ratio is the layouts as
shipped, not communication alone.

Measured (this 2-core machine shared by other jobs, load average ~18, so absolute times are noisy):
``--length 4096 --doc 1024 --steps 4``: varlen 23.0 s, ulysses 17.9 s per step (0.78x); again with
q, k, v in one all-to-all: varlen 15.5 s, ulysses 12.0 s (0.77x).

    python benchmarks/bench_sp.py                                  # SP 2, 8K tokens, ring vs Ulysses
    python benchmarks/bench_sp.py --sp 4 --layouts varlen ulysses usp --ulysses-degree 2
"""

from __future__ import annotations

import argparse
import statistics
import time


def _step_times(rank: int, world: int, args: dict) -> dict:
    import torch
    import torch.distributed as dist
    from transformers import AutoModelForCausalLM

    from longctx.distributed.hf_attention import register, sequence_parallel
    from longctx.distributed.layouts.usp import usp_group_ranks
    from longctx.distributed.sharding import shard_for_layout
    from longctx.core.loss import chunked_lm_loss, shift_targets
    from longctx.models.tiny import tiny_config

    register()  # longctx_ring, with transformers
    sp_kwargs = {}
    if "usp" in args["layouts"]:
        ulysses, ring = usp_group_ranks(list(range(world)), args["ulysses_degree"])
        for name, groups in (("ulysses_group", ulysses), ("ring_group", ring)):
            for ranks in groups:
                g = dist.new_group(ranks)
                if rank in ranks:
                    sp_kwargs[name] = g
    cfg = tiny_config("llama", hidden_size=args["hidden"], num_layers=args["layers"], num_heads=args["heads"],
                      num_kv_heads=args["kv_heads"], intermediate_size=4 * args["hidden"],
                      max_position_embeddings=args["length"], vocab_size=args["vocab"])
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="longctx_ring")
    model.config.use_cache = False
    t, doc = args["length"], args["doc"]
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, args["vocab"], (t,), generator=g)
    lens = [doc] * (t // doc) + ([t % doc] if t % doc else [])
    pos = torch.cat([torch.arange(n) for n in lens])
    labels, _ = shift_targets(ids.clone(), None, pos)
    pack = {"input_ids": ids, "position_ids": pos, "labels": labels}
    shards = {name: shard_for_layout(pack, name, rank, world, lens) for name in args["layouts"]}
    params = [p for p in model.parameters() if p.requires_grad]

    def step(name: str) -> float:
        sh = shards[name]
        dist.barrier()
        start = time.perf_counter()
        with sequence_parallel(None, layout=name, cu_seqlens=sh["cu_seqlens"],
                               **(sp_kwargs if name == "usp" else {})):
            hidden = model.model(input_ids=sh["input_ids"][None], position_ids=sh["position_ids"][None],
                                 use_cache=False).last_hidden_state
            loss = chunked_lm_loss(hidden[0], model.lm_head.weight, sh["labels"], None)
            loss.backward()
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        dist.all_reduce(flat)
        model.zero_grad(set_to_none=True)
        dist.barrier()
        return time.perf_counter() - start

    times: dict[str, list[float]] = {name: [] for name in args["layouts"]}
    for i in range(args["warmup"] + args["steps"]):
        for name in args["layouts"]:
            dt = step(name)
            if i >= args["warmup"]:
                times[name].append(dt)
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sp", type=int, default=2, help="sequence-parallel degree (gloo ranks)")
    ap.add_argument("--layouts", nargs="+", default=["varlen", "ulysses"],
                    help="layouts to compare (the first is the ratio's denominator)")
    ap.add_argument("--ulysses-degree", type=int, default=2, help="usp only: ranks per Ulysses group")
    ap.add_argument("--length", type=int, default=8192, help="pack length (tokens over all ranks)")
    ap.add_argument("--doc", type=int, default=2048, help="document length inside the pack")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads per rank")
    a = ap.parse_args(argv)
    from longctx.distributed.launch import run_local

    args = {k: getattr(a, k) for k in ("layouts", "ulysses_degree", "length", "doc", "hidden", "heads", "kv_heads",
                                       "layers", "vocab", "steps", "warmup")}
    per_rank = run_local(_step_times, a.sp, args, timeout=3600, threads_per_rank=a.threads)
    # a step ends with a barrier: the slowest rank's time is the step time
    med = {name: statistics.median(max(r[name][i] for r in per_rank) for i in range(a.steps)) for name in a.layouts}
    base = med[a.layouts[0]]
    print(f"SP {a.sp} (gloo, {a.threads} thread(s)/rank), {a.length} tokens ({a.doc}-token documents), "
          f"llama {a.layers}L h{a.hidden} {a.heads}/{a.kv_heads} heads, median of {a.steps} steps (round robin)")
    print(f"{'layout':<10} {'step s':>8} {'vs ' + a.layouts[0]:>12}")
    for name in a.layouts:
        print(f"{name:<10} {med[name]:8.3f} {med[name] / base:11.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
