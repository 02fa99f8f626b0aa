"""Evaluation during training: passkey accuracy and perplexity at chosen lengths, and a short-context guard.

Every ``eval.every`` optimizer steps (and at step 0, the base, and after the last step with
``eval.at_end``) the trainer calls :meth:`TrainEval.run`, which measures

- passkey accuracy per length: ``eval.samples`` prompts per length spread over ``eval.depths``
  depths, built once by :func:`eval_longbench.needle.build_sample` (the same prompts every time, so
  the curve moves only because the model does), greedy-decoded in batches of equal-length prompts
  (:func:`eval_longbench.models.hf_generate_batch_fn`) and scored by
  :func:`eval_longbench.needle.score_exact`;
- sliding-window perplexity per length (:func:`eval_longbench.ppl.sliding_window_ppl`), every
  length over the same span of ``eval.ppl_text``;
- the guard: both at the original window, next to the base model's values from step 0 (kept in
  ``eval_base.json`` so a resumed run compares with the same base).

Records go to ``metrics.jsonl`` (``"event": "eval"``) and TensorBoard, curves to ``eval_curves.png``.
Why it cannot change the training trajectory: it runs with no grad, in eval mode (dropout off), on
SDPA attention (the KV cache the training kernels refuse), and puts back the train mode, the
attention implementation and every RNG state (:func:`longctx.train.checkpoint.rng_state`) afterwards.
Without FSDP it runs on rank 0 while the other ranks wait at a barrier; with FSDP every rank runs it
(sharded forwards are collective) and rank 0 records it.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from eval_longbench.haystack import builtin_text, read_text_sources
from eval_longbench.models import hf_generate_batch_fn
from eval_longbench.needle import NeedleConfig, build_sample, depth_grid, sample_seed, score_exact
from eval_longbench.plots import plot_training_curves
from eval_longbench.ppl import sliding_window_ppl
from longctx.core.checkpoint_files import SAFE_LOAD_KWARGS
from longctx.core.errors import LongctxError
from longctx.core.io import atomic_write_text
from longctx.train.checkpoint import rng_state, set_rng_state
from longctx.train.config import EvalConfig
from rope_scaling.checkpoint_config import read_config, read_rope_config

EVAL_PROMPT_ATTN = "sdpa"  # supports the KV cache of generation; the longctx kernels do not
BASE_FILE = "eval_base.json"
CURVES_FILE = "eval_curves.png"


def original_window(model_dir: str | Path) -> int:
    """The context a checkpoint was trained at: its rope ``original_max_position_embeddings`` (an
    extended checkpoint), else ``max_position_embeddings``."""
    raw, path = read_config(model_dir)
    return int(read_rope_config(raw, path).original_length)


def ppl_token_ids(tokenizer, text_spec: str, n_tokens: int) -> list[int]:
    """The first ``n_tokens`` token ids of ``eval.ppl_text`` ("builtin" or paths), tokenized as ``longctx ppl`` does."""
    try:
        text = builtin_text(n_tokens) if text_spec == "builtin" else read_text_sources([text_spec])
    except LongctxError as err:
        raise LongctxError(f"eval.ppl_text: {err}") from None
    ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    if len(ids) < n_tokens:
        raise LongctxError(f"{text_spec}: eval.ppl_text: has {len(ids)} tokens, the perplexity lengths need {n_tokens}")
    return list(ids[:n_tokens])


def passkey_prompts(tokenizer, lengths: list[int], samples: int, depths: int, seed: int) -> dict[int, list[dict]]:
    """``samples`` passkey prompts per length, sample i at depth ``i mod depths`` of an even depth grid."""
    grid = depth_grid(depths)
    cfg = NeedleConfig(task="passkey", lengths=lengths, depths=grid)
    out: dict[int, list[dict]] = {}
    for L in lengths:
        try:
            out[L] = [build_sample(tokenizer, cfg, L, grid[i % depths], sample_seed(seed, L, grid[i % depths], i))
                      for i in range(samples)]
        except LongctxError as err:
            raise LongctxError(f"eval.passkey_lengths: {err}") from None
    return out


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module, attn_implementation: str = EVAL_PROMPT_ATTN) -> Iterator[None]:
    """Eval mode, no grad, ``attn_implementation`` and saved RNG states; all put back on exit."""
    rngs, was_training = rng_state(), model.training
    old_attn = getattr(model.config, "_attn_implementation", None)
    if old_attn not in (None, attn_implementation):
        model.set_attn_implementation(attn_implementation)
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        if old_attn not in (None, attn_implementation):
            model.set_attn_implementation(old_attn)
        model.train(was_training)
        set_rng_state(rngs)


class EvalSuite:
    """What one evaluation measures, prepared once (prompts, perplexity tokens) and run on any model state."""

    def __init__(self, cfg: EvalConfig, tokenizer, guard_length: int):
        self.cfg, self.tokenizer, self.guard = cfg, tokenizer, guard_length
        self.passkey_lengths = sorted(set(cfg.passkey_lengths) | {guard_length})
        self.ppl_lengths = sorted(set(cfg.ppl_lengths) | {guard_length})
        self.prompts = passkey_prompts(tokenizer, self.passkey_lengths, cfg.samples, cfg.depths, cfg.seed)
        self.ppl_ids = ppl_token_ids(tokenizer, cfg.ppl_text, max(self.ppl_lengths))
        chat = cfg.prompt == "chat" or (cfg.prompt == "auto" and bool(getattr(tokenizer, "chat_template", None)))
        self.chat = chat

    def measure(self, model: torch.nn.Module, *, synced: bool = False) -> dict[str, Any]:
        """Passkey accuracy and perplexity per length of ``model`` as it is now (call inside :func:`eval_mode`)."""
        t0 = time.perf_counter()
        generate = hf_generate_batch_fn(model, self.tokenizer, chat=self.chat, batch_size=self.cfg.batch_size,
                                        synced=synced)
        passkey = {}
        for L, samples in self.prompts.items():
            replies = generate([s["prompt"] for s in samples], self.cfg.max_new_tokens)
            hits = [score_exact(r, s["answer"]) for r, s in zip(replies, samples)]
            passkey[str(L)] = sum(hits) / len(hits)
        t1 = time.perf_counter()
        ppl = {}
        for L in self.ppl_lengths:
            stride = self.cfg.ppl_stride or max(1, L // 2)
            ppl[str(L)] = sliding_window_ppl(model, self.ppl_ids, L, min(stride, L))["ppl"]
        t2 = time.perf_counter()
        return {"passkey": passkey, "ppl": ppl, "passkey_seconds": t1 - t0, "ppl_seconds": t2 - t1}


def eval_record(step: int, measured: dict, base: dict, suite: EvalSuite, seconds: float) -> dict[str, Any]:
    """One ``metrics.jsonl`` line: the asked lengths, the guard beside its base values, and the cost."""
    g = str(suite.guard)
    passkey = {str(L): measured["passkey"][str(L)] for L in suite.cfg.passkey_lengths}
    ppl = {str(L): measured["ppl"][str(L)] for L in suite.cfg.ppl_lengths}
    guard = {"length": suite.guard, "passkey": measured["passkey"][g], "passkey_base": base["passkey"],
             "passkey_drop": base["passkey"] - measured["passkey"][g], "ppl": measured["ppl"][g],
             "ppl_base": base["ppl"], "ppl_ratio": measured["ppl"][g] / base["ppl"]}
    return {"step": step, "event": "eval", "passkey": passkey, "ppl": ppl, "guard": guard,
            "samples": suite.cfg.samples, "seconds": seconds,
            "passkey_seconds": measured["passkey_seconds"], "ppl_seconds": measured["ppl_seconds"]}


def read_eval_records(path: Path) -> list[dict]:
    """The ``"event": "eval"`` lines of a metrics file (a resumed run's earlier points of the curves)."""
    if not path.exists():
        return []
    out = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict) and line.get("event") == "eval":
            out.append(line)
    return out


