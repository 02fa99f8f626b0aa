"""Peak memory of the language-modelling loss (forward + backward of the output head and cross-entropy).

Side by side in one run, each variant in a fresh subprocess (so no variant inherits another's heap),
at --tokens x --vocab with hidden size --hidden (float32, CPU):
  - hf:        transformers' own causal-LM loss over full logits (``hidden @ W.T`` then
               ``transformers.loss.loss_utils.ForCausalLMLoss``), what a plain HF training step does,
  - ours:      ``longctx.core.loss.chunked_lm_loss`` with its default chunk (``train.loss_chunk: auto``,
               ``longctx.core.sizing.auto_loss_chunk``),
  - ours-4096: the same with the former fixed default of 4096 tokens,
  - trl:       TRL's chunked log-prob function (``trl.kernels.ChunkedLogProbFunction``, what its
               SFT trainer's fused LM head runs; 4096-token x 32768-vocab tiles), when trl is importable.
Two meters: the exact peak of live tensor bytes (``longctx.train.measure.LiveTensorBytes``, the CPU
analogue of ``torch.cuda.max_memory_allocated``) above the inputs (hidden states, head weight), and
as a cross-check the growth of the process's peak RSS (glibc told to mmap large blocks so freed
tensors leave the resident set). Gradients of the hidden states and the head are produced by every
variant and counted in both. Ratios are to hf.

    python benchmarks/bench_loss.py                                  # 8192 x 32768, hidden 256
    python benchmarks/bench_loss.py --tokens 8192 --vocab 32000 --hidden 1024
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, resource, sys, torch
torch.set_num_threads(1)
from longctx.train.measure import LiveTensorBytes
variant, T, V, H = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
g = torch.Generator().manual_seed(0)
h = (torch.randn(T, H, generator=g) * 0.5).requires_grad_()
w = (torch.randn(V, H, generator=g) * H ** -0.5).requires_grad_()
y = torch.randint(0, V, (T,), generator=g)
def rss():
    return int(open('/proc/self/statm').read().split()[1]) * resource.getpagesize()
if variant == "trl":
    from trl.kernels import ChunkedLogProbFunction
    from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE as TRL_CHUNK
elif variant == "hf":
    from transformers.loss.loss_utils import ForCausalLMLoss
else:
    from longctx.core.loss import chunked_lm_loss
    from longctx.core.sizing import auto_loss_chunk
def run():
    if variant == "hf":  # the targets are already next-token targets: pass them as shift_labels; sum = mean x 1 item
        logits = (h @ w.T)[None]
        loss = ForCausalLMLoss(logits, None, V, num_items_in_batch=torch.tensor(1), shift_labels=y[None])
        del logits
        chunk = T
    elif variant == "trl":
        out = ChunkedLogProbFunction.apply(h, w, None, y, 1.0, TRL_CHUNK, None, 1.0, ())
        loss = -out[0].sum()
        chunk = 4096
    else:
        chunk = auto_loss_chunk(V, H) if variant == "ours" else 4096
        loss = chunked_lm_loss(h, w, y, chunk_size=chunk)
    loss.backward()
    return float(loss), chunk
run()  # warm up (libraries, thread pools), then measure a second time
h.grad = w.grad = None
base_rss = rss()
with LiveTensorBytes() as m:
    m.track(h); m.track(w); m.track(y)
    static = m.current
    m.reset_peak()
    loss, chunk = run()
hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"live_peak": m.peak - static, "rss_growth": hwm - base_rss, "loss": loss, "chunk": chunk}))
"""


def measure(variant: str, tokens: int, vocab: int, hidden: int) -> dict | None:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_ARENA_MAX="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", CHILD, variant, str(tokens), str(vocab), str(hidden)], env=env,
                          capture_output=True, text=True)
    if proc.returncode:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=8192, help="tokens with a target")
    ap.add_argument("--vocab", type=int, default=32768, help="vocabulary size V")
    ap.add_argument("--hidden", type=int, default=256, help="hidden size H")
    a = ap.parse_args(argv)
    try:
        import trl  # noqa: F401

        variants = ["hf", "ours", "ours-4096", "trl"]
    except ImportError:
        variants = ["hf", "ours", "ours-4096"]
        print("trl: not importable, its row is absent")
    rows = {v: measure(v, a.tokens, a.vocab, a.hidden) for v in variants}
    mib = 2.0**20
    hf = rows["hf"]
    print(f"loss forward+backward, {a.tokens} tokens x {a.vocab} vocab, hidden {a.hidden}, float32, CPU")
    print(f"{'variant':<10} {'chunk':>6} {'live MiB':>9} {'vs hf':>6} {'RSS MiB':>8} {'vs hf':>6} {'loss':>14}")
    for v, r in rows.items():
        if "error" in r:
            print(f"{v:<10} failed: {r['error']}")
            continue
        print(f"{v:<10} {r['chunk']:>6} {r['live_peak'] / mib:>9.1f} {r['live_peak'] / hf['live_peak']:>6.3f} "
              f"{r['rss_growth'] / mib:>8.1f} {r['rss_growth'] / hf['rss_growth']:>6.3f} {r['loss']:>14.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
