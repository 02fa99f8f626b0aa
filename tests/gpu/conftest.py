"""Every test in tests/gpu is marked ``gpu`` and needs CUDA: on a machine without it, all skip cleanly.

``LONGCTX_GPU_TESTS_DEVICE=cpu`` runs the same tests on the CPU instead (the CUDA-only ones still
skip): that is how ``scripts/gpu_run.py --device cpu`` exercises the harness without a GPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from _oracle import compare

DEVICE_ENV = "LONGCTX_GPU_TESTS_DEVICE"
HERE = Path(__file__).resolve().parent


def selected_device() -> str | None:
    """"cpu" when asked for by ``DEVICE_ENV``, else "cuda" when available, else None (skip everything)."""
    if os.environ.get(DEVICE_ENV, "cuda") == "cpu":
        return "cpu"
    return "cuda" if torch.cuda.is_available() else None


def pytest_collection_modifyitems(config, items):
    device = selected_device()
    skip = pytest.mark.skip(reason=f"needs CUDA (torch.cuda.is_available() is False; {DEVICE_ENV}=cpu runs these on the CPU)")
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.gpu)
            if device is None:
                item.add_marker(skip)


@dataclass(frozen=True)
class Sizes:
    """Problem sizes: full on CUDA; reduced on the CPU, where a run only exercises the harness."""

    loss_tokens: int
    llama_tokens: int
    train_steps: int
    pack_length: int
    ring_timeout: float


SIZES = {"cuda": Sizes(loss_tokens=2048, llama_tokens=1024, train_steps=30, pack_length=1024, ring_timeout=90),
         "cpu": Sizes(loss_tokens=512, llama_tokens=192, train_steps=12, pack_length=256, ring_timeout=45)}


@pytest.fixture(scope="session")
def device() -> str:
    return selected_device() or "cuda"


@pytest.fixture(scope="session")
def sizes(device) -> Sizes:
    return SIZES[device]


@pytest.fixture
def cuda_only(device) -> None:
    """Skip on the CPU run: the path under test exists only on CUDA."""
    if device != "cuda":
        pytest.skip("a CUDA-only path (this run is on the CPU)")


@pytest.fixture
def check_close(record_property):
    """Assert ``got`` is within relative error ``tol`` of ``ref``; the numbers go into the JSON report."""

    def check(got: torch.Tensor, ref: torch.Tensor, tol: float) -> None:
        c = compare(got, ref, tol)
        record_property("tol", tol)
        record_property("rel", c.rel)
        record_property("max_abs", c.max_abs)
        assert c.ok, c.message()

    return check
