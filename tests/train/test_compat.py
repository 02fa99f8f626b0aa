"""Version and device-path compatibility that a CPU machine can check: the checkpointing call under either
transformers name, and the CUDA device set before the NCCL process group (recorded, no GPU needed)."""

from __future__ import annotations

import queue

import pytest
import torch
import torch.distributed as dist

from longctx.train.parallelize import checkpointing_enabled, enable_checkpointing


class _OldNames(torch.nn.Module):
    """transformers 5.17's API: only the ``gradient_checkpointing_*`` names."""

    def __init__(self):
        super().__init__()
        self.calls: list = []

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None):
        self.calls.append(("gradient_checkpointing_enable", gradient_checkpointing_kwargs))

    @property
    def is_gradient_checkpointing(self) -> bool:
        return bool(self.calls)


class _NewNames(_OldNames):
    """transformers >= 5.2x: the ``activation_checkpointing_*`` names (the old ones still exist, and warn)."""

    def activation_checkpointing_enable(self, activation_checkpointing_kwargs=None):
        self.calls.append(("activation_checkpointing_enable", activation_checkpointing_kwargs))

    @property
    def is_activation_checkpointing(self) -> bool:
        return bool(self.calls)

    @property
    def is_gradient_checkpointing(self) -> bool:
        raise AssertionError("the deprecated flag was read")


@pytest.mark.parametrize("cls, name", [(_OldNames, "gradient_checkpointing_enable"),
                                       (_NewNames, "activation_checkpointing_enable")])
def test_enable_checkpointing_uses_the_name_this_transformers_has(cls, name):
    model = cls()
    assert not checkpointing_enabled(model)
    kwargs = {"use_reentrant": False, "context_fn": print}
    enable_checkpointing(model, kwargs)
    assert model.calls == [(name, kwargs)]  # the kwargs dict passed through unchanged
    assert checkpointing_enabled(model)


def test_enable_checkpointing_on_the_installed_transformers():
    from transformers import AutoModelForCausalLM

    from longctx.models.tiny import tiny_config

    model = AutoModelForCausalLM.from_config(tiny_config("llama", hidden_size=32, num_layers=1, num_heads=4,
                                                         num_kv_heads=2, intermediate_size=64, vocab_size=300))
    assert not checkpointing_enabled(model)
    enable_checkpointing(model, {"use_reentrant": False})
    assert checkpointing_enabled(model)


def _record_cuda_and_init(monkeypatch, device_count: int = 2) -> list:
    """Pretend CUDA is there; record set_device and init_process_group calls in order."""
    calls: list = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: device_count)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(("set_device", torch.device(d))))
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kw: calls.append(("init", backend, kw)))
    return calls


def test_trainer_sets_the_cuda_device_before_the_nccl_group(monkeypatch, tmp_path):
    """torchrun rank 1 of 2: set_device(cuda:1) first, then init_process_group("nccl", device_id=cuda:1)."""
    from longctx.train.config import load_config
    from longctx.train.trainer import Trainer

    assert not dist.is_initialized()
    for k, v in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(k, v)
    calls = _record_cuda_and_init(monkeypatch)
    t = Trainer(load_config(None, [f"model.path={tmp_path}", f"data.path={tmp_path}", f"checkpoint.out={tmp_path}"]))
    t.setup_distributed()
    cuda1 = torch.device("cuda", 1)
    assert calls == [("set_device", cuda1), ("init", "nccl", {"device_id": cuda1})]
    assert t.device == cuda1 and t.mesh.world_size == 2 and not t.is_main


def test_run_local_nccl_rank_sets_its_device_before_the_group(monkeypatch):
    """launch._worker (run_local's rank body) with backend nccl: the rank's device first, then the group."""
    from longctx.distributed import launch

    for k in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.setenv(k, "0")  # _worker overwrites them; monkeypatch restores them afterwards
    calls = _record_cuda_and_init(monkeypatch, device_count=2)
    monkeypatch.setattr(dist, "barrier", lambda *a, **k: None)
    monkeypatch.setattr(dist, "TCPStore", lambda *a, **k: "the launcher's store")  # no launcher serves one here
    results: queue.Queue = queue.Queue()
    launch._worker(3, 4, 12345, "nccl", torch.get_num_threads(), _record_rank, (calls,), results)
    rank, ok, _ = results.get_nowait()
    assert (rank, ok) == (3, True)
    cuda1 = torch.device("cuda", 1)  # rank 3 on 2 devices
    assert calls[0] == ("set_device", cuda1)
    assert calls[1][:2] == ("init", "nccl") and calls[1][2]["device_id"] == cuda1
    assert calls[1][2]["store"] == "the launcher's store"
    assert calls[2] == ("fn", 3, 4)


def _record_rank(rank: int, world: int, calls: list) -> None:
    calls.append(("fn", rank, world))
