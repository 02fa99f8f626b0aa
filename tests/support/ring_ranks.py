"""Rank functions for the ring-attention tests (spawned by run_local, so they live at module level).

Every rank builds the same global inputs from a fixed seed, computes the float64 dense oracle on
the whole (real, unpadded) sequence itself, runs the distributed function on its shard and
returns max abs errors on its own tokens; the test process asserts on them.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from longctx.attention import full_attention_reference, varlen_ring_attention, zigzag_ring_attention
from longctx.distributed.hf_attention import register, sequence_parallel
from longctx.distributed.sharding import shard_for_layout


def _attention_case(rank: int, world: int, case: dict, group=None, attend=None) -> dict:
    """One ring-vs-oracle comparison; ``case``: layout, dtype, T (real length), H, Hkv, D, seq_lens, kernel.

    ``attend(q, k, v, cu_seqlens)``: the distributed attention to check on the local shards (default: the
    zigzag or varlen ring on ``group``)."""
    dtype = getattr(torch, case["dtype"])
    t_real, h, hk, d = case["T"], case["H"], case["Hkv"], case["D"]
    seq_lens = case.get("seq_lens")
    shard = shard_for_layout({"input_ids": torch.zeros(t_real, dtype=torch.long)}, case["layout"], rank, world, seq_lens)
    idx, cu = shard["indices"], shard["cu_seqlens"]
    t_pad = int(cu[-1])
    g = torch.Generator().manual_seed(case.get("seed", 0))
    q, k, v = (torch.randn(1, n, t_pad, d, generator=g, dtype=torch.float64) for n in (h, hk, hk))
    dout = torch.randn(1, h, t_pad, d, generator=g, dtype=torch.float64)
    dout[:, :, t_real:] = 0  # padding carries no loss

    # oracle: float64 dense attention on the REAL tokens only (padding does not exist for it)
    ref_in = [x[:, :, :t_real].clone().requires_grad_() for x in (q, k, v)]
    ref_cu = None if seq_lens is None else torch.tensor([0] + list(seq_lens)).cumsum(0)
    ref = full_attention_reference(*ref_in, cu_seqlens=ref_cu)
    ref_grads = torch.autograd.grad(ref, ref_in, dout[:, :, :t_real])

    loc = [x[:, :, idx].to(dtype).requires_grad_() for x in (q, k, v)]
    if attend is not None:
        out = attend(*loc, cu)
    elif case["layout"] == "zigzag":
        out = zigzag_ring_attention(*loc, group=group, kernel=case.get("kernel"))
    else:
        out = varlen_ring_attention(*loc, cu_seqlens=cu, group=group, kernel=case.get("kernel"))
    grads = torch.autograd.grad(out, loc, dout[:, :, idx].to(dtype))

    real = idx < t_real  # compare real tokens only
    ridx = idx[real]
    errs = {"out": (out[:, :, real].double() - ref[:, :, ridx]).abs().max().item()}
    for name, gl, gr in zip(("dq", "dk", "dv"), grads, ref_grads):
        errs[name] = (gl[:, :, real].double() - gr[:, :, ridx]).abs().max().item()
    return errs


def attention_cases(rank: int, world: int, cases: list[dict]) -> list[dict]:
    """Run several comparisons in one group (spawning ranks is the slow part)."""
    return [_attention_case(rank, world, c) for c in cases]


# sub-groups of a 4-rank job, deliberately not starting at global rank 0 and (for 2) not contiguous,
# so group ranks differ from global ranks and the ring's peer translation is exercised
SUBGROUPS = {2: [1, 3], 3: [1, 2, 3], 4: [0, 1, 2, 3]}


def ring_suite(rank: int, world: int, cases_by_size: dict, model: list) -> dict:
    """Everything the ring tests check, in one spawn: attention cases on groups of 2, 3 and 4 ranks
    (sub-groups of this job) and the model-parity cases on the 2-rank group."""
    assert world == 4
    groups = {n: (dist.new_group(SUBGROUPS[n]) if n < world else dist.group.WORLD) for n in SUBGROUPS}
    out = {"attention": {}, "model": None}
    for n, members in SUBGROUPS.items():
        if rank in members:
            g = groups[n]
            grank = dist.get_rank(g)
            out["attention"][n] = (grank, [_attention_case(grank, n, c, g) for c in cases_by_size[n]])
    if rank in SUBGROUPS[2]:
        g = groups[2]
        out["model"] = [model_parity(dist.get_rank(g), 2, *c, group=g) for c in model]
    return out


def _tiny_model(family: str):
    from transformers import AutoModelForCausalLM

    from longctx.models.tiny import tiny_config

    cfg = tiny_config(family, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64)
    cfg._attn_implementation = "longctx_ring"
    cfg.use_cache = False
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg, attn_implementation="longctx_ring").double()


def _pack(seq_lens: list[int]) -> dict:
    from longctx.core.loss import shift_targets

    g = torch.Generator().manual_seed(1)
    t = sum(seq_lens)
    ids = torch.randint(0, 256, (t,), generator=g)
    pos = torch.cat([torch.arange(n) for n in seq_lens])
    weights = torch.cat([torch.full((n,), 1.0 / (n - 1), dtype=torch.float64) for n in seq_lens])
    targets, w = shift_targets(ids.clone(), weights, pos)
    return {"input_ids": ids, "position_ids": pos, "labels": targets, "loss_weights": w}


def _loss(model, input_ids, position_ids, labels, weights, **kwargs) -> torch.Tensor:
    from longctx.core.loss import chunked_lm_loss

    hidden = model.model(input_ids=input_ids[None], position_ids=position_ids[None], use_cache=False,
                         **kwargs).last_hidden_state
    return chunked_lm_loss(hidden[0], model.lm_head.weight, labels, weights, chunk_size=8)


def model_parity(
    rank: int, world: int, family: str, layout: str, seq_lens: list[int],
    pass_cu: bool = True, checkpointing: bool = False, group=None, sp_kwargs: dict | None = None,
) -> dict:
    """Loss and parameter gradients: degree ``world`` sequence parallelism vs degree 1, same packed batch
    (``sp_kwargs``: more arguments of ``sequence_parallel``, e.g. the usp sub-groups)."""
    register()  # the attention functions, with transformers in this process
    pack = _pack(seq_lens)
    single = _tiny_model(family)
    loss1 = _loss(single, pack["input_ids"], pack["position_ids"], pack["labels"], pack["loss_weights"])
    loss1.backward()

    model = _tiny_model(family)
    if checkpointing:  # the recompute in backward runs outside the context below
        from longctx.train.parallelize import enable_checkpointing

        model.train()
        enable_checkpointing(model)
    shard = shard_for_layout(pack, layout, rank, world, None if layout == "zigzag" else seq_lens)
    cu = shard["cu_seqlens"] if pass_cu else None  # None: boundaries gathered from position_ids
    with sequence_parallel(group, layout=layout, cu_seqlens=cu, **(sp_kwargs or {})) as sp:
        # longctx_sp: the checkpoint keeps it with each layer's inputs, so the recompute finds it
        loss = _loss(model, shard["input_ids"], shard["position_ids"], shard["labels"], shard["loss_weights"],
                     longctx_sp=sp)
    loss.backward()  # outside the context on purpose: backward must not need it
    total = loss.detach().clone()
    dist.all_reduce(total, group=group)
    grad_err = 0.0
    for (name, p1), (_, p) in zip(single.named_parameters(), model.named_parameters()):
        gp = p.grad.clone()
        dist.all_reduce(gp, group=group)
        grad_err = max(grad_err, (gp - p1.grad).abs().max().item())
    return {"loss1": loss1.item(), "loss_sp": total.item(), "grad_err": grad_err,
            "grad_scale": max(p.grad.abs().max().item() for p in single.parameters())}


def model_cases(rank: int, world: int, cases: list[tuple]) -> list[dict]:
    return [model_parity(rank, world, *c) for c in cases]


def toy_layout_suite(rank: int, world: int, cases: list[dict], models: list[tuple]) -> dict:
    """The toy layout (``_toy_layout``) through the generic machinery on this gloo group: its row
    registered, each attention case sharded by ``shard_for_layout`` and run by ``longctx_ring`` inside
    ``sequence_parallel`` vs the float64 oracle, and each model case vs degree 1 (``model_parity``)."""
    from longctx.distributed.hf_attention import longctx_ring_attention
    from support import toy_layout as _toy_layout

    _toy_layout.register_row()

    def through_glue(q, k, v, cu):  # longctx_ring takes/returns the HF layout: [B, H, T, D] in, [B, T, H, D] out
        with sequence_parallel(None, layout=_toy_layout.LAYOUT.name, cu_seqlens=cu):
            out, _ = longctx_ring_attention(None, q, k, v, None)
        return out.transpose(1, 2)

    return {"attention": [_attention_case(rank, world, c, attend=through_glue) for c in cases],
            "model": [model_parity(rank, world, *m) for m in models]}
