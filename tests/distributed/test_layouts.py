"""The sequence-parallel layout registry: every row is complete, and every reader takes its names from it."""

import ast
import dataclasses
import types
from pathlib import Path

import pytest
import torch
from support import toy_layout as _toy_layout
from support.ring_ranks import toy_layout_suite

import longctx.distributed.hf_attention as hf
from longctx.attention import ulysses_attention, usp_attention, varlen_ring_attention, zigzag_ring_attention
from longctx.cli.plan import build_parser
from longctx.core.errors import LongctxError
from longctx.distributed.launch import run_local
from longctx.distributed.layouts import LAYOUTS, Auto, Layout, degree_keys, get_layout
from longctx.distributed.layouts.choose import choose_layout
from longctx.distributed.mesh import Groups, Mesh, build_layout_groups
from longctx.distributed.sharding import layout_unit, local_indices, padded_length, shard_for_layout, unshard
from longctx.plan import RunShape, plan_run
from longctx.plan.shapes import PRESETS
from longctx.train.config import ParallelConfig, load_config, validate


def test_every_row_declares_its_fields():
    """Each row is keyed by its name and declares unit, spans, attention, documents, heads, comm and help."""
    for name, row in LAYOUTS.items():
        assert isinstance(row, Layout) and row.name == name
        assert row.description and "\n" not in row.description
        assert row.chunks_per_rank >= 1 and row.unit(3) == 3 * row.chunks_per_rank
        assert row.unit_formula in ("sp", f"{row.chunks_per_rank}·sp")
        assert callable(row.local_spans) and callable(row.attention_kwargs)
        assert callable(row.attention)  # the kernel itself, not a name to import
        assert isinstance(row.multi_document, bool)
        assert row.check_heads(1, 32, 8) is None  # one rank splits nothing
        assert row.comm_bytes_per_token(4096, 1024, 2) > 0 and row.comm_formula


def test_declared_values_of_zigzag_and_varlen():
    """zigzag: unit 2W, one document, the zigzag ring; varlen: unit W, packs, the varlen ring; no GQA constraint."""
    z, v = get_layout("zigzag"), get_layout("varlen")
    assert (z.unit(4), v.unit(4)) == (8, 4)
    assert (z.multi_document, v.multi_document) == (False, True)
    assert z.attention is zigzag_ring_attention and v.attention is varlen_ring_attention
    assert z.check_heads(8, 32, 2) is None and v.check_heads(8, 32, 2) is None


def test_declared_values_of_ulysses_and_usp():
    """Both: varlen's contiguous slices (unit W), packs, GLOBAL cu_seqlens; ulysses needs W | heads, usp
    adapts its Ulysses degree; both declare the all-to-all copies (usp: plus the ring's buffers)."""
    u, p, v = get_layout("ulysses"), get_layout("usp"), get_layout("varlen")
    assert (u.unit(4), p.unit(4)) == (4, 4) and u.multi_document and p.multi_document
    assert u.local_spans(12, 1, 3) == p.local_spans(12, 1, 3) == v.local_spans(12, 1, 3) == [(4, 8)]
    assert u.attention is ulysses_attention and p.attention is usp_attention
    assert u.check_heads(3, 32, 8) and p.check_heads(3, 32, 8) is None
    assert u.comm_bytes_per_token(4096, 1024, 2) == 2 * (2 * 4096 + 2 * 1024)
    assert p.comm_bytes_per_token(4096, 1024, 2) == (u.comm_bytes_per_token(4096, 1024, 2)
                                                     + v.comm_bytes_per_token(4096, 1024, 2))
    assert p.comm_formula == f"{u.comm_formula} + {v.comm_formula}"


def test_a_context_refuses_sub_groups_its_row_does_not_declare():
    """``sequence_parallel(..., ring_group=...)`` for a layout without sub-groups is a mistake, named."""
    with pytest.raises(ValueError, match="the varlen layout declares no sub-group ring_group"):
        hf.SequenceParallel(group=None, layout="varlen", sub_groups={"ring_group": object()})
    assert hf.SequenceParallel(group=None, layout="usp", sub_groups={"ring_group": 1, "ulysses_group": 2}).sub_groups