class TrainEval:
    """The trainer's side: when to evaluate, the base values, records, curves and the ``stop_at`` decision."""

    def __init__(self, cfg: EvalConfig, model_dir: str | Path, out: Path, *, is_main: bool, runs_here: bool,
                 autocast_dtype: torch.dtype | None = None):
        self.cfg, self.out, self.is_main, self.runs_here = cfg, out, is_main, runs_here
        self.autocast_dtype = autocast_dtype  # the training step's autocast (bf16 on CUDA), unverified on CUDA
        self.model_dir = str(model_dir)
        self.guard_length = cfg.guard_length or original_window(model_dir)
        self.suite: EvalSuite | None = None
        if runs_here:
            try:
                tokenizer = AutoTokenizer.from_pretrained(model_dir)
            except (OSError, ValueError) as err:
                raise LongctxError(f"{model_dir}: eval: cannot load the tokenizer ({str(err).splitlines()[0]})") from None
            self.suite = EvalSuite(cfg, tokenizer, self.guard_length)
        self.base: dict | None = None
        self.records: list[dict] = []

    def due(self, step: int, last: int) -> bool:
        return bool(self.cfg.every and step % self.cfg.every == 0) or (self.cfg.at_end and step == last)

    def _base_key(self) -> dict:
        c = self.cfg
        return {"model": str(Path(self.model_dir).resolve()), "guard_length": self.guard_length, "samples": c.samples,
                "depths": c.depths, "seed": c.seed, "ppl_text": c.ppl_text, "ppl_stride": c.ppl_stride,
                "prompt": c.prompt, "max_new_tokens": c.max_new_tokens}

    def load_base(self) -> bool:
        """The base guard values saved by this run's step-0 evaluation, if they match the current settings."""
        try:
            saved = json.loads((self.out / BASE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        if saved.get("key") != self._base_key():
            return False
        self.base = saved["guard"]
        return True

    def measure(self, model: torch.nn.Module, synced: bool) -> tuple[dict, float]:
        assert self.suite is not None
        t0 = time.perf_counter()
        device = next(model.parameters()).device.type
        autocast = (torch.autocast(device, dtype=self.autocast_dtype) if self.autocast_dtype is not None
                    else contextlib.nullcontext())
        with eval_mode(model), autocast:
            measured = self.suite.measure(model, synced=synced)
        return measured, time.perf_counter() - t0

    def set_base(self, measured: dict) -> None:
        g = str(self.guard_length)
        self.base = {"passkey": measured["passkey"][g], "ppl": measured["ppl"][g]}
        if self.is_main:
            atomic_write_text(self.out / BASE_FILE, json.dumps({"key": self._base_key(), "guard": self.base}, indent=2) + "\n")

    def base_from_checkpoint(self, device: torch.device) -> None:
        """A resumed run without saved base values: measure the base checkpoint itself (loaded apart)."""
        base = AutoModelForCausalLM.from_pretrained(self.model_dir, **SAFE_LOAD_KWARGS,
                                                    attn_implementation=EVAL_PROMPT_ATTN).to(device)
        measured, _ = self.measure(base, synced=False)
        del base
        self.set_base(measured)

    def record(self, step: int, measured: dict, seconds: float) -> dict:
        assert self.suite is not None and self.base is not None
        rec = eval_record(step, measured, self.base, self.suite, seconds)
        self.records.append(rec)
        return rec

    def reached(self, rec: dict) -> bool:
        """``eval.stop_at`` met: passkey accuracy at the longest asked length >= the target."""
        if self.cfg.stop_at is None:
            return False
        longest = str(max(self.cfg.passkey_lengths))
        return rec["passkey"][longest] >= self.cfg.stop_at - 1e-12

    def plot(self) -> None:
        plot_training_curves(self.records, self.out / CURVES_FILE)


def summary_line(rec: dict) -> str:
    """``eval step 20 (3.1 s): passkey 512 1.00, 2048 0.40; ppl 512 1.02; guard 512 1.00 (base 1.00)``"""
    pk = ", ".join(f"{L} {v:.2f}" for L, v in rec["passkey"].items())
    pp = ", ".join(f"{L} {v:.3f}" for L, v in rec["ppl"].items())
    g = rec["guard"]
    return (f"eval step {rec['step']} ({rec['seconds']:.1f} s): passkey {pk or '-'}; ppl {pp or '-'}; guard "
            f"{g['length']}: passkey {g['passkey']:.2f} (base {g['passkey_base']:.2f}), ppl {g['ppl']:.3f} "
            f"(base {g['ppl_base']:.3f})")

