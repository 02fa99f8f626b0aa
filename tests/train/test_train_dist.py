"""The trainer on 2 gloo ranks: sequence parallel and data parallel are exact, and the pipeline runs end to end."""

from __future__ import annotations


import pytest
import torch

from longctx.distributed.launch import run_local

from support import train_ranks as tr
from support.step_compare import PARAM_TOL, assert_same_step, one_process


@pytest.mark.parametrize("layout", ["varlen", "zigzag"])
def test_one_step_with_sp_degree_2_equals_sp_degree_1(tiny_llama, multi_doc_packs, long_docs, tmp_path, layout):
    """Ring attention over 2 ranks + summed gradients: the same optimizer step as one rank (packed docs: varlen)."""
    data = multi_doc_packs if layout == "varlen" else long_docs
    sets = {"train.micro_batch": 2, "data.shuffle": False, "checkpoint.export": False, "parallel.layout": layout}
    ref = one_process(tr.base_config(tiny_llama, data, tmp_path / "sp1", **sets))
    cfg = tr.base_config(tiny_llama, data, tmp_path / "sp2", **sets, **{"parallel.sp_degree": 2})
    out = run_local(tr.train_params, 2, cfg.to_dict(), timeout=240, threads_per_rank=1)[0]
    assert_same_step(out, ref)


def test_one_step_on_2_dp_ranks_equals_one_rank_with_double_accumulation(tiny_llama, multi_doc_packs, tmp_path):
    """2 DP ranks x 1 micro-batch = 1 rank x 2 accumulated micro-batches (global-M normalisation, summed grads)."""
    sets = {"data.shuffle": False, "checkpoint.export": False}
    ref = one_process(tr.base_config(tiny_llama, multi_doc_packs, tmp_path / "acc2", **sets, **{"train.grad_accum": 2}))
    cfg = tr.base_config(tiny_llama, multi_doc_packs, tmp_path / "dp2", **sets)
    out = run_local(tr.train_params, 2, cfg.to_dict(), timeout=240, threads_per_rank=1)[0]
    assert_same_step(out, ref)


def test_end_to_end_extend_pack_train_sp2_loss_falls_and_export_loads(tmp_path):
    """make-tiny -> extend (yarn x2) -> pack -> `longctx train --nproc 2` (SP 2): loss falls; final/ loads in plain HF."""
    import json

    from longctx.cli import main as longctx

    from longctx.models.tiny import make_tiny_checkpoint

    make_tiny_checkpoint(tmp_path / "tiny", "llama", max_position_embeddings=64)
    assert longctx(["extend", str(tmp_path / "tiny"), "--out", str(tmp_path / "x2"), "--method", "yarn",
                    "--factor", "2"]) == 0
    data = tmp_path / "sft.jsonl"
    with data.open("w") as f:  # learnable: the answer repeats the question
        for i in range(16):
            q = " ".join(["abc", "xyz", "klm", "pqr"][(i + j) % 4] for j in range(3 + i % 4))
            f.write(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": q}]}) + "\n")
    rc = longctx(["pack", str(data), "--tokenizer", str(tmp_path / "x2"), "--out", str(tmp_path / "packs"),
                  "--pack-length", "128"])
    assert rc == 0
    run = tmp_path / "run"
    rc = longctx(["train", "--nproc", "2", "--set", f"model.path={tmp_path / 'x2'}", "--set", f"data.path={tmp_path / 'packs'}",
                  "--set", f"checkpoint.out={run}", "--set", "parallel.sp_degree=2", "--set", "parallel.layout=varlen",
                  "--set", "train.steps=8", "--set", "optim.lr=3e-3", "--set", "log.progress=false"])
    assert rc == 0
    losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 8 and sum(losses[-2:]) < sum(losses[:2]) - 0.1
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(run / "final")  # plain transformers, no longctx import needed
    cfg = json.loads((run / "final" / "config.json").read_text())
    assert cfg["max_position_embeddings"] == 128 and cfg["rope_parameters"]["rope_type"] == "yarn"
    assert torch.isfinite(model(input_ids=torch.tensor([[1, 2, 3]])).logits).all()


def test_fsdp_on_2_ranks_equals_one_rank_with_double_accumulation(tiny_llama, multi_doc_packs, tmp_path):
    """parallel.fsdp shards weights and AdamW states (FSDP2, gloo): gathered checkpoint and export equal the 1-rank step."""
    sets = {"data.shuffle": False, "checkpoint.export": False}
    ref = one_process(tr.base_config(tiny_llama, multi_doc_packs, tmp_path / "acc2", **sets, **{"train.grad_accum": 2}))
    cfg = tr.base_config(tiny_llama, multi_doc_packs, tmp_path / "fsdp", **{**sets, "parallel.fsdp": True, "checkpoint.export": True})
    run_local(tr.train_params, 2, cfg.to_dict(), timeout=240, threads_per_rank=1)
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "fsdp" / "checkpoints" / "step-00000001" / "model.safetensors")
    assert tr.rel_err({k: v.numpy() for k, v in saved.items()}, ref["params"]) <= PARAM_TOL
    from transformers import AutoModelForCausalLM

    exported = tr.params_of(AutoModelForCausalLM.from_pretrained(tmp_path / "fsdp" / "final"))
    assert tr.rel_err(exported, ref["params"]) <= PARAM_TOL


def test_a_user_error_on_a_spawned_rank_is_one_line_not_a_traceback(tiny_llama, tmp_path):
    """A rank's LongctxError (here: a missing pack directory) reaches the caller as the same LongctxError."""
    from longctx.core.errors import LongctxError
    from longctx.train.run import launch_local

    cfg = tr.base_config(tiny_llama, tmp_path / "no-such-packs", tmp_path / "run", **{"parallel.sp_degree": 2})
    with pytest.raises(LongctxError, match="no-such-packs") as exc:
        launch_local(cfg, 2, timeout=120)
    assert "Traceback" not in str(exc.value)
