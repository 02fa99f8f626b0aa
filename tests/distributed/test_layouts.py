"""The sequence-parallel layout registry: every row is complete, and every reader takes its names from it."""

import dataclasses
import sys
import types

import pytest
import torch

import longctx.attention.hf as hf
from longctx.distributed.layouts import LAYOUTS, Layout, get_layout
from longctx.distributed.layouts.varlen import varlen_spans
from longctx.distributed.sharding import layout_unit, local_indices, padded_length, shard_for_layout, unshard
from longctx.core.errors import LongctxError
from longctx.plan import RunShape, plan_run
from longctx.cli.plan import build_parser
from longctx.plan.shapes import PRESETS
from longctx.train.config import load_config, validate


def test_every_row_declares_its_fields():
    """Each row is keyed by its name and declares unit, spans, attention, documents, heads, comm and help."""
    for name, row in LAYOUTS.items():
        assert isinstance(row, Layout) and row.name == name
        assert row.description and "\n" not in row.description
        assert row.chunks_per_rank >= 1 and row.unit(3) == 3 * row.chunks_per_rank
        assert row.unit_formula in ("sp", f"{row.chunks_per_rank}·sp")
        assert callable(row.local_spans) and callable(row.attention_kwargs)
        assert callable(row.attention_fn())
        assert isinstance(row.multi_document, bool)
        assert row.check_heads(1, 32, 8) is None  # one rank splits nothing
        assert row.comm_bytes_per_token(4096, 1024, 2) > 0 and row.comm_formula


def test_declared_values_of_zigzag_and_varlen():
    """zigzag: unit 2W, one document, the zigzag ring; varlen: unit W, packs, the varlen ring; no GQA constraint."""
    z, v = get_layout("zigzag"), get_layout("varlen")
    assert (z.unit(4), v.unit(4)) == (8, 4)
    assert (z.multi_document, v.multi_document) == (False, True)
    assert z.attention_fn().__name__ == "zigzag_ring_attention"
    assert v.attention_fn().__name__ == "varlen_ring_attention"
    assert z.check_heads(8, 32, 2) is None and v.check_heads(8, 32, 2) is None


def test_declared_values_of_ulysses_and_usp():
    """Both: varlen's contiguous slices (unit W), packs, GLOBAL cu_seqlens; ulysses needs W | heads, usp
    adapts its Ulysses degree; both declare the all-to-all copies (usp: plus the ring's buffers)."""
    u, p, v = get_layout("ulysses"), get_layout("usp"), get_layout("varlen")
    assert (u.unit(4), p.unit(4)) == (4, 4) and u.multi_document and p.multi_document
    assert u.local_spans(12, 1, 3) == p.local_spans(12, 1, 3) == v.local_spans(12, 1, 3) == [(4, 8)]
    assert u.attention_fn().__name__ == "ulysses_attention" and p.attention_fn().__name__ == "usp_attention"
    assert u.check_heads(3, 32, 8) and p.check_heads(3, 32, 8) is None
    assert u.comm_bytes_per_token(4096, 1024, 2) == 2 * (2 * 4096 + 2 * 1024)
    assert p.comm_bytes_per_token(4096, 1024, 2) == (u.comm_bytes_per_token(4096, 1024, 2)
                                                     + v.comm_bytes_per_token(4096, 1024, 2))
    assert p.comm_formula == f"{u.comm_formula} + {v.comm_formula}"


