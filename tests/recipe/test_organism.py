"""The shipped tiny model: its data, its reproduction recipe, and its measured behaviour."""

import json

import numpy as np
import pytest
from safetensors import safe_open
from support import ROOT

from eval_longbench.passkey import passkey_accuracy
from longctx.core.errors import LongctxError
from longctx.models.organism import CHECK_SEED, shipped_model_dir
from longctx.recipe.pretrain_data import pretrain_sequence, write_pretrain_packs


def test_pretrain_sequence_has_exact_length_and_boosted_answer(tok):
    """A row is exactly seq_len tokens, its weights sum to 1, and the key's retrievable digits (the needle's
    repeat and the reply) weigh answer_weight x the rest; the first, unpredictable, occurrence does not."""
    row = pretrain_sequence(tok, 384, seed=3, index=7, answer_weight=5.0)
    w, ids, key = row["loss_weights"], row["input_ids"], row["answer"]
    assert len(ids) == 384 and len(w) == 384
    assert w.sum() == pytest.approx(1.0, rel=1e-5)
    top = np.flatnonzero(w > w[1] * 1.5)
    assert tok.decode(ids[top].tolist()) == key * 2
    assert tok.decode(ids[top[-1] + 1:].tolist()) == ".<|eos|>\n"  # the last boosted digits end the reply
    first = tok.decode(ids.tolist()).index(key)
    assert len(tok(tok.decode(ids.tolist())[:first])["input_ids"]) < top[0]
    assert w[top[0]] / w[1] == pytest.approx(5.0, rel=1e-5)
    assert w[0] == 0 and row["labels"][0] == -100


def test_pretrain_rows_are_reproducible_and_distinct(tok):
    """The same (seed, index) gives the same row; another index or seed gives another key."""
    a = pretrain_sequence(tok, 256, seed=0, index=1)
    b = pretrain_sequence(tok, 256, seed=0, index=1)
    c = pretrain_sequence(tok, 256, seed=0, index=2)
    d = pretrain_sequence(tok, 256, seed=1, index=1)
    assert np.array_equal(a["input_ids"], b["input_ids"])
    assert not np.array_equal(a["input_ids"], c["input_ids"])
    assert not np.array_equal(a["input_ids"], d["input_ids"])


def test_pretrain_packs_load_in_the_trainer(tmp_path, tok):
    """The written pack directory passes the trainer's loader with one 256-token sequence per row."""
    from longctx.train.data import open_packs

    out = write_pretrain_packs(tmp_path / "packs", 3, seq_len=256, seed=5, tokenizer=tok, progress=False)
    src = open_packs(out)
    assert src.pack_length == 256 and len(src.dataset) == 3
    assert src.seq_lens == [[256], [256], [256]]


def test_organism_train_reproduces_through_the_trainer(tmp_path):
    """`organism train` with a 2-step recipe runs the project's trainer and exports weights that differ from init."""
    from longctx.organism.recipe import OrganismRecipe
    from longctx.organism.train import train_organism

    recipe = OrganismRecipe(hidden_size=32, num_heads=2, num_kv_heads=2, intermediate_size=64, context=256, steps=2,
                            batch=2, warmup_steps=0, checkpoint_every=0, mixed_steps=1,
                            mixed_warmup_steps=0)
    summary = train_organism(tmp_path / "org", recipe, progress=False)
    assert summary["status"] == "done" and summary["step"] == 3  # 2 steps of phase 1, 1 of phase 2
    model = tmp_path / "org" / "model"
    assert not list(model.glob("*.pt")), "no optimizer/trainer state in the exported model"
    cfg = json.loads((model / "config.json").read_text())
    assert cfg["max_position_embeddings"] == 256 and cfg["hidden_size"] == 32
    with safe_open(model / "model.safetensors", "pt") as f, safe_open(tmp_path / "org" / "init" / "model.safetensors", "pt") as g:
        key = "model.layers.0.self_attn.q_proj.weight"
        assert not (f.get_tensor(key) == g.get_tensor(key)).all()


def test_shipped_model_is_small_safetensors_with_card():
    """The shipped model is a safetensors Llama of context 512 under 5 MB, with tokenizer and model card."""
    d = shipped_model_dir()
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["model_type"] == "llama" and cfg["max_position_embeddings"] == 512
    assert (d / "model.safetensors").stat().st_size < 5_000_000
    assert (d / "tokenizer.json").is_file() and (d / "MODEL_CARD.md").is_file()
    assert not list(d.glob("*.pt")) and not list(d.glob("*.bin"))


def test_shipped_model_retrieves_inside_its_context():
    """Passkey accuracy at 512 tokens (its context) is >= 0.9 (n = 20, eval seed unrelated to training seeds)."""
    acc = passkey_accuracy(shipped_model_dir(), [512], samples_per_cell=4, depths=5, seed=CHECK_SEED + 1, progress=False)
    assert acc[512]["n"] == 20
    assert acc[512]["accuracy"] >= 0.9


def test_shipped_model_fails_at_4x_its_context():
    """Before any extension, passkey accuracy at 2048 tokens (4x) is <= 0.3 (n = 10)."""
    acc = passkey_accuracy(shipped_model_dir(), [2048], samples_per_cell=2, depths=5, seed=CHECK_SEED + 1, progress=False)
    assert acc[2048]["n"] == 10
    assert acc[2048]["accuracy"] <= 0.3


