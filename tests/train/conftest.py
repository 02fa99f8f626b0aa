"""Fixtures of the trainer's fault tests: finished runs, built once per test module (copy before damaging)."""

from pathlib import Path

import pytest

from support.train_faults import finished_run


@pytest.fixture(scope="module")
def run_after_step_1(tiny_llama, packs, tmp_path_factory) -> Path:
    """A run with one complete checkpoint (step 1); the saves under test write step 2."""
    return finished_run(tiny_llama, packs, tmp_path_factory.mktemp("run") / "run", steps=1)


@pytest.fixture(scope="module")
def two_step_run(tiny_llama, packs, tmp_path_factory) -> Path:
    """A finished run with checkpoints after step 1 and step 2."""
    return finished_run(tiny_llama, packs, tmp_path_factory.mktemp("run") / "run", steps=2)
