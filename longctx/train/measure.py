"""Measure the peak memory of a real training step on CPU, to check the planner against.

PyTorch has no ``max_memory_allocated`` for CPU tensors, and peak RSS mixes in the interpreter,
shared libraries and glibc's arena caching. :class:`LiveTensorBytes` instead counts the bytes of
every live tensor storage exactly: a ``TorchDispatchMode`` sees each tensor an aten op creates
(forward, autograd backward and optimizer alike), and a weak reference to its storage fires when
the storage is freed. The result is the CPU analogue of ``torch.cuda.max_memory_allocated``
(allocator caching and fragmentation excluded; scratch memory a kernel allocates internally
without returning it as a tensor is not seen).
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from transformers import AutoModelForCausalLM

from longctx.core.loss import chunked_lm_loss, shift_targets
from longctx.models.registry import family_of
from longctx.train import lora
from longctx.train.config import PeftConfig
from longctx.train.parallelize import (
    apply_checkpoint_offload,
    apply_tiled_mlp,
    enable_checkpointing,
)


class LiveTensorBytes(TorchDispatchMode):
    """Tracks the bytes of live CPU tensor storages: ``.current`` and ``.peak`` (since entry/reset)."""

    def __init__(self) -> None:
        super().__init__()
        self._live: dict[int, weakref.ref] = {}
        self.current = 0
        self.peak = 0

    def track(self, tensor: torch.Tensor) -> None:
        """Count ``tensor``'s storage (once) until it is freed."""
        if not isinstance(tensor, torch.Tensor) or tensor.device.type != "cpu":
            return
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key == 0 or key in self._live:
            return
        nbytes = storage.nbytes()

        def _freed(_ref, key=key, nbytes=nbytes):
            if self._live.pop(key, None) is not None:
                self.current -= nbytes

        self._live[key] = weakref.ref(storage, _freed)
        self.current += nbytes
        self.peak = max(self.peak, self.current)

    def reset_peak(self) -> None:
        self.peak = self.current

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            self.track(t)
        return out


WARMUP_TOKENS = 64


@dataclass(frozen=True)
class StepMeasurement:
    peak_bytes: int
    """Peak live tensor bytes during one full training step (params and optimizer states included)."""
    static_bytes: int
    """Live bytes before the step: parameters, optimizer states, inputs."""
    step_seconds: float
    """Wall-clock seconds of a step: the mean of the ``timed_steps`` run after the measured one, outside the
    meter; with ``timed_steps`` 0 the measured step's own (its dispatch hook included: it matters for tiny
    models only)."""
    step_cpu_seconds: float
    """The same steps' CPU seconds (every thread of the process): steadier than wall time on a shared machine."""


def measure_train_step(config, seq_len: int, *, loss_chunk: int = 0, checkpointing: bool = False,
                       mlp_tiles: int = 1, checkpoint_offload: bool = False, seed: int = 0,
                       peft: PeftConfig | None = None, timed_steps: int = 0) -> StepMeasurement:
    """Peak memory of the second AdamW step of a ``transformers`` causal LM built from ``config``
    (float32, CPU, SDPA attention, one sequence of ``seq_len`` tokens).

    ``loss_chunk == 0``: the model's own loss over full logits (``model(input_ids, labels=...)``);
    otherwise the final hidden states go through ``longctx.core.loss.chunked_lm_loss`` with that chunk
    size, as the longctx trainer does. ``mlp_tiles`` != 1 and ``checkpoint_offload`` apply the trainer's
    ``train.tiled_mlp`` (0 = automatic tiles) and ``model.checkpoint_offload`` (``longctx.train.parallelize``). The first step runs untracked so that the optimizer states
    exist (on the first ``WARMUP_TOKENS`` tokens: the states' size does not depend on the length); the second
    is measured, from the forward pass to ``zero_grad``. ``peft`` (method lora): the
    trainer's LoRA wrap first (``longctx.train.lora.wrap``), AdamW over the trainable parameters only.
    ``timed_steps`` > 0: that many more steps, outside the meter (whose dispatch hook costs time), give
    :attr:`StepMeasurement.step_seconds`.
    """
    torch.manual_seed(seed)
    config._attn_implementation = "sdpa"
    model = AutoModelForCausalLM.from_config(config).float().train()
    if peft is not None and peft.enabled:  # as the trainer: wrap in place, then checkpointing and the memory set
        lora.wrap(model, peft, family_of(config, "measure"))
    if checkpointing:
        enable_checkpointing(model)
    if mlp_tiles != 1:
        apply_tiled_mlp(model, mlp_tiles)
    if checkpoint_offload:
        apply_checkpoint_offload(model, pin_memory=False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, foreach=False)
    ids = torch.randint(0, config.vocab_size, (1, seq_len))
    position_ids = torch.arange(seq_len)[None]

    def step(ids: torch.Tensor, position_ids: torch.Tensor) -> None:
        if loss_chunk:
            hidden = model.model(input_ids=ids, position_ids=position_ids).last_hidden_state
            targets, _ = shift_targets(ids, None, position_ids)
            loss = chunked_lm_loss(hidden, model.lm_head.weight, targets, chunk_size=loss_chunk) / ids.shape[1]
        else:
            loss = model(input_ids=ids, position_ids=position_ids, labels=ids).loss
        loss.backward()
        del loss
        opt.step()
        opt.zero_grad(set_to_none=True)

    step(ids[:, :WARMUP_TOKENS], position_ids[:, :WARMUP_TOKENS])  # creates the AdamW states (their size needs no long step)
    with LiveTensorBytes() as meter:
        tensors = [p for p in model.parameters()] + [b for b in model.buffers()] + [ids, position_ids]
        tensors += [v for st in opt.state.values() for v in st.values() if isinstance(v, torch.Tensor)]
        for t in tensors:
            meter.track(t)
        static = meter.current
        meter.reset_peak()
        wall, cpu = time.perf_counter(), time.process_time()
        step(ids, position_ids)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if timed_steps:
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(timed_steps):
            step(ids, position_ids)
        wall, cpu = (time.perf_counter() - wall) / timed_steps, (time.process_time() - cpu) / timed_steps
    return StepMeasurement(meter.peak, static, wall, cpu)
