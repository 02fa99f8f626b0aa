"""Helpers for the trainer tests: synthetic packs, configs, and module-level rank functions (spawn)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def make_packs(out: Path, seqs: list[list[int]], pack_length: int, pad_id: int = 257, mode: str = "pack",
               prompt: int = 2) -> Path:
    """Write a pack directory with packing's writer: first-fit packs (mode pack) or batches of 2 (mode sorted).

    Each sequence's first ``prompt`` tokens carry no label (like a prompt); the rest are targets,
    with LongAlign weights.
    """
    from packing.binpack import first_fit, pad_to_longest
    from packing.writer import make_manifest, rows_from_groups, write_packs

    sequences = [{"input_ids": np.asarray(s), "labels": np.asarray([-100] * min(prompt, len(s)) + list(s[prompt:]))}
                 for s in seqs]
    lengths = [len(s) for s in seqs]
    groups = first_fit(lengths, pack_length) if mode == "pack" else pad_to_longest(lengths, 2)
    n_rows = len(groups) if mode == "pack" else len(seqs)
    manifest = make_manifest(mode, pack_length, n_rows, {"pad_token_id": pad_id})
    return write_packs(out, rows_from_groups(sequences, groups, mode, pack_length, pad_id), manifest)


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


def rel_err(a: dict, b: dict) -> float:
    """||a - b|| / ||b|| over all tensors together (float64 arithmetic)."""
    num = sum(float(((a[k].astype("f8") - b[k].astype("f8")) ** 2).sum()) for k in b)
    den = sum(float((b[k].astype("f8") ** 2).sum()) for k in b)
    return (num / den) ** 0.5


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


def killed_resumed_and_straight(killed_cfg, straight_cfg, kill_after: int) -> tuple:
    """Run ``killed_cfg`` in a subprocess SIGKILLed right after optimizer step ``kill_after``, resume it here to
    the end, and run ``straight_cfg`` (the same run elsewhere) uninterrupted: returns (resumed summary,
    resumed trainer, straight trainer) for the bit-for-bit comparisons of the resume tests."""
    import signal
    import subprocess
    import sys

    from longctx.train.trainer import Trainer

    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parents[1])!r}); from support import train_ranks as tr; "
            f"tr.train_then_sigkill({killed_cfg.to_dict()!r}, {kill_after})")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    resumed = Trainer(killed_cfg)
    summary = resumed.run()
    straight = Trainer(straight_cfg)
    straight.run()
    return summary, resumed, straight
