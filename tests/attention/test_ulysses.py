"""Ulysses on 2 and 4 gloo ranks and USP 2 x 2 on 4 equal single-process attention; `auto` and the USP groups.

The multi-rank checks share ONE 4-rank job (spawning is the slow part; ``support.ulysses_ranks``): Ulysses
on the sub-group [1, 3] and on all 4 ranks, USP with Ulysses groups [0, 1], [2, 3] and rings
[0, 2], [1, 3]. Every case has documents crossing rank boundaries; most need padding.
"""

import pytest

from support.ulysses_ranks import ulysses_suite
from longctx.attention.ulysses import kv_replication
from longctx.distributed.layouts import get_layout
from longctx.distributed.layouts.choose import choose_layout, resolve_layout
from longctx.distributed.layouts.usp import usp_group_ranks
from longctx.distributed.launch import run_local
from longctx.core.errors import LongctxError
from longctx.train.config import load_config, validate

TOL = {"float64": 1e-10, "float32": 1e-5}

CASES = {
    "ulysses2": [
        dict(dtype="float64", T=13, H=4, Hkv=2, D=8, seq_lens=[5, 6, 2]),  # degree = KV heads; padding 13 -> 14
        dict(dtype="float64", T=12, H=4, Hkv=1, D=8, seq_lens=[3, 9]),  # degree above the KV heads: copies
        dict(dtype="float32", T=13, H=4, Hkv=4, D=8, seq_lens=[3, 10]),  # degree below the KV heads
    ],
    "ulysses4": [
        dict(dtype="float64", T=25, H=8, Hkv=8, D=8, seq_lens=[5, 13, 1, 6]),  # 2nd document on 3 ranks; pad 28
        dict(dtype="float64", T=24, H=8, Hkv=2, D=8, seq_lens=[10, 14]),  # degree above the KV heads
        dict(dtype="float64", T=16, H=12, Hkv=6, D=4, seq_lens=[16]),  # neither divides: lcm(6, 4) = 12 K/V heads
        dict(dtype="float32", T=23, H=4, Hkv=1, D=8, seq_lens=[23]),  # one document, padding
    ],
    "usp": [
        dict(dtype="float64", T=25, H=4, Hkv=2, D=8, seq_lens=[5, 13, 1, 6]),
        dict(dtype="float64", T=24, H=4, Hkv=1, D=8, seq_lens=[9, 15]),  # Ulysses 2 above 1 KV head
        dict(dtype="float32", T=22, H=8, Hkv=4, D=8, seq_lens=[4, 18]),
        dict(dtype="float64", T=12, H=4, Hkv=2, D=4, seq_lens=[7, 5], kernel="torch"),  # injected ring kernel
    ],
}
for _cases in CASES.values():
    for _c in _cases:
        _c["layout"] = "varlen"  # how the pack is sharded: contiguous slices, GLOBAL cu_seqlens

MODELS = {
    "ulysses2": [
        ("llama", "ulysses", [9, 14, 7], True),  # documents cross the rank boundary
        ("qwen2", "ulysses", [23], False),  # boundaries gathered from position_ids; padded 23 -> 24
        ("llama", "ulysses", [16], True, True),  # activation checkpointing: recompute in backward
    ],
    "usp": [
        ("qwen2", "usp", [9, 14, 7], True),  # padded 30 -> 32
        ("llama", "usp", [5, 12, 4], False),
    ],
}


@pytest.fixture(scope="module")
def suite():
    return run_local(ulysses_suite, 4, CASES, MODELS, timeout=300)


def _check_attention(suite, name: str, world: int) -> None:
    results = [r[name] for r in suite if r[name] is not None]
    assert sorted(grank for grank, _, _ in results) == list(range(world))
    for c in CASES[name]:
        assert sum(c["seq_lens"]) == c["T"]
    for grank, res, _ in results:
        for case, errs in zip(CASES[name], res, strict=True):
            for key, err in errs.items():
                assert err <= TOL[case["dtype"]], f"rank {grank} of {world}: {case} {key}: {err:.3g}"


@pytest.mark.parametrize("name,world", [("ulysses2", 2), ("ulysses4", 4)])
def test_ulysses_matches_full_attention(suite, name, world):
    """Output and dq/dk/dv of Ulysses equal the float64 dense oracle on every rank's real tokens (float64
    <= 1e-10, float32 <= 1e-5): KV heads split, replicated (degree above them) and lcm-replicated, packs
    whose documents cross ranks, padding."""
    _check_attention(suite, name, world)


def test_usp_2x2_matches_full_attention(suite):
    """USP (Ulysses 2 inside, varlen ring 2 across) equals the float64 dense oracle, GQA and packs included."""
    _check_attention(suite, "usp", 4)