def test_usp_row_needs_the_sub_groups(monkeypatch):
    """The usp row refuses a context without its Ulysses and ring sub-groups, naming them."""
    _fake_ring_context(monkeypatch, "usp", torch.tensor([0, 8], dtype=torch.int32))
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


CONTIGUOUS = _toy_layout.LAYOUT


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
    sp = types.SimpleNamespace(group="G", layout=layout, cu_seqlens=cu, cache={}, world_size=2, sub_groups={})
    monkeypatch.setattr(hf, "current_sequence_parallel", lambda kwargs=None: sp)
    return sp


def test_longctx_ring_calls_the_rows_attention_with_its_kwargs(monkeypatch):
    """Dispatch goes through the row: its attention function gets group, scale and the row's extra kwargs."""
    calls = []

    def attend(q, k, v, group, scale, **extra):
        calls.append((group, scale, extra))
        return q

    monkeypatch.setitem(LAYOUTS, "contiguous", dataclasses.replace(CONTIGUOUS, attention=attend,
                                                                   attention_kwargs=lambda sp, q, kw: {"n": 7}))
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


# ---------------------------------------------------------------- one home per layout

from support import ROOT  # noqa: E402

TOY_ATTENTION = [  # the toy is ONE document per pack: no seq_lens (one causal row), padding where T % 2
    dict(layout="contiguous", dtype="float64", T=13, H=4, Hkv=2, D=8),
    dict(layout="contiguous", dtype="float32", T=16, H=4, Hkv=1, D=8),
]
TOY_MODELS = [("llama", "contiguous", [23], True), ("qwen2", "contiguous", [18], False, True)]


def test_a_toy_layout_registers_with_two_files(monkeypatch):
    """A new layout is 2 files: its module (``tests/support/toy_layout.py``: spans, kernel by object, boundaries)
    and its registry row. With only those, the generic machinery runs it end to end: every reader accepts
    it, sharding round-trips, the mesh builds what it declares (nothing), and on 2 gloo ranks
    ``longctx_ring`` inside ``sequence_parallel`` matches the float64 dense oracle (out, dq, dk, dv) and a
    tiny model's loss and gradients match degree 1 (also with checkpointing). No file of the package
    names it: nothing else had to change."""
    monkeypatch.setitem(LAYOUTS, *next(iter(_toy_layout.ROW.items())))  # the row
    assert all(_accepted("contiguous").values())
    pack = {"input_ids": torch.arange(11), "labels": torch.arange(11) + 100}
    shards = [shard_for_layout(pack, "contiguous", r, 2) for r in range(2)]
    assert torch.equal(unshard([s["input_ids"] for s in shards], "contiguous", total_len=11), pack["input_ids"])
    assert build_layout_groups(Groups(Mesh.from_world(2, 2), sp="SP"), get_layout("contiguous"), 0) == {}

    out = run_local(toy_layout_suite, 2, TOY_ATTENTION, TOY_MODELS, timeout=300)
    for rank in out:
        for case, errs in zip(TOY_ATTENTION, rank["attention"], strict=True):
            tol = 1e-10 if case["dtype"] == "float64" else 1e-5
            assert max(errs.values()) <= tol, (case, errs)
        for case, r in zip(TOY_MODELS, rank["model"], strict=True):
            assert abs(r["loss_sp"] - r["loss1"]) <= 1e-10 * max(1.0, abs(r["loss1"])), case
            assert r["grad_err"] <= 1e-10 * max(1.0, r["grad_scale"]), (case, r)

    touched = {ROOT / "tests" / "support" / "toy_layout.py", ROOT / "longctx" / "distributed" / "layouts" / "__init__.py"}
    naming = [p for p in (ROOT / "longctx").rglob("*.py") if '"contiguous"' in p.read_text()]
    assert naming == [] and len(touched) == 2  # the module, and the row a real layout adds to LAYOUTS


GENERIC = ["longctx/train", "longctx/distributed/mesh.py", "longctx/distributed/sharding.py",
           "longctx/distributed/hf_attention.py", "longctx/distributed/layouts/choose.py"]


