"""Packed (varlen) attention, block kernels and the lse merge, in one process; plus the HF plug-in."""

import pytest
import torch

import longctx.distributed.hf_attention as hf
from longctx.attention import blocks as bk
from longctx.attention import full_attention_reference, varlen_attention
from longctx.attention.ring.merge import merge_block

CU = torch.tensor([0, 7, 8, 15, 22], dtype=torch.int32)  # includes a length-1 sequence


def _qkv(t=22, h=4, hk=2, d=8, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, n, t, d, generator=g, dtype=torch.float64).to(dtype).requires_grad_() for n in (h, hk, hk)]


def _oracle(q, k, v, cu, dout):
    ref_in = [x.detach().double().requires_grad_() for x in (q, k, v)]
    ref = full_attention_reference(*ref_in, cu_seqlens=cu)
    return ref, torch.autograd.grad(ref, ref_in, dout.double())


# lengths 3, 137, 3, 7, 5, 2, 6, 4, 10: seven short ones padded into one shared call, 137 alone, 10
# in another bucket; groups out of token order, so the SDPA path gathers, pads and scatters
CU_MIXED = torch.tensor([0, 3, 140, 143, 150, 155, 157, 163, 167, 177], dtype=torch.int32)
# lengths 3, 137, 3, 7, 140, 10: too few short documents to pay for a gather: one call per document
CU_LONG = torch.tensor([0, 3, 140, 143, 150, 290, 300], dtype=torch.int32)


@pytest.mark.parametrize("cu", [CU, CU_MIXED, CU_LONG], ids=["short", "mixed", "long"])
@pytest.mark.parametrize("kernel", [None, "flash", "torch"], ids=["sdpa", "flash", "torch"])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_varlen_matches_dense_block_diagonal_attention(cu, kernel, dtype, tol):
    """varlen_attention (GQA; default SDPA path and both block kernels) == dense causal block-diagonal
    attention, forward and dq/dk/dv."""
    q, k, v = _qkv(t=int(cu[-1]), dtype=dtype)
    out = varlen_attention(q, k, v, cu, kernel=kernel)
    dout = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), dout)
    ref, ref_grads = _oracle(q, k, v, cu, dout)
    assert (out.double() - ref).abs().max() <= tol
    for g, r in zip(grads, ref_grads):
        assert g.shape == r.shape
        assert (g.double() - r).abs().max() <= tol


def test_varlen_differs_from_plain_causal_attention():
    """Control: the oracle itself distinguishes packed from unpacked attention (so the test above can fail)."""
    q, k, v = _qkv()
    packed = varlen_attention(q, k, v, CU)
    whole = full_attention_reference(q, k, v)
    assert (packed - whole)[:, :, 7:].abs().max() > 1e-3


def test_varlen_calls_kernel_per_sequence_never_on_whole_pack(monkeypatch):
    """Memory is bounded by per-sequence blocks: no kernel call ever sees more keys than the longest sequence."""
    seen = []
    real = bk.torch_block_forward

    def spy(q, k, v, causal, scale):
        seen.append(k.shape[2])
        return real(q, k, v, causal, scale)

    monkeypatch.setattr(bk, "torch_block_forward", spy)
    q, k, v = _qkv(t=40)
    cu = torch.tensor([0, 10, 20, 30, 40], dtype=torch.int32)
    varlen_attention(q, k, v, cu, kernel="torch")
    assert seen and max(seen) == 10


def _spy_sdpa(monkeypatch):
    calls = []
    real = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, **kw):
        calls.append((tuple(q.shape), tuple(k.shape)))
        return real(q, k, v, **kw)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    return calls


def test_sdpa_path_never_attends_over_the_pack_and_never_expands_kv(monkeypatch):
    """Default path: every SDPA call sees at most the longest document's keys, with the K/V heads unexpanded."""
    calls = _spy_sdpa(monkeypatch)
    q, k, v = _qkv(t=int(CU_MIXED[-1]))
    varlen_attention(q, k, v, CU_MIXED)
    longest = int((CU_MIXED[1:] - CU_MIXED[:-1]).max())
    assert calls and max(kshape[2] for _, kshape in calls) <= longest
    assert all(kshape[1] == k.shape[1] for _, kshape in calls)


def test_many_short_documents_share_batched_calls(monkeypatch):
    """60 short documents of varied lengths run as a few batched SDPA calls, not one call each."""
    calls = _spy_sdpa(monkeypatch)
    lens = torch.randint(1, 40, (60,), generator=torch.Generator().manual_seed(5))
    cu = torch.cat([torch.zeros(1, dtype=torch.int64), lens.cumsum(0)]).to(torch.int32)
    q, k, v = _qkv(t=int(cu[-1]), d=4)
    varlen_attention(q, k, v, cu)
    assert len(calls) <= 8 and sum(qshape[0] for qshape, _ in calls) == 60


