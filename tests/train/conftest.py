"""Fixtures of the trainer's tests: the sequence-parallel tests' packs (read-only), and the fault tests' finished
runs, built once per test module (copy before damaging)."""

from pathlib import Path

import pytest

from support import train_ranks as tr
from support.train_faults import finished_run


@pytest.fixture(scope="session")
def multi_doc_packs(tmp_path_factory) -> Path:
    """3 packs of 96 tokens, several documents each (documents cross the SP shard boundary)."""
    return tr.make_packs(tmp_path_factory.mktemp("packs") / "p", tr.random_seqs(9, 10, 40, seed=2), 96)


@pytest.fixture(scope="session")
def long_docs(tmp_path_factory) -> Path:
    """2 packs of 96 tokens, one document each (what the zigzag layout is for)."""
    return tr.make_packs(tmp_path_factory.mktemp("docs") / "p", tr.random_seqs(2, 80, 96, seed=3), 96)


@pytest.fixture(scope="module")
def run_after_step_1(tiny_llama, packs, tmp_path_factory) -> Path:
    """A run with one complete checkpoint (step 1); the saves under test write step 2."""
    return finished_run(tiny_llama, packs, tmp_path_factory.mktemp("run") / "run", steps=1)


@pytest.fixture(scope="module")
def two_step_run(tiny_llama, packs, tmp_path_factory) -> Path:
    """A finished run with checkpoints after step 1 and step 2."""
    return finished_run(tiny_llama, packs, tmp_path_factory.mktemp("run") / "run", steps=2)
