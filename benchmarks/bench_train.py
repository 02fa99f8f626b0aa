"""Training throughput of packing vs sorted vs naive batching, and memory of the chunked loss.

1. Tokens/s (real, non-padding tokens) of `longctx train` steps on a small Llama-shaped model, same
   token budget per micro-batch in every mode, on a LongAlign-like length mix scaled down for CPU
   (pack length 2048 instead of 64K: 60 % long sequences log-uniform 256..2048, 40 % short log-normal
   with median 22, i.e. LongAlign-10k + ShareGPT / 32):
     - packed + longctx_varlen attention (ours: packs with document boundaries; on CPU this is the
       pure-PyTorch twin of the flash-attn varlen kernel, so it is also shown with sdpa, which
       transformers masks per document from the restarting position_ids),
     - sorted batching + sdpa (LongAlign's alternative: similar lengths in one batch, padded),
     - naive padded batching + sdpa (random batches padded to their longest row).
   The four configs' timed steps are interleaved (round robin): on a shared machine the load
   changes within a run, and timing configs one after another would compare loads, not configs.
2. Peak memory (RSS, fresh process each) of the loss forward+backward: longctx.core.loss.chunked_lm_loss
   vs full logits (longctx.core.loss.full_lm_loss), at --loss-tokens x --vocab.

    python benchmarks/bench_train.py                          # defaults (reduced for a shared 2-core CPU)
    python benchmarks/bench_train.py --threads 1              # steadier when other jobs share the cores
    python benchmarks/bench_train.py --loss-tokens 32768 --vocab 32768   # the full 32K x 32K point (~13 GB RAM)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def longalign_like_lengths(n: int, pack_length: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scale = pack_length / 65536
    long = np.exp(rng.uniform(np.log(8192 * scale), np.log(pack_length), n))
    short = np.clip(rng.lognormal(np.log(700 * scale), 1.0, n), 8, 8192 * scale - 1)
    return np.where(rng.random(n) < 0.6, long, short).astype(np.int64).clip(2, pack_length)


def write_packs(out: Path, lengths: np.ndarray, pack_length: int, pad_id: int, seed: int) -> Path:
    """Best-fit-decreasing packs with LongAlign weights, written by packing's writer."""
    from packing import writer
    from packing.binpack import best_fit_decreasing

    rng = np.random.default_rng(seed)
    seqs = [{"input_ids": ids, "labels": np.concatenate([[-100], ids[1:]])}
            for ids in (rng.integers(0, 256, int(n)) for n in lengths)]
    groups = best_fit_decreasing(lengths, pack_length)
    manifest = writer.make_manifest("pack", pack_length, len(groups), {"pad_token_id": pad_id})
    return writer.write_packs(out, writer.rows_from_groups(seqs, groups, "pack", pack_length, pad_id), manifest)


def make_trainer(model: Path, packs: Path, mode: str, attn: str, steps: int, tmp: Path):
    from longctx.train.config import load_config
    from longctx.train.trainer import Trainer

    cfg = load_config(None, [f"model.path={model}", f"data.path={packs}", f"checkpoint.out={tmp / f'{mode}_{attn}'}",
                             f"data.mode={mode}", f"model.attn_implementation={attn}", "log.progress=false",
                             "log.tensorboard=false", "optim.lr=1e-4", f"train.steps={steps}",
                             "checkpoint.export=false"])
    t = Trainer(cfg)
    t.setup()
    return t


def throughput(model: Path, packs: Path, configs: list[tuple[str, str]], steps: int, warmup: int, tmp: Path) -> list[dict]:
    """Tokens/s of each (mode, attn) config, their timed steps INTERLEAVED (round robin), so a change
    in the load of a shared machine during the run hits every config alike."""
    trainers = [make_trainer(model, packs, mode, attn, steps + warmup, tmp) for mode, attn in configs]
    for t in trainers:
        for _ in range(warmup):
            t.train_one_step()
    rows = [{"mode": mode, "attn": attn, "tokens": 0, "slots": 0, "seconds": 0.0} for mode, attn in configs]
    for _ in range(steps):
        for t, r in zip(trainers, rows):
            r["slots"] += sum(int(b["input_ids"].numel()) for b in t.data.micro_batches(t.position))
            t0 = time.perf_counter()
            r["tokens"] += t.train_one_step()["tokens"]
            r["seconds"] += time.perf_counter() - t0
    for r in rows:
        r["tokens_per_s"] = r["tokens"] / r["seconds"]
    return rows