def test_plan_gathers_only_when_it_saves_enough_calls():
    """Short documents are bucketed (with a gather) when that saves many calls, else each is its own call."""
    from longctx.attention.varlen_plan import plan_varlen

    bucketed = plan_varlen(tuple(CU_MIXED.tolist()))
    assert bucketed.gather is not None and len(bucketed.groups) == 3
    per_doc = plan_varlen(tuple(CU_LONG.tolist()))
    assert per_doc.gather is None and per_doc.groups == ((1, 3), (1, 137), (1, 3), (1, 7), (1, 140), (1, 10))


def test_equal_length_rows_run_as_one_call_without_copy():
    """A pack of equal-length rows (a [B, T] batch without boundaries) is one call on a view: no gather."""
    from longctx.attention.varlen_plan import plan_varlen

    plan = plan_varlen((0, 64, 128, 192))
    assert plan.groups == ((3, 64),) and plan.gather is None and plan.scatter is None


def test_flash_and_torch_kernels_agree_including_lse():
    """The CPU flash kernel and the exact torch kernel give the same block out and lse (float64, GQA)."""
    q, k, v = [x.detach() for x in _qkv(t=12)]
    for causal in (True, False):
        of, lf = bk.flash_block_forward(q, k, v, causal, 0.3)
        ot, lt = bk.torch_block_forward(q, k, v, causal, 0.3)
        assert (of - ot).abs().max() < 1e-12 and (lf - lt).abs().max() < 1e-12


def test_merging_split_keys_equals_one_block():
    """lse-merging attention on keys [0,5) and [5,12) equals attention on keys [0,12)."""
    q, k, v = [x.detach() for x in _qkv(t=12)]
    whole, whole_lse = bk.torch_block_forward(q, k, v, False, 0.35)
    out, lse = bk.new_accumulators(q, v)
    for a, b in ((0, 5), (5, 12)):
        o, l = bk.torch_block_forward(q, k[:, :, a:b], v[:, :, a:b], False, 0.35)
        merge_block(out, lse, o, l)
    assert (out - whole).abs().max() < 1e-12 and (lse - whole_lse).abs().max() < 1e-12


def test_rows_without_keys_do_not_poison_the_merge():
    """A block whose rows see no key (lse -inf; the flash kernel would say 0) leaves the result unchanged, no NaN."""
    q, k, v = [x.detach() for x in _qkv(t=6)]
    base, base_lse = bk.torch_block_forward(q, k, v, True, 0.5)
    out, lse = base.clone(), base_lse.clone()
    o, l = bk.flash_block_forward(q, k[:, :, :0], v[:, :, :0], False, 0.5)
    assert torch.isneginf(l).all()
    merge_block(out, lse, o, l)
    assert torch.equal(out, base) and torch.equal(lse, base_lse)
    empty_out, empty_lse = bk.new_accumulators(q, v)  # both sides empty: stays (0, -inf), not NaN
    merge_block(empty_out, empty_lse, o, l)
    assert not empty_out.isnan().any() and (empty_out == 0).all() and torch.isneginf(empty_lse).all()


# ---------------------------------------------------------------- transformers integration


def _tiny(family="llama", impl="longctx_varlen"):
    from transformers import AutoModelForCausalLM

    from longctx.models.tiny import tiny_config

    hf.register()  # the longctx_* names, with transformers
    cfg = tiny_config(family, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg, attn_implementation=impl).double().eval()


def test_registered_names_are_selectable():
    """``register()`` registers both names with transformers' AttentionInterface."""
    from transformers import AttentionInterface

    hf.register()

    for name in ("longctx_varlen", "longctx_ring"):
        assert name in AttentionInterface._global_mapping
    assert _tiny(impl="longctx_ring").config._attn_implementation == "longctx_ring"


@pytest.mark.parametrize("family", ["llama", "qwen2", "glm"])
def test_no_cross_document_leak_through_position_ids(family):
    """Packed forward (use_cache=False): changing document A never changes document B's logits,
    and B's logits equal B run alone."""
    model = _tiny(family)
    a = torch.randint(0, 256, (9,), generator=torch.Generator().manual_seed(1))
    b = torch.randint(0, 256, (7,), generator=torch.Generator().manual_seed(2))
    pos = torch.cat([torch.arange(9), torch.arange(7)])[None]
    with torch.no_grad():
        out1 = model(input_ids=torch.cat([a, b])[None], position_ids=pos, use_cache=False).logits
        out2 = model(input_ids=torch.cat([(a + 17) % 256, b])[None], position_ids=pos, use_cache=False).logits
        alone = model(input_ids=b[None], use_cache=False).logits
    assert (out1[0, :9] - out2[0, :9]).abs().max() > 1e-3  # the perturbation is visible in A
    assert (out1[0, 9:] - out2[0, 9:]).abs().max() < 1e-12
    assert (out1[0, 9:] - alone[0]).abs().max() < 1e-10


