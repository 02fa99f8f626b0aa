"""Rank functions for the Ulysses / USP tests (spawned by run_local, so they live at module level).

One 4-rank job: Ulysses on a 2-rank sub-group (global ranks [1, 3]: group ranks differ from global
ones) and on all 4 ranks, USP 2 x 2 on all 4 (Ulysses groups [0, 1], [2, 3]; rings [0, 2], [1, 3]).
Each comparison is ``support.ring_ranks._attention_case`` (float64 dense oracle on the real tokens) or
``support.ring_ranks.model_parity`` (degree-1 model on the same pack) with the Ulysses / USP attention.
"""

from __future__ import annotations

import torch.distributed as dist

from longctx.attention.ulysses import ulysses_attention, usp_attention
from longctx.distributed.layouts.usp import usp_group_ranks
from support import train_ranks as tr
from support.ring_ranks import _attention_case, model_parity

PAIR = [1, 3]
USP_U = 2


def _groups(rank: int, world: int) -> dict:
    """Every group of the suite (each rank creates all of them, in one order: new_group is collective)."""
    pair = dist.new_group(PAIR)
    ulysses_ranks, ring_ranks = usp_group_ranks(list(range(world)), USP_U)
    mine = {}
    for name, groups in (("ulysses", ulysses_ranks), ("ring", ring_ranks)):
        for ranks in groups:
            g = dist.new_group(ranks)
            if rank in ranks:
                mine[name] = g
    return {"pair": pair if rank in PAIR else None, "world": dist.group.WORLD, **mine}


def ulysses_suite(rank: int, world: int, cases: dict, models: dict) -> dict:
    """``cases`` / ``models``: {"ulysses2": [...], "ulysses4": [...], "usp": [...]} -> the same keys,
    results of this rank (None where it is not a member)."""
    assert world == 4
    g = _groups(rank, world)
    usp_kw = {"ulysses_group": g["ulysses"], "ring_group": g["ring"]}
    runs = {
        "ulysses2": (g["pair"], lambda grp: lambda q, k, v, cu, c: ulysses_attention(q, k, v, cu, group=grp,
                                                                                     kernel=c.get("kernel"))),
        "ulysses4": (g["world"], lambda grp: lambda q, k, v, cu, c: ulysses_attention(q, k, v, cu, group=grp,
                                                                                      kernel=c.get("kernel"))),
        "usp": (g["world"], lambda grp: lambda q, k, v, cu, c: usp_attention(q, k, v, cu, group=grp,
                                                                             kernel=c.get("kernel"), **usp_kw)),
    }
    out = {}
    for name, (grp, make) in runs.items():
        if grp is None:
            out[name] = None
            continue
        grank, n = dist.get_rank(grp), dist.get_world_size(grp)
        attend = make(grp)
        res = [_attention_case(grank, n, c, grp, attend=lambda q, k, v, cu, c=c: attend(q, k, v, cu, c))
               for c in cases.get(name, [])]
        layout = "usp" if name == "usp" else "ulysses"
        kw = usp_kw if name == "usp" else None
        mres = [model_parity(grank, n, *m, group=grp, sp_kwargs=kw) for m in models.get(name, [])]
        assert all(m[1] == layout for m in models.get(name, []))
        out[name] = (grank, res, mres)
    return out


def train_layout(rank: int, world: int, cfg_dict: dict) -> dict | None:
    """``support.train_ranks.train_params`` plus the layout the trainer ran (``parallel.layout`` resolved)."""
    from longctx.train.config import from_dict

    t, out = tr.run_capturing(from_dict(cfg_dict))
    return {**out, "layout": t.layout, "degree": t.layout_degree} if rank == 0 else None
