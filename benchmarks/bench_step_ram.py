"""Resident memory of a 1-process `longctx train` step vs a plain HF padding-free step (same model, same packs).

Each variant runs in a fresh process (glibc told to mmap large blocks, so freed tensors leave the
resident set): RSS after imports, after setup (model, AdamW, data), after each of two steps, and the
peak (ru_maxrss). Model: an 18.1M-parameter Llama (hidden 256, 2 layers, MLP 768, vocab 32000,
untied), float32; 16 random sequences of 500-2000 tokens packed into 4096-token packs.

    python benchmarks/bench_step_ram.py WORKDIR hf longctx:train.loss_chunk=4096 longctx

Variants: "hf" (transformers' own loss over full logits, padding-free via position_ids) and
"longctx[:key=value...]" (Trainer.setup + train_one_step with those --set overrides).
Measured (2026-12-02, this CPU): after-step RSS hf 561 MiB, longctx 566 MiB (equal: nothing extra is
held between steps); peak hf 2251 MiB, longctx with the former loss_chunk 4096 1858 MiB, with the
automatic chunk 1012 MiB: the extra peak was the 4096-token x 32000-vocab loss chunk (logits, softmax
and their gradient, ~1.5 GiB), which the automatic chunk (256 tokens here) removes.
"""
import os, subprocess, sys
from pathlib import Path
CHILD = r'''
import json, resource, sys, time
def rss(): return int(open('/proc/self/statm').read().split()[1]) * resource.getpagesize()
def hwm(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
marks = {"start": rss()}
import torch
torch.set_num_threads(1)
which, model, packs, out = sys.argv[1:5]
if which == "hf":
    from transformers import AutoModelForCausalLM
    from datasets import load_from_disk
    marks["imports"] = rss()
    m = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32, attn_implementation="sdpa").train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4, foreach=False)
    ds = load_from_disk(packs)
    marks["setup"] = rss()
    for i in range(2):
        row = ds[i]
        ids = torch.tensor(row["input_ids"])[None]; pos = torch.tensor(row["position_ids"])[None]
        lab = torch.tensor(row["labels"])[None]
        loss = m(input_ids=ids, position_ids=pos, labels=lab).loss
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
        del loss
        marks[f"step{i}"] = rss()
else:
    from longctx.train.config import load_config
    from longctx.train.trainer import Trainer
    marks["imports"] = rss()
    extra = sys.argv[5:]
    cfg = load_config(None, [f"model.path={model}", f"data.path={packs}", f"checkpoint.out={out}", "log.progress=false",
                             "log.tensorboard=false", "train.steps=2", "checkpoint.export=false", "data.shuffle=false",
                             "model.attn_implementation=sdpa", *extra])
    t = Trainer(cfg)
    t.setup()
    marks["setup"] = rss()
    for i in range(2):
        t.train_one_step()
        marks[f"step{i}"] = rss()
marks["peak"] = hwm()
print(json.dumps({k: v / 2**20 for k, v in marks.items()}))
'''
if __name__ == "__main__":
    ROOT = Path(sys.argv.pop(1))
    ROOT.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' pack helpers
    model, packs = ROOT / "model", ROOT / "packs"
    if not model.exists():
        from longctx.models.tiny import make_tiny_checkpoint
        from support import train_ranks as tr
        make_tiny_checkpoint(model, "llama", hidden_size=256, num_layers=2, num_heads=4, num_kv_heads=4,
                             intermediate_size=768, vocab_size=32000)
        tr.make_packs(packs, tr.random_seqs(16, 500, 2000, seed=1), 4096)
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_ARENA_MAX="1", OMP_NUM_THREADS="1")
    for which in sys.argv[1:]:
        name, *extra = which.split(":")
        out = subprocess.run([sys.executable, "-c", CHILD, name, str(model), str(packs), str(ROOT / f"run-{len(os.listdir(ROOT))}"), *extra],
                             env=env, capture_output=True, text=True)
        print(which, out.stdout.strip().splitlines()[-1] if out.returncode == 0 else out.stderr[-2000:], flush=True)