def test_cu_seq_lens_kwargs_set_boundaries():
    """model(..., cu_seq_lens_q/k=...) reaches the attention layers: boundaries hold even with unbroken position_ids."""
    model = _tiny()
    ids = torch.randint(0, 256, (16,), generator=torch.Generator().manual_seed(3))[None]
    cu = torch.tensor([0, 9, 16], dtype=torch.int32)
    kw = dict(cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=9, max_length_k=9, use_cache=False)
    with torch.no_grad():
        packed = model(input_ids=ids, **kw).logits
        alone = model(input_ids=ids[:, 9:], use_cache=False).logits
        unpacked = model(input_ids=ids, use_cache=False).logits
    assert (packed[0, 9:] - alone[0]).abs().max() < 1e-9  # RoPE is relative: the offset does not matter
    assert (unpacked[0, 9:] - alone[0]).abs().max() > 1e-3  # without boundaries B would see A


def test_ring_without_context_equals_varlen_and_sdpa_on_one_sequence():
    """longctx_ring outside sequence_parallel is plain causal attention: same logits as sdpa on one sequence."""
    ids = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ours = _tiny(impl="longctx_ring")(input_ids=ids, use_cache=False).logits
        ref = _tiny(impl="sdpa")(input_ids=ids, use_cache=False).logits
    assert (ours - ref).abs().max() < 1e-10


def test_padded_attention_mask_is_refused():
    """A 2-D mask with padding would be silently ignored by custom attention; we raise instead."""
    model = _tiny()
    ids = torch.randint(0, 256, (1, 8))
    mask = torch.ones(1, 8, dtype=torch.long)
    mask[0, -2:] = 0
    with pytest.raises(ValueError, match="attention_mask"):
        model(input_ids=ids, attention_mask=mask, use_cache=False)


def test_sequence_parallel_context_restores_previous():
    """The context is scoped: inside it is visible, after it the previous (none) is back."""
    assert hf.current_sequence_parallel() is None
    with hf.sequence_parallel(group=object(), layout="varlen") as sp:
        assert hf.current_sequence_parallel() is sp and sp.layout == "varlen"
    assert hf.current_sequence_parallel() is None
    with pytest.raises(ValueError, match="layout"):
        with hf.sequence_parallel(group=object(), layout="stripes"):
            pass


def test_decoding_with_a_kv_cache_is_refused():
    """Queries and keys of different lengths (a KV cache) would break the boundary logic: raise, never guess."""
    model = _tiny()
    ids = torch.randint(0, 256, (1, 6))
    with pytest.raises(ValueError, match="use_cache=False"):
        model.generate(ids, max_new_tokens=2, do_sample=False)


def test_boundaries_follow_in_place_changes_of_position_ids():
    """The per-forward boundary cache never serves stale boundaries: editing position_ids in place is seen."""
    q, k, v = [x.detach() for x in _qkv(t=12)]
    pos = torch.arange(12)[None].clone()
    first, _ = hf.longctx_varlen_attention(None, q, k, v, None, position_ids=pos)
    pos[0, 5:] = torch.arange(7)  # now two documents: [0, 5) and [5, 12)
    second, _ = hf.longctx_varlen_attention(None, q, k, v, None, position_ids=pos)
    ref = full_attention_reference(q, k, v, cu_seqlens=torch.tensor([0, 5, 12])).transpose(1, 2)
    assert (second - ref).abs().max() < 1e-12
    assert (first - second)[:, 5:].abs().max() > 1e-3


def test_varlen_attention_gets_one_dtype_under_autocast(monkeypatch):
    """Under bf16 autocast RoPE hands q/k in float32 and v in bf16; the kernel (flash-attn on CUDA needs
    it) must receive all three in the autocast dtype, and the result must still be right."""
    import longctx.attention.varlen as lv
    from longctx.distributed.hf_attention import longctx_varlen_attention

    seen = []
    real = lv.varlen_attention

    def spy(q, k, v, **kw):
        seen.append((q.dtype, k.dtype, v.dtype))
        return real(q, k, v, **kw)

    monkeypatch.setattr(lv, "varlen_attention", spy)
    torch.manual_seed(0)
    q, k = torch.randn(1, 4, 16, 8), torch.randn(1, 2, 16, 8)
    v = torch.randn(1, 2, 16, 8).bfloat16()
    pos = torch.cat([torch.arange(10), torch.arange(6)])[None]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = longctx_varlen_attention(torch.nn.Module(), q, k, v, None, scaling=8**-0.5, position_ids=pos)
    assert seen[0] == (torch.bfloat16,) * 3
    ref, _ = longctx_varlen_attention(torch.nn.Module(), q.double(), k.double(), v.double(), None,
                                      scaling=8**-0.5, position_ids=pos)
    assert (out.double() - ref).abs().max() < 5e-2
