"""`longctx train` with parallel.layout ulysses / usp / auto: the same optimizer step as one process.

Spawns a 2-rank job (Ulysses) and a 4-rank job (USP 2 x 2): ~1-2 min on a 2-core machine.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from longctx.distributed.launch import run_local
from longctx.distributed.mesh import Groups, Mesh
from longctx.core.errors import LongctxError
from longctx.models.tiny import make_tiny_checkpoint
from longctx.train.data import open_packs
from longctx.train.trainer import Trainer

from support import train_ranks as tr
from support.ulysses_ranks import train_layout
from support.step_compare import assert_same_step, one_process

SETS = {"train.micro_batch": 2, "data.shuffle": False, "checkpoint.export": False}


@pytest.fixture(scope="module")
def tiny_qwen2(tmp_path_factory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-qwen2", "qwen2")


def test_llama_with_ulysses_2_equals_sp_1(tiny_llama, packs, tmp_path):
    """Tiny Llama (4 heads, 2 KV heads), packs of several documents: Ulysses over 2 ranks gives the
    gradients, parameters and loss of one process."""
    ref = one_process(tr.base_config(tiny_llama, packs, tmp_path / "sp1", **SETS))
    cfg = tr.base_config(tiny_llama, packs, tmp_path / "sp2", **SETS,
                         **{"parallel.sp_degree": 2, "parallel.layout": "ulysses"})
    out = run_local(train_layout, 2, cfg.to_dict(), timeout=300, threads_per_rank=1)[0]
    assert out["layout"] == "ulysses"
    assert_same_step(out, ref)


def test_qwen2_with_usp_2x2_equals_sp_1(tiny_qwen2, packs, tmp_path):
    """Tiny Qwen2: USP with parallel.ulysses_degree 2 on sp 4 (Ulysses 2 x ring 2) gives the step of one process."""
    ref = one_process(tr.base_config(tiny_qwen2, packs, tmp_path / "sp1", **SETS))
    cfg = tr.base_config(tiny_qwen2, packs, tmp_path / "sp4", **SETS,
                         **{"parallel.sp_degree": 4, "parallel.layout": "usp", "parallel.ulysses_degree": 2})
    out = run_local(train_layout, 4, cfg.to_dict(), timeout=400, threads_per_rank=1)[0]
    assert (out["layout"], out["degree"]) == ("usp", 2)
    assert_same_step(out, ref)


@pytest.mark.parametrize("sp,expected", [(2, ("ulysses", 0)), (4, ("usp", 2)), (8, ("usp", 2))])
def test_trainer_resolves_auto_from_the_models_kv_heads_and_says_so(tiny_llama, packs, tmp_path, capsys, sp, expected):
    """parallel.layout auto on the tiny Llama (2 KV heads): Ulysses at sp 2, USP 2 x sp/2 beyond; logged."""
    cfg = tr.base_config(tiny_llama, packs, tmp_path / "auto", **{"parallel.sp_degree": sp, "parallel.layout": "auto"})
    t = Trainer(cfg)
    t.src, t.is_main = open_packs(packs), True
    t.mesh = Mesh.from_world(sp, sp)
    t.groups = Groups(t.mesh)  # no process group: resolve_layout builds usp sub-groups only when one exists
    t.resolve_layout()
    assert (t.layout, t.layout_degree) == expected
    assert f"longctx train: parallel.layout auto: {expected[0]}" in capsys.readouterr().out


@pytest.mark.parametrize("sets,match", [
    ({"parallel.layout": "ulysses"}, r"config: parallel.layout: ulysses: sp \(8\) must divide the 4 attention heads"),
    ({"parallel.layout": "usp", "parallel.ulysses_degree": 8},
     "config: parallel.ulysses_degree: 8 must divide the 4 attention heads"),
])
def test_a_degree_the_heads_cannot_split_is_refused_naming_the_key(tiny_llama, packs, tmp_path, sets, match):
    """Tiny Llama (4 heads) at sp 8: Ulysses over 8 ranks, or a Ulysses group of 8, is refused before training."""
    t = Trainer(tr.base_config(tiny_llama, packs, tmp_path / "run", **{"parallel.sp_degree": 1}))
    t.setup_distributed()
    t.cfg.parallel.sp_degree = 8
    for key, value in sets.items():
        setattr(t.cfg.parallel, key.split(".")[1], value)
    t.mesh = Mesh.from_world(8, 8)
    with pytest.raises(LongctxError, match=match):
        t.build_data()
        t.build_model()