def test_usp_row_needs_the_sub_groups(monkeypatch):
    """The usp row refuses a context without its Ulysses and ring sub-groups, naming them."""
    sp = _fake_ring_context(monkeypatch, "usp", torch.tensor([0, 8], dtype=torch.int32))
    sp.ulysses_group = sp.ring_group = None
    q = torch.randn(1, 2, 4, 3)
    with pytest.raises(ValueError, match=r"usp layout needs sequence_parallel\(..., ulysses_group=, ring_group="):
        hf.longctx_ring_attention(None, q, q, q, None)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_padded_length_is_the_next_multiple_of_the_rows_unit(layout, world):
    """Sharding pads to the row's unit, and the ranks' indices (from its spans) cover the padded pack once.

    (Shard/unshard round trips of every row: tests/distributed/test_sharding.py, parametrized over the registry.)"""
    unit = get_layout(layout).unit(world)
    assert layout_unit(layout, world) == unit
    total = padded_length(23, layout, world)
    assert total % unit == 0 and 0 <= total - 23 < unit
    idx = torch.cat([local_indices(total, layout, r, world) for r in range(world)])
    assert sorted(idx.tolist()) == list(range(total))


def test_unknown_layout_is_refused_naming_the_choices():
    """get_layout raises ValueError naming the registry's names."""
    with pytest.raises(ValueError, match="layout: unknown 'stripes'; choose one of zigzag, varlen, ulysses, usp"):
        get_layout("stripes")


def _accepted(name: str) -> dict[str, bool]:
    """Whether the trainer config, the planner (API and CLI), sharding and attention accept ``name``."""
    out = {}
    try:
        validate(load_config(None, ["parallel.sp_degree=2", f"parallel.layout={name}"]), world_size=2, pack_length=96)
        out["trainer"] = True
    except LongctxError:
        out["trainer"] = False
    try:
        RunShape(seq_len=96, gpus=2, sp=2, layout=name)
        out["planner"] = True
    except LongctxError:
        out["planner"] = False
    (action,) = [a for a in build_parser()._actions if "--layout" in a.option_strings]
    out["plan_cli"] = name in action.choices
    try:
        layout_unit(name, 2)
        out["sharding"] = True
    except ValueError:
        out["sharding"] = False
    try:
        hf.SequenceParallel(group=None, layout=name)
        out["attention"] = True
    except ValueError:
        out["attention"] = False
    return out


@pytest.mark.parametrize("name", list(LAYOUTS) + ["ring", "stripes"])
def test_trainer_planner_and_attention_accept_exactly_the_registry_names(name):
    """Every reader accepts a name iff it is a registry row (ulysses and usp are rows now; ring is not)."""
    expected = name in LAYOUTS
    assert _accepted(name) == dict.fromkeys(("trainer", "planner", "plan_cli", "sharding", "attention"), expected)


CONTIGUOUS = Layout(name="contiguous", description="varlen's contiguous slices, one document per pack",
                    chunks_per_rank=1, local_spans=varlen_spans, attention="_fake_layout_attention:attend",
                    multi_document=False)


def test_a_new_layout_is_one_row(monkeypatch):
    """A layout registered as one row (no other file touched) shards, unshards and is accepted everywhere."""
    monkeypatch.setitem(LAYOUTS, "contiguous", CONTIGUOUS)
    pack = {"input_ids": torch.arange(11), "labels": torch.arange(11) + 100}
    shards = [shard_for_layout(pack, "contiguous", r, 3) for r in range(3)]
    assert [s["indices"].tolist() for s in shards] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    for name, value in pack.items():
        assert torch.equal(unshard([s[name] for s in shards], "contiguous", total_len=11), value)
    assert all(_accepted("contiguous").values())


def _fake_ring_context(monkeypatch, layout: str, cu: torch.Tensor | None):
    """An active 2-rank context without a process group (longctx_ring reads only these attributes)."""
    sp = types.SimpleNamespace(group="G", layout=layout, cu_seqlens=cu, cache={}, world_size=2)
    monkeypatch.setattr(hf, "current_sequence_parallel", lambda kwargs=None: sp)
    return sp