def test_check_cli_writes_per_length_accuracy(tiny_llama, tmp_path, capsys):
    """`longctx organism check --model M --out D` prints a table and writes n per length = --samples."""
    from longctx.cli.organism import main

    assert main(["check", "--model", str(tiny_llama), "--lengths", "200,300", "--samples", "5", "--out", str(tmp_path),
                 "--no-progress"]) == 0
    acc = json.loads((tmp_path / "accuracy.json").read_text())["per_length"]
    assert {k: v["n"] for k, v in acc.items()} == {"200": 5, "300": 5}
    assert all(0.0 <= v["accuracy"] <= 1.0 for v in acc.values())
    assert "| 300 |" in capsys.readouterr().out


def test_check_cli_rejects_samples_not_multiple_of_depths():
    """--samples must spread evenly over the 5 depths; otherwise a LongctxError names the flag."""
    from longctx.cli.organism import main
    from longctx.core.errors import LongctxError

    with pytest.raises(LongctxError, match="--samples"):
        main(["check", "--samples", "7"])


def test_mixed_pack_holds_whole_sequences_of_allowed_lengths(tok):
    """Phase-2 packs are pack_len tokens; each sequence has min_len..pack_len tokens, restarts its positions and
    carries weights summing to 1; trailing padding has no label and no weight."""
    from longctx.recipe.pretrain_data import mixed_pack

    lens_seen = []
    for i in range(6):
        row = mixed_pack(tok, 512, 224, seed=0, pack_index=i)
        assert len(row["input_ids"]) == len(row["position_ids"]) == len(row["loss_weights"]) == 512
        start = 0
        for n in row["seq_lens"]:
            assert 224 <= n <= 512
            assert row["position_ids"][start:start + n].tolist() == list(range(n))
            assert row["loss_weights"][start:start + n].sum() == pytest.approx(1.0, rel=1e-5)
            start += n
        assert (row["loss_weights"][start:] == 0).all() and (row["labels"][start:] == -100).all()
        lens_seen += row["seq_lens"].tolist()
    assert len(set(lens_seen)) > 3


@pytest.mark.parametrize("key, value, message", [
    ("steps", -1, r"--set steps: must be positive"),
    ("lr", float("nan"), r"--set lr: must be a finite number"),
    ("num_kv_heads", 3, r"--set num_kv_heads: 3 must divide num_heads 4"),
    ("mixed_min_len", 9999, r"--set mixed_min_len: must be in \[1, context 512\]"),
    ("min_lr_ratio", 2.0, r"optim.min_lr_ratio: must be in \[0, 1\]"),
])
def test_a_bad_recipe_value_is_refused_before_anything_is_written(tmp_path, key, value, message):
    """`longctx organism train --set lr=nan` used to start writing 24,000 sequences; now one line, nothing written."""
    from longctx.organism.recipe import OrganismRecipe
    from longctx.organism.train import train_organism

    recipe = OrganismRecipe()
    setattr(recipe, key, value)  # as `--set` does, after construction
    with pytest.raises(LongctxError, match=message):
        train_organism(tmp_path / "out", recipe, progress=False)
    assert not (tmp_path / "out").exists()


def test_organism_set_uses_the_trainers_parser(tmp_path, capsys):
    """`organism train --set` goes through longctx.train.config's --set parser: YAML values converted to the
    field's type, and a bad key or value is one line naming it (nothing is written)."""
    from longctx.cli.organism import main

    assert main(["train", "--out", str(tmp_path / "o"), "--set", "steps=500", "--set", "lr=1e-3", "--print-recipe"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["steps"] == 500 and printed["lr"] == 1e-3
    with pytest.raises(LongctxError, match=r"^--set nope=1: nope: unknown key \(known: hidden_size, "):
        main(["train", "--out", str(tmp_path / "o"), "--set", "nope=1"])
    with pytest.raises(LongctxError, match=r"^--set steps=many: steps: expected int, got 'many'$"):
        main(["train", "--out", str(tmp_path / "o"), "--set", "steps=many"])
    assert not (tmp_path / "o").exists()


def test_the_shipped_pretraining_recipe_is_what_organism_train_runs():
    """configs/recipes/organism_pretrain.yaml is the recipe `longctx organism train` runs with its default settings."""

    from longctx.organism.recipe import OrganismRecipe, organism_recipe
    from longctx.recipe.spec import load_recipe, parse_recipe

    shipped = load_recipe(ROOT / "configs" / "recipes" / "organism_pretrain.yaml").to_dict()
    built = parse_recipe(organism_recipe(OrganismRecipe()), "built").to_dict()
    shipped.pop("path"), built.pop("path")
    assert shipped == built


def test_organism_phases_get_the_trainer_settings_of_the_recipe():
    """Phase 1: sdpa, fp32, unshuffled, batch 8, seed data_seed; phase 2: longctx_varlen, its own lr/warmup/steps,
    seed data_seed + 1, everything else as phase 1."""
    from longctx.organism.recipe import OrganismRecipe, phase1_settings, phase2_settings
    from longctx.recipe.spec import trainer_settings
    from longctx.train.config import from_dict

    r = OrganismRecipe()
    a, b = (from_dict(trainer_settings(f(r))) for f in (phase1_settings, phase2_settings))
    assert (a.model.attn_implementation, a.model.dtype, a.data.shuffle, a.train.micro_batch, a.train.seed) == \
        ("sdpa", "float32", False, 8, 0)
    assert (b.model.attn_implementation, b.optim.lr, b.optim.warmup_steps, b.train.steps, b.train.seed) == \
        ("longctx_varlen", 1e-3, 50, 600, 1)
    assert a.optim.min_lr_ratio == b.optim.min_lr_ratio == 0.1 and a.checkpoint.keep_last == b.checkpoint.keep_last == 2

