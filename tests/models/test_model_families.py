"""Model families (``longctx/models``): one declaration per family, read by every stage; MoE refused.

A family is one file plus its registry row: the toy family below is refused by extend, inspect, train,
plan and make-tiny until that row exists, then each of them reads it. Mixture-of-experts checkpoints
(built with transformers' own config classes, no download) are refused by the trainer and the planner.
"""

from __future__ import annotations

import json

import pytest
import torch
from support import toy_family as toy
from support import train_ranks as tr
from transformers import CONFIG_MAPPING, AutoModelForCausalLM, MixtralConfig, Qwen2Config, Qwen3MoeConfig
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

from longctx.cli.make_tiny import main as tiny_main
from longctx.core.errors import LongctxError
from longctx.models import FAMILIES, LOGIT_TRANSFORMS, expert_count, family_of, trainable_family
from longctx.models.family import Family
from longctx.models.tiny import make_tiny_checkpoint, tiny_config
from longctx.plan import load_model_shape, shape_from_config
from longctx.train.parallelize import decoder_layers
from longctx.train.trainer import Trainer
from rope_scaling.extend import extend_checkpoint
from rope_scaling.inspect_ckpt import inspect_checkpoint


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


@pytest.fixture
def toy_in_transformers(monkeypatch):
    """transformers knows ``toyllama`` (its config and model classes), for this test only."""
    monkeypatch.setitem(CONFIG_MAPPING._extra_content, "toyllama", toy.ToyConfig)
    monkeypatch.setitem(MODEL_FOR_CAUSAL_LM_MAPPING._extra_content, toy.ToyConfig, toy.ToyForCausalLM)


def test_a_toy_family_registers_with_two_files(toy_in_transformers, monkeypatch, packs, tmp_path):
    """Before its registry row, every reader refuses ``toyllama`` by name; with it (the one declaration file
    ``tests/support/toy_family.py`` + one row) make-tiny builds it, inspect and extend read its RoPE, the planner counts
    its parameters exactly, and the trainer runs a step with the family's decoder layers and MLP tiled."""
    src = tmp_path / "src"
    llama = make_tiny_checkpoint(tmp_path / "llama", "llama")
    src.mkdir()
    for f in llama.iterdir():  # the same weights under the new model_type
        (src / f.name).write_bytes(f.read_bytes())
    conf = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**conf, "model_type": "toyllama", "architectures": ["ToyForCausalLM"]}))

    # undeclared: each reader refuses, in one line naming the model type
    with pytest.raises(LongctxError, match="--family: unknown 'toyllama'"):
        tiny_config("toyllama")
    with pytest.raises(LongctxError, match="'toyllama' is not supported"):
        inspect_checkpoint(src)
    with pytest.raises(LongctxError, match="'toyllama' is not supported"):
        extend_checkpoint(src, tmp_path / "e0", method="yarn", factor=2)
    with pytest.raises(LongctxError, match="'toyllama' is not a supported model family") as err:
        Trainer(tr.base_config(src, packs, tmp_path / "r0", **{"checkpoint.export": False})).run()
    _one_line(err)

    # the registry row
    monkeypatch.setitem(FAMILIES, "toyllama", toy.FAMILY)

    made = tmp_path / "made"
    assert tiny_main(["--out", str(made), "--family", "toyllama"]) == 0
    assert json.loads((made / "config.json").read_text())["model_type"] == "toyllama"
    info = inspect_checkpoint(src)
    assert (info["model_type"], info["rope_parameters"]["rope_type"]) == ("toyllama", "default")
    extend_checkpoint(src, tmp_path / "ext", method="yarn", factor=2)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "ext")
    assert type(loaded) is toy.ToyForCausalLM and loaded.config.rope_parameters["rope_type"] == "yarn"
    shape = load_model_shape(str(src))
    assert shape.num_params == sum(p.numel() for p in loaded.parameters())
    t = Trainer(tr.base_config(src, packs, tmp_path / "run", **{
        "checkpoint.export": False, "train.tiled_mlp": True, "train.mlp_tiles": 2,
        "model.gradient_checkpointing": True, "model.checkpoint_offload": True}))
    out = t.run()
    assert out["step"] == 1 and torch.isfinite(torch.tensor(out["history"][0]["loss"]))
    assert len(decoder_layers(t.model)) == conf["num_hidden_layers"]