LOSS_CHILD = """
import resource, sys, torch
from longctx.core.loss import chunked_lm_loss, full_lm_loss
T, V, H, chunk, which = map(int, sys.argv[1:6])
torch.manual_seed(0)
h = (torch.randn(T, H) * 0.1).requires_grad_()
w = (torch.randn(V, H) * 0.02).requires_grad_()
y = torch.randint(0, V, (T,))
def rss():
    return int(open('/proc/self/statm').read().split()[1]) * 4096
base = rss()
if which:
    loss = chunked_lm_loss(h, w, y, chunk_size=chunk)
else:
    loss = full_lm_loss(h, w, y)
loss.backward()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(peak - base, float(loss))
"""


def loss_memory(tokens: int, vocab: int, hidden: int, chunk: int) -> dict:
    out = {}
    for name, which in (("full_logits", 0), ("chunked", 1)):
        proc = subprocess.run([sys.executable, "-c", LOSS_CHILD, str(tokens), str(vocab), str(hidden), str(chunk),
                               str(which)], capture_output=True, text=True, check=True)
        delta, loss = proc.stdout.split()
        out[name] = {"peak_bytes": int(delta), "loss": float(loss)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pack-length", type=int, default=2048)
    ap.add_argument("--sequences", type=int, default=160)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--loss-tokens", type=int, default=16384)
    ap.add_argument("--vocab", type=int, default=32768)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--chunk", type=int, default=4096)
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (1 is steadier on a shared machine)")
    a = ap.parse_args(argv)

    import torch

    from longctx.models.tiny import make_tiny_checkpoint

    torch.set_num_threads(a.threads)
    if not a.skip_throughput:
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            model = make_tiny_checkpoint(tmp / "model", "llama", hidden_size=128, num_layers=2, num_heads=4,
                                         num_kv_heads=2, intermediate_size=384, max_position_embeddings=a.pack_length)
            lengths = longalign_like_lengths(a.sequences, a.pack_length)
            packs = write_packs(tmp / "packs", lengths, a.pack_length, 257, 0)
            print(f"model: Llama hidden 128, 2 layers; {a.sequences} sequences, mean length {lengths.mean():.0f}, "
                  f"max {lengths.max()}; token budget {a.pack_length} per micro-batch; {a.steps} timed steps")
            rows = throughput(model, packs, [("pack", "longctx_varlen"), ("pack", "sdpa"), ("sorted", "sdpa"),
                                             ("padded", "sdpa")], a.steps, a.warmup, tmp)
            naive = rows[-1]["tokens_per_s"]
            print(f"{'mode':<8} {'attention':<15} {'tokens/s':>10} {'fill':>6} {'vs naive':>9}")
            for r in rows:
                print(f"{r['mode']:<8} {r['attn']:<15} {r['tokens_per_s']:>10.0f} {r['tokens'] / r['slots']:>6.2f} "
                      f"{r['tokens_per_s'] / naive:>8.2f}x")
    mem = loss_memory(a.loss_tokens, a.vocab, a.hidden, a.chunk)
    full, chunked = mem["full_logits"]["peak_bytes"], mem["chunked"]["peak_bytes"]
    print(f"loss fwd+bwd at {a.loss_tokens} tokens x {a.vocab} vocab (hidden {a.hidden}, chunk {a.chunk}): "
          f"full logits {full / 2**20:.0f} MiB, chunked {chunked / 2**20:.0f} MiB peak above inputs -> "
          f"{full / max(chunked, 1):.1f}x less; losses {mem['full_logits']['loss']:.6f} vs {mem['chunked']['loss']:.6f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
