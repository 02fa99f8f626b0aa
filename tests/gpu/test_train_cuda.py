"""A short single-process `longctx train` run (the Trainer): the loss falls; on CUDA it trains under bf16 autocast."""

from __future__ import annotations

import pytest
import torch

from _cases import train_case


@pytest.fixture
def train_run(sizes, record_property):
    pytest.importorskip("datasets", reason="datasets not importable: the pack files need it (carry its wheels, scripts/README.md)")
    run = train_case(steps=sizes.train_steps, pack_length=sizes.pack_length)
    record_property("trainer_device", run.device)
    record_property("tokens_per_s", run.tokens_per_s)
    record_property("seconds", round(run.seconds, 2))
    return run


def test_train_loss_falls_below_90_percent_of_its_start(train_run, record_property):
    first, last, k = train_run.mean_first_last()
    record_property("losses", train_run.losses)
    assert train_run.loss_fell, f"mean of first {k} steps {first:.4f} -> last {k} steps {last:.4f} (need < 90%)"


def test_train_uses_bf16_autocast_on_cuda(cuda_only, train_run):
    if train_run.device != "cuda":
        pytest.skip(f"the trainer ran on {train_run.device}; bf16 autocast is a CUDA setting")
    assert train_run.autocast_dtype == torch.bfloat16, f"autocast_dtype={train_run.autocast_dtype}"