@pytest.mark.parametrize("model_type", list(FAMILIES))
def test_every_family_declares_where_its_layers_and_mlp_are_and_the_planner_counts_its_parameters(model_type):
    """On a tiny random model of each family: the declared decoder-layer path and MLP exist, and the planner's
    parameter count (q/k/v biases, norms per layer, q/k norms from the family) equals the model's, exactly."""
    cfg = tiny_config(model_type, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=48,
                      tie_word_embeddings=False)
    model = AutoModelForCausalLM.from_config(cfg)
    fam = family_of(cfg, "test")
    layers = fam.decoder_layers(model)
    assert len(layers) == 2 and all(any(True for _ in fam.mlp_of(layer).parameters()) for layer in layers)
    assert shape_from_config(cfg).num_params == sum(p.numel() for p in model.parameters())
    assert trainable_family(cfg, "test") is fam  # make-tiny's models are trainable as they are


def _tiny_moe(kind: str):
    common = dict(vocab_size=258, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=256)
    if kind == "mixtral":
        return MixtralConfig(**common, num_local_experts=4, num_experts_per_tok=2)
    return Qwen3MoeConfig(**common, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16)


@pytest.mark.parametrize("kind", ["mixtral", "qwen3_moe"])
def test_a_mixture_of_experts_checkpoint_is_refused_by_train_and_plan_in_one_line(kind, packs, tmp_path):
    """A tiny Mixtral / Qwen3-MoE (transformers' own classes, from_config): the trainer refuses it before loading
    it (not trained on the LM loss alone, without the router's load-balancing loss) and the planner refuses its
    config object, its config.json and its checkpoint folder (not planned as a dense MLP), each in one line."""
    cfg = _tiny_moe(kind)
    model = AutoModelForCausalLM.from_config(cfg)
    ckpt = tmp_path / kind
    model.save_pretrained(ckpt)
    assert expert_count(cfg)[1] == 4 and expert_count(json.loads((ckpt / "config.json").read_text()))[1] == 4
    with pytest.raises(LongctxError, match=f"'{kind}' is a mixture-of-experts.*load-balancing loss") as err:
        Trainer(tr.base_config(ckpt, packs, tmp_path / "run", **{"checkpoint.export": False})).run()
    _one_line(err)
    assert not (tmp_path / "run").exists()
    for spec in (cfg, str(ckpt), str(ckpt / "config.json")):
        with pytest.raises(LongctxError, match=f"'{kind}' is a mixture-of-experts.*expert MLP shapes") as err:
            shape_from_config(spec) if spec is cfg else load_model_shape(spec)
        _one_line(err)


def test_a_sliding_window_is_refused_where_the_family_applies_one():
    """Mistral's window applies to every layer; Qwen2's only to the layers max_window_layers marks sliding: a
    window no layer uses trains as it is, one that some layer uses is refused naming the key."""
    mistral = tiny_config("mistral")
    mistral.sliding_window = 64
    with pytest.raises(LongctxError, match="'mistral' sets sliding_window=64") as err:
        trainable_family(mistral, "model.path")
    _one_line(err)
    small = dict(vocab_size=258, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, sliding_window=64, use_sliding_window=True)
    unused = Qwen2Config(**small, max_window_layers=2)  # layers 0 and 1 are below it: full attention
    assert trainable_family(unused, "x").sliding_window(unused) is None
    with pytest.raises(LongctxError, match="'qwen2' sets sliding_window=64"):
        trainable_family(Qwen2Config(**small, max_window_layers=1), "model.path")
    assert trainable_family(Qwen2Config(**{**small, "use_sliding_window": False}, max_window_layers=0), "x")


def test_undeclared_families_and_logit_transforms_are_refused_for_training(monkeypatch):
    """A model type with no declaration is refused naming the supported ones; a family's own logit transform
    (beyond the ones every family is checked for) is refused when set."""
    with pytest.raises(LongctxError, match=r"'gpt2' is not a supported model family \(supported: llama"):
        trainable_family(CONFIG_MAPPING["gpt2"](), "model.path")
    capped = Family(model_types=("llama",), description="a capped llama", logit_transforms=("attn_logit_cap",))
    cfg = tiny_config("llama")
    cfg.attn_logit_cap = 30.0
    assert "attn_logit_cap" not in LOGIT_TRANSFORMS
    trainable_family(cfg, "model.path")  # llama declares no such transform: the field is not read
    monkeypatch.setitem(FAMILIES, "llama", capped)
    with pytest.raises(LongctxError, match="attn_logit_cap=30.0"):
        trainable_family(cfg, "model.path")