def _layout_names_in_code(path: Path) -> list[str]:
    """``path:line`` of every string constant in ``path``'s code that is a registry name (docstrings,
    the documentation, are not code)."""
    tree = ast.parse(path.read_text())
    docs = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}
    return [f"{path.relative_to(ROOT)}:{node.lineno}" for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in LAYOUTS and id(node) not in docs]


def test_the_generic_machinery_names_no_layout():
    """Trainer, step, config, mesh, sharding, the attention glue and ``auto`` read the rows' declarations:
    no code of theirs spells a layout's name (a special case would be a sixth home for that layout)."""
    files = [p for g in GENERIC for p in ([ROOT / g] if g.endswith(".py") else sorted((ROOT / g).rglob("*.py")))]
    assert len(files) > 5
    assert [hit for p in files for hit in _layout_names_in_code(p)] == []


def test_auto_chooses_from_the_rows_declarations(monkeypatch):
    """``auto`` reads each row's Auto rank and fit, its documents per pack, unit and heads: a row declared
    first is chosen where it fits, and passed over (with the reason) where its declarations say no."""
    first = dataclasses.replace(_toy_layout.LAYOUT, auto=Auto(rank=-1))
    monkeypatch.setitem(LAYOUTS, "contiguous", first)
    assert choose_layout(8, 32, 8, False, 96).layout == "contiguous"  # before ulysses
    multi = choose_layout(8, 32, 8, True, 96)
    assert multi.layout == "ulysses" and "not contiguous: one document per pack only" in multi.reason
    picky = dataclasses.replace(first, auto=Auto(rank=-1, fit=lambda sp, h, kv: None, needs="a 3rd KV head"))
    monkeypatch.setitem(LAYOUTS, "contiguous", picky)
    choice = choose_layout(8, 32, 8, False, 96)
    assert choice.layout == "ulysses" and "not contiguous: needs a 3rd KV head" in choice.reason
    assert choose_layout(1, 32, 8, True, 96).layout == "varlen"  # sp 1: the last resort, as before


def test_a_rows_degree_key_is_a_config_field_validated_by_the_row(monkeypatch):
    """Each declared degree key is a ``parallel`` field; the config refuses it with other layouts and
    applies the row's own check (a row whose check refuses every degree is obeyed, naming the key)."""
    fields = {f.name for f in dataclasses.fields(ParallelConfig)}
    assert set(degree_keys()) <= fields and degree_keys()["ulysses_degree"].name == "usp"
    usp = get_layout("usp")
    strict = dataclasses.replace(usp.split, check=lambda degree, sp, heads: f"{degree} is never right")
    monkeypatch.setitem(LAYOUTS, "usp", dataclasses.replace(usp, split=strict))
    with pytest.raises(LongctxError, match="config: parallel.ulysses_degree: 2 is never right"):
        validate(load_config(None, ["parallel.sp_degree=4", "parallel.layout=usp", "parallel.ulysses_degree=2"]),
                 world_size=4)


def test_the_mesh_builds_the_sub_groups_a_row_declares(monkeypatch):
    """For each SP group the mesh creates the partitions the row's split declares, in one order on every
    rank, and hands this rank its group of each by the kernel's keyword (usp 2 x 2 on SP ranks 4..7)."""
    import torch.distributed as dist

    made = []
    monkeypatch.setattr(dist, "new_group", lambda ranks: made.append(tuple(ranks)) or tuple(ranks))
    groups = Groups(Mesh.from_world(8, 4, rank=5), sp="SP")
    assert build_layout_groups(groups, get_layout("usp"), 2) == {"ulysses_group": (4, 5), "ring_group": (5, 7)}
    assert made == [(0, 1), (2, 3), (0, 2), (1, 3), (4, 5), (6, 7), (4, 6), (5, 7)]
    assert build_layout_groups(groups, get_layout("varlen"), 0) == {}
    assert build_layout_groups(Groups(groups.mesh), get_layout("usp"), 2) == {}  # no SP group: nothing to split