@pytest.mark.parametrize("name", list(MODELS))
def test_model_with_ulysses_or_usp_matches_degree_1(suite, name):
    """Tiny Llama / Qwen2 (float64) through ``longctx_ring``: loss and every parameter gradient with Ulysses
    (2 ranks) and USP (2 x 2) equal degree 1 on the same pack, also with activation checkpointing."""
    results = [r[name][2] for r in suite if r[name] is not None]
    for i, case in enumerate(MODELS[name]):
        r = results[0][i]
        assert abs(r["loss_sp"] - r["loss1"]) <= 1e-10 * max(1.0, abs(r["loss1"])), case
        assert r["grad_err"] <= 1e-10 * max(1.0, r["grad_scale"]), (case, r)
        assert all(other[i]["loss_sp"] == r["loss_sp"] for other in results)


def test_usp_groups_put_ulysses_on_consecutive_ranks():
    """SP rank = ring rank x U + Ulysses rank: Ulysses groups are consecutive, rings stride by U."""
    assert usp_group_ranks([4, 5, 6, 7, 8, 9, 10, 11], 2) == (
        [[4, 5], [6, 7], [8, 9], [10, 11]], [[4, 6, 8, 10], [5, 7, 9, 11]])
    with pytest.raises(LongctxError, match="parallel.ulysses_degree: 3 does not divide parallel.sp_degree 4"):
        usp_group_ranks([0, 1, 2, 3], 3)


def test_kv_heads_are_replicated_only_when_the_degree_does_not_divide_them():
    """Copies per KV head: 1 when the degree divides them, lcm(Hkv, degree) / Hkv otherwise; degree must divide H."""
    assert kv_replication(4, 32, 8) == 1 and kv_replication(8, 32, 2) == 4 and kv_replication(4, 12, 6) == 2
    with pytest.raises(ValueError, match="degree 3 must divide the 32 attention heads"):
        kv_replication(3, 32, 8)


def test_ulysses_row_states_the_head_rule():
    """The ulysses row refuses a degree that does not divide the attention heads and points at usp/auto."""
    row = get_layout("ulysses")
    assert row.check_heads(8, 32, 2) is None and row.check_heads(4, 32, 8) is None
    assert "sp (3) must divide the 32 attention heads; use layout usp" in row.check_heads(3, 32, 8)


@pytest.mark.parametrize("sp,heads,kv,multi,length,expected", [
    (8, 32, 8, True, 96, ("ulysses", 0)),  # sp divides the KV heads
    (8, 32, 2, True, 96, ("usp", 2)),  # Ulysses as far as the 2 KV heads allow, ring 4 for the rest
    (4, 28, 4, False, 96, ("ulysses", 0)),
    (6, 24, 4, True, 96, ("usp", 2)),  # gcd(6, 4) = 2
    (4, 4, 1, False, 96, ("zigzag", 0)),  # MQA, one document per pack: balanced ring
    (4, 4, 1, True, 96, ("varlen", 0)),  # MQA, packs of several documents
    (4, 4, 1, False, 100, ("varlen", 0)),  # zigzag's unit 2·sp does not divide the pack length
])
def test_auto_picks_ulysses_as_far_as_kv_heads_allow_then_ring(sp, heads, kv, multi, length, expected):
    """``parallel.layout: auto``: Ulysses degree gcd(sp, KV heads), ring for the rest (varlen for packs)."""
    choice = choose_layout(sp, heads, kv, multi, length)
    assert (choice.layout, choice.degree) == expected
    assert choice.layout in choice.reason


def test_usp_without_a_degree_takes_it_from_the_kv_heads():
    """layout usp with ulysses_degree 0 uses gcd(sp, KV heads); a given degree is kept."""
    assert resolve_layout("usp", 0, 8, 32, 4, True, 96).degree == 4
    assert resolve_layout("usp", 2, 8, 32, 4, True, 96).degree == 2
    assert resolve_layout("varlen", 0, 8, 32, 4, True, 96).layout == "varlen"


@pytest.mark.parametrize("sets,match", [
    (["parallel.layout=ring"], "parallel.layout: 'ring' is not one of zigzag, varlen, ulysses, usp, auto"),
    (["parallel.layout=varlen", "parallel.ulysses_degree=2"], "parallel.ulysses_degree: 2 is for parallel.layout: usp"),
    (["parallel.layout=usp", "parallel.ulysses_degree=3"], "parallel.ulysses_degree: 3 does not divide parallel.sp_degree 4"),
    (["parallel.layout=usp", "parallel.ulysses_degree=-1"], "parallel.ulysses_degree: must be >= 0"),
])
def test_config_errors_name_the_layout_keys(sets, match):
    """Bad layout settings are refused by the train config, naming parallel.layout / parallel.ulysses_degree."""
    with pytest.raises(LongctxError, match=match):
        validate(load_config(None, ["parallel.sp_degree=4", *sets]), world_size=4, pack_length=96)


def test_config_accepts_auto_and_usp():
    """auto and usp (with or without a Ulysses degree) pass the static checks."""
    for sets in (["parallel.layout=auto"], ["parallel.layout=usp"], ["parallel.layout=usp", "parallel.ulysses_degree=2"]):
        validate(load_config(None, ["parallel.sp_degree=4", *sets]), world_size=4, pack_length=96)
