"""Perplexity with full logits (baseline) vs our chunked head (eval_longbench.ppl), side by side.

Each variant runs in a fresh process so its peak resident memory is its own. A large vocabulary
makes the logits dominate, as in real checkpoints (at 128K tokens x 128K vocab, full fp32 logits
alone are 64 GB).

    python benchmarks/eval_ppl_chunked.py                  # defaults: 2048 tokens, vocab 32000
    python benchmarks/eval_ppl_chunked.py --tokens 4096 --vocab 64000
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import resource
import time


def _run(variant: str, tokens: int, vocab: int, chunk: int, q) -> None:
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    from eval_longbench.ppl import sliding_window_ppl
    from longctx.models.tiny import tiny_config

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_config(tiny_config("llama", vocab_size=vocab, max_position_embeddings=tokens)).eval()
    ids = torch.randint(0, vocab, (tokens,))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with torch.inference_mode():
        if variant == "full":
            logits = model(input_ids=ids[None]).logits[0].float()
            ppl = math.exp(F.cross_entropy(logits[:-1], ids[1:]).item())
        else:
            ppl = sliding_window_ppl(model, ids.tolist(), tokens, tokens, chunk_size=chunk)["ppl"]
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    q.put((variant, dt, (peak - base) / 1024, ppl))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=2048)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--chunk-size", type=int, default=256)
    a = p.parse_args()
    ctx = mp.get_context("spawn")
    res = {}
    for variant in ("full", "chunked"):
        q = ctx.Queue()
        proc = ctx.Process(target=_run, args=(variant, a.tokens, a.vocab, a.chunk_size, q))
        proc.start()
        v, dt, mem, ppl = q.get()
        proc.join()
        res[v] = (dt, mem, ppl)
        print(f"{v:8s} time {dt:7.3f} s   peak RSS growth {mem:8.1f} MiB   ppl {ppl:.4f}")
    (tf, mf, pf), (tc, mc, pc) = res["full"], res["chunked"]
    print(f"tokens={a.tokens} vocab={a.vocab} chunk={a.chunk_size}: full/chunked time {tf / tc:.2f}x, "
          f"memory {mf / max(mc, 1e-9):.1f}x less with chunks; full logits alone = {a.tokens * a.vocab * 4 / 2**20:.0f} MiB; "
          f"ppl rel. diff {abs(pf - pc) / pf:.1e}")


if __name__ == "__main__":
    main()
