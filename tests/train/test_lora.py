"""LoRA fine-tuning on Hugging Face PEFT (``peft.method: lora``): only the adapters (and, for LoRA+, the
embeddings and norms) train; sequence parallelism is exact; resume is bit for bit; both exports load."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from longctx.core.errors import LongctxError
from longctx.distributed.launch import run_local
from longctx.distributed.layouts import LAYOUTS
from longctx.train.config import load_config

from support import train_ranks as tr
from support.step_compare import PARAM_TOL, assert_same_step, one_process
from support.ulysses_ranks import train_layout

LORA = {"peft.method": "lora", "peft.r": 4, "data.shuffle": False}

# The `lora` extra is in the `test` extra, so CI has it; an environment without it (the GPU image) skips
# the tests that train, and still runs the config checks and the missing-package message.
needs_peft = pytest.mark.skipif(importlib.util.find_spec("peft") is None, reason="peft (the lora extra) is not installed")


def _base_weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(model_dir / "model.safetensors")


def _frozen_key(name: str) -> str:
    """A PEFT parameter name as the base checkpoint spells it."""
    return name.replace(".base_layer", "").replace(".original_module", "")


# ---------------------------------------------------------------- config
@pytest.mark.parametrize("sets, key", [
    (["peft.method=lora", "peft.r=0"], "peft.r"),
    (["peft.method=qlora"], "peft.method"),
    (["peft.method=lora", "peft.alpha=0"], "peft.alpha"),
    (["peft.method=lora", "peft.dropout=1"], "peft.dropout"),
    (["peft.method=lora", "peft.target_modules=all-linear,q_proj"], "peft.target_modules"),
    (["peft.method=lora", "peft.target_modules=q proj"], "peft.target_modules"),
    (["checkpoint.export=adapter"], "checkpoint.export"),
    (["checkpoint.export=zip"], "checkpoint.export"),
])
def test_bad_peft_values_are_one_line_naming_the_key(sets, key):
    with pytest.raises(LongctxError, match=key.replace(".", r"\.")) as err:
        load_config(None, sets)
    assert "\n" not in str(err.value)


def test_peft_keys_read_from_set_with_auto_and_bool_exports():
    cfg = load_config(None, ["peft.method=lora", "r=16", "peft.target_modules=q_proj,v_proj",
                             "peft.train_embeddings_norms=auto", "checkpoint.export=false"])
    assert (cfg.peft.r, cfg.peft.target_modules, cfg.peft.train_embeddings_norms) == (16, ["q_proj", "v_proj"], None)
    assert cfg.checkpoint.export == "none"
    assert load_config(None, ["checkpoint.export=true"]).checkpoint.export == "merged"
    assert load_config(None, ["peft.train_embeddings_norms=true"]).peft.train_embeddings_norms is True


@needs_peft
@pytest.mark.parametrize("target", ["q_projj", "lm_head"])
def test_a_target_matching_no_module_of_the_model_is_one_line(tiny_llama, packs, tmp_path, target):
    from longctx.train.trainer import Trainer

    cfg = tr.base_config(tiny_llama, packs, tmp_path / "run", **LORA, **{"peft.target_modules": target})
    with pytest.raises(LongctxError, match=rf"peft\.target_modules: {target} matches no linear layer.*q_proj") as err:
        Trainer(cfg).setup()
    assert "\n" not in str(err.value)


def test_missing_peft_names_the_extra(tiny_llama, packs, tmp_path, monkeypatch):
    from longctx.train import lora
    from longctx.train.trainer import Trainer

    monkeypatch.setattr(lora, "peft", None)
    with pytest.raises(LongctxError, match=r"peft\.method: lora needs the peft package.*longctx-align\[lora\]"):
        Trainer(tr.base_config(tiny_llama, packs, tmp_path / "run", **LORA)).setup()


def test_embeddings_norms_auto_follows_the_rope_extension():
    from types import SimpleNamespace

    from longctx.train.config import PeftConfig
    from longctx.train.lora import embeddings_norms_on

    plain = SimpleNamespace(rope_parameters={"rope_type": "default", "rope_theta": 1e4})
    yarn = SimpleNamespace(rope_parameters={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 512})
    pi = SimpleNamespace(rope_parameters={"rope_type": "linear", "factor": 4.0})
    assert embeddings_norms_on(PeftConfig(method="lora"), plain)[0] is False
    on, why = embeddings_norms_on(PeftConfig(method="lora"), yarn)
    assert on and "yarn" in why
    assert embeddings_norms_on(PeftConfig(method="lora"), pi)[0] is True
    assert embeddings_norms_on(PeftConfig(method="lora", train_embeddings_norms=True), plain)[0] is True
    assert embeddings_norms_on(PeftConfig(method="lora", train_embeddings_norms=False), yarn)[0] is False


# ---------------------------------------------------------------- what trains
@needs_peft
@pytest.mark.parametrize("plus", [False, True])
def test_frozen_weights_stay_bitwise_and_only_adapters_move(tiny_llama, packs, tmp_path, capsys, plus):
    """2 steps: every frozen base weight equals the checkpoint's bit for bit; every adapter B and (LoRA+) the
    embeddings and norms moved; the checkpoint holds the trainable parameters only."""
    from longctx.train.trainer import Trainer

    sets = {**LORA, "train.steps": 2, "checkpoint.export": "none", "peft.train_embeddings_norms": plus}
    t = Trainer(tr.base_config(tiny_llama, packs, tmp_path / "run", **sets))
    t.run()
    assert "peft: LoRA r=4" in capsys.readouterr().out
    base = _base_weights(tiny_llama)
    trainable = {n for n, p in t.model.named_parameters() if p.requires_grad}
    moved = set()
    for name, p in t.model.named_parameters():
        if p.requires_grad:
            src = _frozen_key(name.replace(".modules_to_save.default", ""))
            init = base.get(src)
            if init is not None and not torch.equal(p.detach(), init) or "lora_B" in name and p.abs().sum() > 0:
                moved.add(name)
        else:
            assert torch.equal(p.detach(), base[_frozen_key(name)]), name  # frozen: bit for bit
    assert all("lora_" in n or "modules_to_save" in n for n in trainable)
    assert {n for n in trainable if "lora_B" in n} <= moved
    saved_to = [n for n in trainable if "modules_to_save" in n]
    if plus:
        assert any("embed_tokens" in n for n in saved_to) and any(n.endswith("norm.modules_to_save.default.weight")
                                                                for n in saved_to)
        assert set(saved_to) <= moved
        head = t.model.get_output_embeddings().weight
        assert head.data_ptr() == t.model.get_input_embeddings().weight.data_ptr()  # the tied head trains with it
    else:
        assert not saved_to
    ck = load_file(tmp_path / "run" / "checkpoints" / "step-00000002" / "model.safetensors")
    assert set(ck) == trainable


# ---------------------------------------------------------------- sequence parallel
@needs_peft
@pytest.mark.parametrize("layout, sp, data", [
    pytest.param("varlen", {"parallel.sp_degree": 2}, "multi_doc_packs", id="varlen-2"),
    pytest.param("ulysses", {"parallel.sp_degree": 2}, "multi_doc_packs", id="ulysses-2"),
    pytest.param("usp", {"parallel.sp_degree": 4, "parallel.ulysses_degree": 2}, "multi_doc_packs", id="usp-2x2"),
    pytest.param("zigzag", {"parallel.sp_degree": 2}, "long_docs", id="zigzag-2"),
    pytest.param("auto", {"parallel.sp_degree": 2}, "multi_doc_packs", id="auto-2"),
])
def test_lora_with_sequence_parallelism_equals_sp_degree_1(tiny_llama, request, tmp_path, layout, sp, data):
    """LoRA+ (adapters on every linear layer, embeddings and norms trained) on packs of several documents (zigzag:
    one document a pack, what it is for): one step on 2 SP ranks (varlen or zigzag ring, Ulysses, auto's choice)
    or 4 (USP: Ulysses 2 x ring 2) has the loss, adapter gradients and parameters of one process."""
    packs = request.getfixturevalue(data)
    sets = {**LORA, "train.micro_batch": 2, "checkpoint.export": "none", "parallel.layout": layout,
            "peft.target_modules": "all-linear", "peft.train_embeddings_norms": True}
    ref = one_process(tr.base_config(tiny_llama, packs, tmp_path / "sp1", **sets))
    assert any("lora_B" in k for k in ref["grads"]) and any("modules_to_save" in k for k in ref["grads"])
    assert all("lora_" in k or "modules_to_save" in k for k in ref["grads"])
    cfg = tr.base_config(tiny_llama, packs, tmp_path / "sp", **sets, **sp)
    ranks = sp["parallel.sp_degree"]
    out = run_local(train_layout, ranks, cfg.to_dict(), timeout=120 * ranks, threads_per_rank=1)[0]
    if layout == "auto":
        assert out["layout"] in LAYOUTS and out["layout"] != "auto"
    else:
        assert (out["layout"], out["degree"]) == (layout, sp.get("parallel.ulysses_degree", 0))  # usp: 2 x 2 as asked
    assert set(out["grads"]) == set(ref["grads"])
    assert tr.rel_err(out["grads"], ref["grads"]) <= 1e-5
    assert_same_step(out, ref)


@needs_peft
def test_lora_with_the_alst_memory_set_takes_the_plain_lora_step(tiny_llama, packs, tmp_path):
    """Gradient checkpointing, checkpoint offload and the tiled MLP (adapters inside the MLP too) apply to the
    adapted model and take the same step."""
    sets = {**LORA, "checkpoint.export": "none", "peft.target_modules": "all-linear"}
    ref = one_process(tr.base_config(tiny_llama, packs, tmp_path / "plain", **sets))
    memory = {"model.gradient_checkpointing": True, "model.checkpoint_offload": True, "train.tiled_mlp": True,
              "train.mlp_tiles": 2}
    out = one_process(tr.base_config(tiny_llama, packs, tmp_path / "alst", **sets, **memory))
    assert any(".mlp." in k and "lora_B" in k for k in ref["grads"])
    assert_same_step(out, ref)


@needs_peft
def test_fsdp_lora_on_2_ranks_equals_one_rank_with_double_accumulation(tiny_llama, packs, tmp_path):
    """FSDP2 shards the adapted model; the gathered trainable checkpoint and the merged export equal the
    one-rank step."""
    from transformers import AutoModelForCausalLM

    from longctx.train.trainer import Trainer

    sets = {**LORA, "peft.train_embeddings_norms": True, "checkpoint.export": "none"}
    ref = one_process(tr.base_config(tiny_llama, packs, tmp_path / "acc2", **sets, **{"train.grad_accum": 2}))
    cfg = tr.base_config(tiny_llama, packs, tmp_path / "fsdp", **{**sets, "parallel.fsdp": True,
                                                                   "checkpoint.export": "merged"})
    run_local(tr.train_params, 2, cfg.to_dict(), timeout=240, threads_per_rank=1)
    saved = load_file(tmp_path / "fsdp" / "checkpoints" / "step-00000001" / "model.safetensors")
    assert saved and all("lora_" in k or "modules_to_save" in k for k in saved)
    assert tr.rel_err({k: v.numpy() for k, v in saved.items()}, {k: ref["params"][k] for k in saved}) <= PARAM_TOL
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "fsdp" / "final", dtype=torch.float32).eval()
    single = tr.base_config(tiny_llama, packs, tmp_path / "one", **{**sets, "train.grad_accum": 2,
                                                                    "checkpoint.export": "merged"})
    Trainer(single).run()
    want = AutoModelForCausalLM.from_pretrained(tmp_path / "one" / "final", dtype=torch.float32).eval()
    assert tr.rel_err(tr.params_of(merged), tr.params_of(want)) <= PARAM_TOL


@needs_peft
def test_the_eval_section_evaluates_the_adapted_model(tiny_llama, packs, tmp_path):
    from longctx.train.trainer import Trainer

    sets = {**LORA, "train.steps": 1, "checkpoint.export": "none", "eval.at_end": True, "eval.ppl_lengths": "[256]",
            "eval.guard_length": 256, "eval.samples": 1, "eval.depths": 1}
    out = Trainer(tr.base_config(tiny_llama, packs, tmp_path / "run", **sets)).run()
    assert [r["step"] for r in out["eval"]] == [0, 1]
    assert out["eval"][1]["ppl"]["256"] != out["eval"][0]["ppl"]["256"]  # the adapters changed the model


# ---------------------------------------------------------------- resume
@needs_peft
def test_kill_and_resume_equals_the_uninterrupted_run_bit_for_bit(tiny_llama, packs, tmp_path):
    """SIGKILL after step 3 (checkpoints every 2), resume to step 4: adapters, embeddings/norms and AdamW states
    equal the uninterrupted run's bit for bit; the checkpoint holds the trainable parameters under its manifest."""
    sets = {**LORA, "train.steps": 4, "checkpoint.every": 2, "checkpoint.export": "none",
            "peft.train_embeddings_norms": True}
    summary, resumed, straight = tr.killed_resumed_and_straight(
        tr.base_config(tiny_llama, packs, tmp_path / "killed", **sets),
        tr.base_config(tiny_llama, packs, tmp_path / "straight", **sets), kill_after=3)
    assert summary["history"][0]["step"] == 3  # restarted from checkpoint 2
    manifest = json.loads((tmp_path / "killed" / "checkpoints" / "step-00000002" / "manifest.json").read_text())
    assert {"model.safetensors", "optimizer.pt"} <= set(manifest["files"])
    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    for a, b in zip(straight.optimizer.state.values(), resumed.optimizer.state.values()):
        assert all(torch.equal(a[s], b[s]) for s in a), "optimizer state"


@needs_peft
def test_resume_with_another_rank_is_refused_naming_the_key(tiny_llama, packs, tmp_path):
    from longctx.train.trainer import Trainer

    sets = {**LORA, "train.steps": 1, "checkpoint.export": "none"}
    Trainer(tr.base_config(tiny_llama, packs, tmp_path / "run", **sets)).run()
    again = tr.base_config(tiny_llama, packs, tmp_path / "run", **{**sets, "peft.r": 8, "train.steps": 2})
    with pytest.raises(LongctxError, match=r"peft\.r 4 -> 8"):
        Trainer(again).run()


# ---------------------------------------------------------------- export
_LOGITS_WITHOUT_PEFT = """
import sys, torch
sys.modules["peft"] = None  # importing peft now fails: the merged export must not need it
from transformers import AutoModelForCausalLM
m = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32).eval()
ids = torch.tensor([[1, 5, 9, 40, 77, 3, 200, 18]])
with torch.no_grad():
    torch.save(m(input_ids=ids).logits, sys.argv[2])
"""


@needs_peft
@pytest.mark.parametrize("plus", [False, True])
def test_merged_export_loads_without_peft_with_the_peft_models_logits(tiny_llama, packs, tmp_path, plus):
    from transformers import AutoModelForCausalLM

    from longctx.train.trainer import Trainer

    sets = {**LORA, "train.steps": 2, "peft.train_embeddings_norms": plus}
    t = Trainer(tr.base_config(tiny_llama, packs, tmp_path / "run", **sets))
    final = Path(t.run()["exported"])
    ids = torch.tensor([[1, 5, 9, 40, 77, 3, 200, 18]])
    t.model.eval()
    with torch.no_grad():
        want = t.peft_model(input_ids=ids).logits
    script = tmp_path / "load.py"
    script.write_text(_LOGITS_WITHOUT_PEFT)
    proc = subprocess.run([sys.executable, str(script), str(final), str(tmp_path / "logits.pt")], capture_output=True,
                          text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = torch.load(tmp_path / "logits.pt")
    assert (got - want).abs().max() <= 1e-5
    base = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32).eval()
    with torch.no_grad():
        assert (base(input_ids=ids).logits - want).abs().max() > 1e-3  # training changed the model
    assert not (final / "adapter_config.json").exists()
    assert "lora" not in " ".join(load_file(final / "model.safetensors"))


@needs_peft
def test_adapter_export_loads_with_peft_onto_the_base(tiny_llama, packs, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from longctx.train.trainer import Trainer

    sets = {**LORA, "train.steps": 2, "checkpoint.export": "adapter", "peft.train_embeddings_norms": True}
    t = Trainer(tr.base_config(tiny_llama, packs, tmp_path / "run", **sets))
    final = Path(t.run()["exported"])
    assert (final / "adapter_config.json").exists() and (final / "adapter_model.safetensors").exists()
    base = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    loaded = PeftModel.from_pretrained(base, final).eval()
    ids = torch.tensor([[1, 5, 9, 40, 77, 3, 200, 18]])
    t.model.eval()
    with torch.no_grad():
        assert (loaded(input_ids=ids).logits - t.peft_model(input_ids=ids).logits).abs().max() <= 1e-5


@needs_peft
def test_an_extended_rope_turns_embeddings_norms_on_and_the_export_keeps_it(tiny_llama, packs, tmp_path, capsys):
    """auto: a yarn-extended checkpoint trains its embeddings and norms (the reason logged); the merged export
    keeps the extended RoPE config."""
    from rope_scaling.extend import extend_checkpoint

    from longctx.train.trainer import Trainer

    extended = tmp_path / "yarn"
    extend_checkpoint(tiny_llama, extended, method="yarn", factor=4)
    t = Trainer(tr.base_config(extended, packs, tmp_path / "run", **{**LORA, "train.steps": 1}))
    final = Path(t.run()["exported"])
    assert "embeddings/norms trained: auto: on, the RoPE was extended (rope_type yarn)" in capsys.readouterr().out
    assert any("embed_tokens.modules_to_save" in n for n, p in t.model.named_parameters() if p.requires_grad)
    saved = json.loads((final / "config.json").read_text())
    assert saved["rope_parameters"]["rope_type"] == "yarn"
