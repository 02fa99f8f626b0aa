"""Helpers for the trainer tests: synthetic packs, configs, and module-level rank functions (spawn)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch


def make_packs(out: Path, seqs: list[list[int]], pack_length: int, pad_id: int = 257, mode: str = "pack",
               prompt: int = 2) -> Path:
    """Write a pack directory in the `longctx pack` format: first-fit packs, LongAlign weights.

    Each sequence's first ``prompt`` tokens carry no label (like a prompt); the rest are targets.
    """
    from datasets import Dataset

    rows: list[dict] = []
    groups: list[list[list[int]]] = []
    if mode == "pack":
        for s in seqs:
            for g in groups:
                if sum(map(len, g)) + len(s) <= pack_length:
                    g.append(s)
                    break
            else:
                groups.append([s])
    else:
        groups = [[s] for s in seqs]
    for b, g in enumerate(groups):
        ids, labels, pos, w, lens = [], [], [], [], []
        for s in g:
            lab = [-100] * min(prompt, len(s)) + list(s[prompt:])
            n = sum(x != -100 for x in lab)
            ids += s; labels += lab; pos += list(range(len(s))); lens.append(len(s))
            w += [1.0 / n if x != -100 else 0.0 for x in lab]
        if mode == "pack":
            p = pack_length - len(ids)
            ids += [pad_id] * p; labels += [-100] * p; pos += list(range(p)); w += [0.0] * p
        row = {"input_ids": ids, "labels": labels, "position_ids": pos, "seq_lens": lens, "loss_weights": w}
        if mode == "sorted":
            row["batch_id"] = b // 2
        rows.append(row)
    ds = Dataset.from_list(rows)
    ds.save_to_disk(str(out))
    manifest = {"format": "longctx-packs", "version": 1, "mode": mode, "pack_length": pack_length,
                "num_rows": len(rows), "tokenizer": {"pad_token_id": pad_id}}
    (Path(out) / "manifest.json").write_text(json.dumps(manifest))
    return Path(out)


def random_seqs(n: int, lo: int, hi: int, seed: int = 0, vocab: int = 256) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, vocab, int(rng.integers(lo, hi + 1))).tolist() for _ in range(n)]


def base_config(model: Path, packs: Path, out: Path, **sets):
    from longctx.train.config import load_config

    overrides = [f"model.path={model}", f"data.path={packs}", f"checkpoint.out={out}", "log.progress=false",
                 "log.tensorboard=false", "optim.lr=1e-3", "optim.warmup_steps=0", "train.steps=1"]
    overrides += [f"{k}={v}" for k, v in sets.items()]
    return load_config(None, overrides)


def params_of(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """A copy of the state dict as numpy arrays (compared with numpy tolerances by the tests)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def run_capturing(cfg) -> tuple:
    """Run a Trainer, recording the (reduced, clipped) gradients seen by the first optimizer step.

    With FSDP the model is sharded: the run goes through ``Trainer.run`` (whose final checkpoint
    holds the gathered weights) and nothing is captured here.
    """
    from longctx.train.trainer import Trainer

    t = Trainer(cfg)
    if cfg.parallel.fsdp:
        t.run()
        return t, None
    t.setup()
    grads: dict = {}

    def capture(optimizer, args, kwargs):
        if not grads:
            grads.update({n: p.grad.detach().numpy().copy() for n, p in t.model.named_parameters() if p.grad is not None})

    t.optimizer.register_step_pre_hook(capture)
    history = []
    t.callbacks.append(lambda tr_, s, line: history.append(line["loss"]))
    t.loop()
    return t, {"params": params_of(t.model), "grads": grads, "losses": history}


def train_params(rank: int, world_size: int, cfg_dict: dict) -> dict | None:
    """Train with ``cfg_dict`` on this rank; rank 0 returns parameters, first-step gradients and losses."""
    from longctx.train.config import from_dict

    _, out = run_capturing(from_dict(cfg_dict))
    return out if rank == 0 else None



def train_then_sigkill(cfg_dict: dict, kill_after: int) -> None:
    """Run in a subprocess: SIGKILL ourselves right after optimizer step ``kill_after`` (no cleanup at all)."""
    import os
    import signal

    from longctx.train.config import from_dict
    from longctx.train.trainer import Trainer

    def cb(trainer, step, line):
        if step == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    Trainer(from_dict(cfg_dict), callbacks=[cb]).run()