def test_longctx_ring_calls_the_rows_attention_with_its_kwargs(monkeypatch):
    """Dispatch goes through the row: its attention function gets group, scale and the row's extra kwargs."""
    calls = []
    module = types.ModuleType("_fake_layout_attention")
    module.attend = lambda q, k, v, group, scale, **extra: calls.append((group, scale, extra)) or q
    monkeypatch.setitem(sys.modules, "_fake_layout_attention", module)
    monkeypatch.setitem(LAYOUTS, "contiguous", dataclasses.replace(CONTIGUOUS, attention_kwargs=lambda sp, q, kw: {"n": 7}))
    _fake_ring_context(monkeypatch, "contiguous", None)
    q = torch.randn(1, 2, 4, 3)
    out, _ = hf.longctx_ring_attention(None, q, q[:, :1], q[:, :1], None, scaling=0.5)
    assert calls == [("G", 0.5, {"n": 7})] and out.shape == (1, 4, 2, 3)


@pytest.mark.parametrize("layout", ["zigzag", "contiguous"])
def test_single_document_layouts_refuse_several_segments(monkeypatch, layout):
    """A row with multi_document=False refuses a context whose cu_seqlens hold several documents."""
    monkeypatch.setitem(LAYOUTS, "contiguous", CONTIGUOUS)
    _fake_ring_context(monkeypatch, layout, torch.tensor([0, 3, 5, 8], dtype=torch.int32))
    q = torch.randn(1, 2, 4, 3)
    with pytest.raises(ValueError, match=f"{layout} layout holds ONE causal sequence.*3 segments.*'varlen'"):
        hf.longctx_ring_attention(None, q, q, q, None)


def test_varlen_layout_refuses_batches_of_several_packs(monkeypatch):
    """The varlen row's check: one pack per rank (its ring takes global cu_seqlens of one pack)."""
    _fake_ring_context(monkeypatch, "varlen", torch.tensor([0, 8], dtype=torch.int32))
    q = torch.randn(2, 2, 4, 3)
    with pytest.raises(ValueError, match="batch 1"):
        hf.longctx_ring_attention(None, q, q, q, None)


def test_planner_numbers_come_from_the_row(monkeypatch):
    """The planner's granularity and communication buffers are the row's: a row with other values changes them."""
    run = RunShape(seq_len=4096, gpus=8, sp=8, layout="varlen")
    base = plan_run(PRESETS["llama-3-8b"], run)
    monkeypatch.setitem(LAYOUTS, "varlen", dataclasses.replace(get_layout("varlen"), chunks_per_rank=4,
                                                               comm_bytes_per_token=lambda q, kv, a: 0.0,
                                                               comm_formula="none"))
    with pytest.raises(LongctxError, match="multiple of 32 \\(4·sp for layout varlen\\)"):
        RunShape(seq_len=4080, gpus=8, sp=8, layout="varlen")
    other = plan_run(PRESETS["llama-3-8b"], run)
    ring = {t.name: t for t in base.breakdown}["ring buffers"]
    assert ring.bytes > 0 and {t.name: t for t in other.breakdown}["ring buffers"].bytes == 0
    assert {t.name: t for t in other.breakdown}["ring buffers"].formula == "none"


def test_planner_notes_and_recommended_sp_follow_the_row_head_constraint(monkeypatch):
    """A row whose check_heads refuses a degree gets a planner note, and recommend_sp skips that degree."""
    from longctx.plan.search import recommend_sp

    def kv_heads_divide(sp, heads, kv_heads):
        return None if kv_heads % sp == 0 else f"sp ({sp}) must divide the {kv_heads} KV heads"

    shape = PRESETS["llama-3-8b"]  # 8 KV heads
    run = RunShape(seq_len=524_288, gpus=16, gpu_mem_gib=80, sp=16, layout="varlen", sharding="zero3")
    assert recommend_sp(shape, run) == 16 and not any("KV heads" in n for n in plan_run(shape, run).notes)
    monkeypatch.setitem(LAYOUTS, "varlen", dataclasses.replace(get_layout("varlen"), check_heads=kv_heads_divide))
    assert "sp (16) must divide the 8 KV heads" in plan_run(shape, run).notes
    assert recommend_sp(shape, run) is None  # 16 was the only degree that fits
