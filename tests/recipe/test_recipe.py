"""`longctx recipe`: validation up front, dry run, stage hashes, skip / refuse / --from-stage, resume after a kill.

The end-to-end tests run a tiny two-stage recipe on the shipped organism (2-3 steps per stage, one
passkey prompt per length): slow on a busy 2-core machine (~1 min), hence the marker.
"""

import copy
import json
import os
import signal
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from longctx.core.errors import LongctxError
from longctx.recipe.runner import RecipeRun, dry_run, resolved_stage, stage_hash
from longctx.recipe.spec import load_recipe, parse_recipe
from support import ROOT

TINY = {
    "base": "organism", "seed": 0,
    "eval": {"passkey_lengths": [512, 1024], "samples": 1, "depths": 1, "ppl_lengths": [1024]},
    "stages": [
        {"name": "s1", "extend": {"method": "yarn", "factor": 2}, "data": {"sources": [{"passkey": {"records": 3}}]},
         "train": {"steps": 2, "lr": 1e-3, "sp_degree": 1}},
        {"name": "s2", "extend": {"method": "yarn", "factor": 4},
         "data": {"pack_length": 1024, "short_share": 0.34, "sources": [{"passkey": {"records": 3}}]},
         "train": {"steps": 3, "lr": 1e-3, "sp_degree": 1, "warmup_steps": 1}},
    ],
}


def tiny(**changes) -> dict:
    raw = copy.deepcopy(TINY)
    for dotted, value in changes.items():
        target = raw
        *path, last = dotted.split("/")
        for p in path:
            target = target[int(p)] if p.isdigit() else target[p]
        target[last] = value
    return raw


def write(tmp_path: Path, raw: dict, name: str = "r.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(raw))
    return p


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize("change, message", [
    ({"stages/1/extend": {"method": "nope", "factor": 4}}, r"stage 's2': extend\.method: .*unknown 'nope'"),
    ({"stages/1/extend": {"method": "yarn", "factor": 4, "beta_fast": -1}}, r"stage 's2': extend\.beta_fast: "),
    ({"stages/1/extend": {"method": "yarn", "factor": 4, "rope_theta": 5e5}}, r"stage 's2': extend\.rope_theta: "),
    ({"stages/1/extend": {"method": "yarn", "factor": 1.5}}, r"stage 's2': extend\.factor: .*not above the current"),
    ({"stages/1/data/short_share": 1.5}, r"stage 's2': data\.short_share: expected a number in \[0, 1\)"),
    ({"stages/1/data/sources": [{"passkey": {"min_tokens": 64}}]}, r"stage 's2': data\.sources\[0\]\.passkey\.min_tokens: .*>= 256"),
    ({"stages/1/data/sources": [{"passkey": {"edge_share": 2}}]}, r"stage 's2': data\.sources\[0\]\.passkey\.edge_share: "),
    ({"stages/1/data/sources": [{"jsonl": "/no/such.jsonl"}]}, r"stage 's2': data\.sources\[0\]\.jsonl: "),
    ({"stages/1/data/sources": [{"passkey": {"qa_share": -0.1}}]}, r"stage 's2': data\.sources\[0\]\.passkey\.qa_share: "),
    ({"stages/1/data/sources": [{"passkey": {"haystack": "/no/such.txt"}}]},
     r"stage 's2': data\.sources\[0\]\.passkey\.haystack: expected noise or bible or a text file"),
    ({"stages/1/train/lr": "fast"}, r"stage 's2': train: lr: expected float"),
    ({"stages/1/train/no_such_key": 1}, r"stage 's2': train: no_such_key: unknown key"),
    ({"stages/1/train/model": {"path": "/x"}}, r"stage 's2': train\.model\.path: set by the recipe"),
    ({"stages/1/train/eval": [1, 2]}, r"stage 's2': train\.eval: expected a mapping"),
    ({"stages/1/train/sp_degree": 3}, r"stage 's2': train: parallel\.layout: pack length 1024 is not divisible by 3"),
    ({"stages/1/eval": {"samples": 0}}, r"stage 's2': eval\.samples: must be >= 1, got 0"),
    ({"stages/1/eval": {"samples": 4, "depths": 3}}, r"stage 's2': eval\.samples: 4 prompts per length do not spread evenly over 3 depths"),
    ({"stages/1/eval": {"every": 5}}, r"stage 's2': eval\.every: unknown key"),
    ({"stages/1/data/pack_length": 8192},
     r"stage 's2': data\.pack_length: 8192 is longer than the stage's extended context 2048 \(extend: max_position_embeddings\)"),
    ({"stages/1/colour": "red"}, r"stage 'stages\[1\]': stage\.colour: unknown key"),
    ({"stages/1/name": "s1"}, r"stage 'stages\[1\]': name: 's1' is used by an earlier stage"),
    ({"stages/1/name": "base"}, r"stage 'stages\[1\]': name: 'base' names the base model"),
    ({"stages/1/from": "nope"}, r"stage 's2': from: expected base or an earlier stage \(s1\), got 'nope'"),
    ({"stages/1/eval_extended": "yes"}, r"stage 's2': eval_extended: expected true or false"),
    ({"stages/1/train": False}, r"stage 's2': data: a stage with train: false has no data"),
    ({"stages/1/data/sources": [{"passkey": {"stream": 3}}]}, r"stage 's2': data\.sources\[0\]\.passkey\.stream: "),
])
def test_a_bad_value_is_one_error_naming_the_stage_and_key(change, message):
    """Every invalid value of the second stage is refused before anything runs, naming the stage and key."""
    raw = tiny(**change)
    with pytest.raises(LongctxError, match=message) as exc:
        parse_recipe(raw, "r.yaml")
    assert str(exc.value).startswith("r.yaml: ") and "\n" not in str(exc.value)


def test_a_stage_from_the_base_is_planned_on_the_base_config():
    """`from: base` makes a stage start from the base again: yarn x4 from 512 is 2048, as if it were the first."""
    r = parse_recipe(tiny(**{"stages/1/from": "base"}), "r.yaml")
    assert [s.start for s in r.stages] == ["base", "base"] and [s.context for s in r.stages] == [1024, 2048]


def test_set_overrides_change_the_recipe_before_it_is_checked(tmp_path):
    """`longctx recipe run/show --set`: the trainer's key=value parser on the recipe's dotted keys (a stage by name;
    after train/eval the trainer's key); a bad value is the recipe's one-line error naming the key."""
    path = write(tmp_path, tiny())
    r = load_recipe(path, ["seed=3", "stages.s2.train.optim.lr=2e-3", "eval.samples=2", "stages.0.eval.depths=2"])
    from longctx.recipe.spec import trainer_settings
    from longctx.train.config import from_dict

    assert r.seed == 3 and from_dict(trainer_settings(r.stages[1].train)).optim.lr == 2e-3 and r.eval.samples == 2
    assert r.stages[0].eval.depths == 2
    with pytest.raises(LongctxError, match=r"^--set stages\.s9\.train\.steps=1: stages\.s9: no such stage$"):
        load_recipe(path, ["stages.s9.train.steps=1"])
    with pytest.raises(LongctxError, match=r"stage 's1': train: steps: expected int, got 'many'"):
        load_recipe(path, ["stages.s1.train.steps=many"])


def test_stage_two_is_planned_on_the_config_stage_one_writes():
    """Stage contexts chain: yarn x2 then yarn x4 (factors from the base's 512) give 1024 then 2048."""
    r = parse_recipe(tiny(), "r.yaml")
    assert [s.context for s in r.stages] == [1024, 2048]
    assert r.stages[0].data.pack_length == 1024 and r.stages[1].data.pack_length == 1024


def test_train_eval_is_passed_to_the_trainer_unchanged():
    """A stage's train.eval mapping reaches the trainer settings as given (the trainer owns its keys)."""
    from longctx.recipe.spec import trainer_settings

    ev = {"every": 10, "passkey_lengths": [1024], "anything": {"nested": 1}}
    settings = trainer_settings({"steps": 3, "eval": ev})
    assert settings["eval"] == ev and settings["steps"] == 3


def test_the_8b_recipe_fits_its_stated_gpus_in_dry_run():
    """configs/recipes/glm4_style_llama3_8b.yaml: longctx plan says every stage fits on the GPUs it states."""
    from longctx.recipe.spec import plan_rows

    r = load_recipe(ROOT / "configs" / "recipes" / "glm4_style_llama3_8b.yaml")
    rows = plan_rows(r.plan, r.stages)
    assert [row["seq_len"] for row in rows] == [32768, 131072]
    assert all(row["fits"] for row in rows), rows
    text = dry_run(r, "/nonexistent/out")
    assert text.count("fits") == 2 and "DOES NOT FIT" not in text


def test_every_shipped_recipe_validates():
    """Each file in configs/recipes parses and validates (recipes cannot rot)."""
    files = sorted((ROOT / "configs" / "recipes").glob("*.yaml"))
    assert len(files) >= 3
    for f in files:
        assert load_recipe(f).stages


# ---------------------------------------------------------------- hashes, dry run
def test_stage_hash_is_stable_and_sees_what_changes_the_weights():
    """Same stage + input: same hash. lr, data, extension or the input model change it; logging does not."""
    base = parse_recipe(tiny(), "r.yaml").stages[1]
    h = stage_hash(resolved_stage(base, "fp0", 0))
    assert h == stage_hash(resolved_stage(parse_recipe(tiny(), "r.yaml").stages[1], "fp0", 0))
    assert stage_hash(resolved_stage(base, "fp1", 0)) != h
    assert stage_hash(resolved_stage(base, "fp0", 1)) != h
    for change in ({"stages/1/train/lr": 2e-3}, {"stages/1/data/short_share": 0.5},
                   {"stages/1/data/sources": [{"passkey": {"records": 3, "edge_share": 0.3}}]},
                   {"stages/1/data/sources": [{"passkey": {"records": 3, "qa_share": 0.5}}]},
                   {"stages/1/data/sources": [{"passkey": {"records": 3, "haystack": "bible"}}]},
                   {"stages/1/extend": {"method": "linear", "factor": 4}}, {"stages/1/eval": {"samples": 2}}):
        assert stage_hash(resolved_stage(parse_recipe(tiny(**change), "r.yaml").stages[1], "fp0", 0)) != h, change
    neutral = tiny(**{"stages/1/train/log.progress": False, "stages/1/train/checkpoint.every": 1})
    assert stage_hash(resolved_stage(parse_recipe(neutral, "r.yaml").stages[1], "fp0", 0)) == h


def test_a_stage_hash_without_the_newer_data_keys_is_the_one_it_was():
    """Keys added to the data section later (edge_share) leave the hash of a stage that does not use them
    unchanged, so runs finished before the key existed are still recognised as finished."""
    resolved = resolved_stage(parse_recipe(tiny(), "r.yaml").stages[1], "fp0", 0)
    for key in ("passkey_edge_share", "passkey_qa_share", "passkey_haystack"):
        assert key not in resolved["data"]


def test_a_stage_without_lora_hashes_no_peft_key_and_a_lora_stage_hashes_them():
    """The peft section came later: a stage that does not use it keeps the hash it had (no peft.* key), and
    turning LoRA on, or changing its rank, changes the hash."""
    resolved = resolved_stage(parse_recipe(tiny(), "r.yaml").stages[1], "fp0", 0)
    assert not any(k.startswith("peft.") for k in resolved["train"])
    lora = [stage_hash(resolved_stage(parse_recipe(tiny(**{"stages/1/train/peft": {"method": "lora", "r": r}}),
                                                   "r.yaml").stages[1], "fp0", 0)) for r in (4, 8)]
    assert len({stage_hash(resolved), *lora}) == 3


def test_stages_without_lora_keep_the_hashes_they_had_before_the_peft_section():
    """The tiny recipe's stage hashes as the runner computed them before LoRA existed (commit 9753827^): runs
    finished then are still recognised as finished."""
    stages = parse_recipe(tiny(), "r.yaml").stages
    assert [stage_hash(resolved_stage(s, "fp0", 0)) for s in stages] == ["bc4a04f6ce761aea", "81bab91e854f7b13"]


def test_a_haystack_file_is_hashed_by_its_content(tmp_path):
    """Editing the text file a stage hides its needles in makes the stage's hash change (its data did)."""
    text = tmp_path / "book.txt"
    text.write_text("It was a dark night. The wind blew. " * 50)
    recipe = tiny(**{"stages/1/data/sources": [{"passkey": {"records": 3, "haystack": str(text)}}]})
    h = stage_hash(resolved_stage(parse_recipe(recipe, "r.yaml").stages[1], "fp0", 0))
    text.write_text("It was a bright morning. Birds sang. " * 50)
    assert stage_hash(resolved_stage(parse_recipe(recipe, "r.yaml").stages[1], "fp0", 0)) != h


def test_a_stage_with_a_text_haystack_and_qa_share_writes_both_kinds_in_that_text(tmp_path):
    """The stage's synthetic records hide their needles in the named text file, and qa_share of them are
    key-value questions: what configs/recipes/smollm2_16k.yaml trains a real model on."""
    text = tmp_path / "book.txt"
    text.write_text(" ".join(f"The river ran past town number {i}." for i in range(600)))
    recipe = parse_recipe(tiny(**{"stages/1/data/sources": [{"passkey": {"records": 8, "haystack": str(text),
                                                                          "qa_share": 0.5, "min_tokens": 768}}]}),
                          "r.yaml")
    path = RecipeRun(recipe, tmp_path / "run").write_synthetic(recipe.stages[1], tmp_path / "sft.jsonl")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert all("The river ran past town number" in r["messages"][0]["content"] for r in records)
    assert {r["id"].split("-")[0] for r in records} == {"qa", "passkey", "short"}


def test_qa_records_too_short_for_their_needles_are_one_error_naming_the_stage(tmp_path):
    recipe = parse_recipe(tiny(**{"stages/1/data/sources": [{"passkey": {"records": 4, "qa_share": 1.0,
                                                                          "min_tokens": 256, "max_tokens": 300}}]}),
                          "r.yaml")
    with pytest.raises(LongctxError, match=r"r\.yaml: stage 's2': data\.sources: .*too short.*raise min_tokens"):
        RecipeRun(recipe, tmp_path / "run").write_synthetic(recipe.stages[1], tmp_path / "sft.jsonl")


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    """--dry-run lists every stage with its extension, data, training and evaluation; no output folder appears."""
    from longctx.cli.recipe import main

    path = write(tmp_path, tiny())
    out = tmp_path / "out"
    assert main(["run", str(path), "--dry-run", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "stage 1 s1: runs" in text and "stage 2 s2: runs" in text
    assert "yarn x4 -> context 2048" in text and "packs of 1024" in text and "3 steps" in text
    assert "edge share" not in text
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.yaml"]


@pytest.mark.parametrize("change, where", [({"eval/passkey_lengths": [20, 512]}, "eval"),
                                           ({"stages/1/eval": {"passkey_lengths": [20]}}, "stage 's2': eval")])
def test_an_eval_length_too_short_for_the_chat_template_is_refused_leaving_no_output(tmp_path, change, where):
    """Checked before --out is made: the error leaves no recipe.json (nor anything else) behind."""
    out = tmp_path / "out"
    with pytest.raises(LongctxError, match=rf"{where}\.passkey_lengths: 20 leaves no room for a prompt after the "
                                           r"\d+-token chat template"):
        RecipeRun(parse_recipe(tiny(**change), "r.yaml"), out).run()
    assert not out.exists()


def test_out_inside_the_base_model_is_refused(tmp_path):
    """--out must not be (or lie inside) an input: the base checkpoint here."""
    r = parse_recipe(tiny(), "r.yaml")
    with pytest.raises(LongctxError, match="is inside the input"):
        RecipeRun(r, Path(r.base) / "run").run()


# ---------------------------------------------------------------- end to end
def _weights(out: Path) -> dict:
    return load_file(out / "stages" / "02-s2" / "train" / "final" / "model.safetensors")


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe")
    path = write(root, tiny())
    out = root / "straight"
    summary = RecipeRun(load_recipe(path), out, progress=False).run()
    return root, path, out, summary


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a tiny recipe end to end: ~1 CPU-minute, much longer wall time on a busy machine
def test_two_stage_recipe_writes_models_report_and_commands(straight):
    """Stage 2 starts from stage 1's model; the report has heatmaps, curves, the table and commands.sh."""
    root, path, out, summary = straight
    s1 = json.loads((out / "stages" / "01-s1" / "stage.json").read_text())
    s2 = json.loads((out / "stages" / "02-s2" / "stage.json").read_text())
    assert s2["input"] == s1["output"]
    assert json.loads((Path(s2["output"]) / "config.json").read_text())["max_position_embeddings"] == 2048
    rep = out / "report"
    for png in ("heatmaps.png", "ppl.png", "accuracy_by_stage.png", "loss.png"):
        assert (rep / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [r["model"] for r in summary["rows"]] == ["base", "s1", "s2"]
    needle = json.loads((out / "stages" / "02-s2" / "eval" / "needle" / "results.json").read_text())["records"]
    hits = [s["score"] for c in needle.values() for s in c["samples"]]
    assert summary["rows"][2]["passkey"]["1024"]["n"] == 1 and len(hits) == 2
    text = (rep / "commands.sh").read_text()
    assert "--method yarn --factor 4" in text and "longctx train --config" in text and "longctx needle" in text
    assert (rep / "commands.sh").stat().st_mode & 0o100
    records = [json.loads(line) for line in (out / "stages" / "02-s2" / "data" / "sft.jsonl").read_text().splitlines()]
    assert sum(r["id"].startswith("short-") for r in records) == 1 and all(r["tokens"] <= 512 for r in records
                                                                          if r["id"].startswith("short-"))


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a tiny recipe end to end: ~1 CPU-minute, much longer wall time on a busy machine
def test_a_rerun_skips_finished_stages(straight, capsys):
    """Rerunning the same recipe trains nothing: both stages are reported as skipped, their files untouched."""
    root, path, out, _ = straight
    before = {p: p.stat().st_mtime_ns for p in out.glob("stages/*/stage.json")}
    RecipeRun(load_recipe(path), out, progress=False).run()
    text = capsys.readouterr().out
    assert text.count("skipped") == 2 and "train:" not in text
    assert {p: p.stat().st_mtime_ns for p in out.glob("stages/*/stage.json")} == before


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a tiny recipe end to end: ~1 CPU-minute, much longer wall time on a busy machine
def test_a_changed_finished_stage_is_refused_and_from_stage_redoes_it(straight, tmp_path):
    """Changing stage 2's lr after it finished is refused naming the key; --from-stage s2 retrains only s2."""
    root, path, out, _ = straight
    changed = write(root, tiny(**{"stages/1/train/lr": 2e-3}), "changed.yaml")
    s1_before = (out / "stages" / "01-s1" / "stage.json").stat().st_mtime_ns
    old = _weights(out)
    with pytest.raises(LongctxError, match=r"stage 's2': finished with a different config .*train\.optim\.lr.*--from-stage s2"):
        RecipeRun(load_recipe(changed), out, progress=False).run()
    RecipeRun(load_recipe(changed), out, from_stage="s2", progress=False).run()
    assert (out / "stages" / "01-s1" / "stage.json").stat().st_mtime_ns == s1_before
    new = _weights(out)
    assert any(not torch.equal(old[k], new[k]) for k in old)
    # put the original back for the other tests of this module
    RecipeRun(load_recipe(path), out, from_stage="s2", progress=False).run()
    assert all(torch.equal(old[k], v) for k, v in _weights(out).items())


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a tiny recipe end to end: ~1 CPU-minute, much longer wall time on a busy machine
def test_a_moved_run_continues_from_its_own_stage_models(straight, tmp_path):
    """A run folder copied elsewhere and rerun with --from-stage s2 trains s2 from the copy's s1 model, not from
    the path the original run recorded."""
    import shutil

    root, path, out, _ = straight
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    RecipeRun(load_recipe(path), moved, from_stage="s2", progress=False).run()
    s2 = json.loads((moved / "stages" / "02-s2" / "stage.json").read_text())
    assert s2["input"] == str(moved / "stages" / "01-s1" / "train" / "final")
    a, b = _weights(out), _weights(moved)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a tiny recipe end to end: ~1 CPU-minute, much longer wall time on a busy machine
def test_interrupted_in_stage_two_then_rerun_gives_the_uninterrupted_weights(straight, tmp_path):
    """SIGTERM after step 2 of stage 2 stops the recipe (checkpoint saved); the rerun skips stage 1, resumes stage 2
    at step 2, and the final weights equal the uninterrupted run's bit for bit."""
    root, path, out, _ = straight
    killed = tmp_path / "killed"

    def stop(trainer, step, line):
        if "02-s2" in trainer.cfg.checkpoint.out and step == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(LongctxError, match=r"stage 's2': training interrupted at step 2 .*rerun"):
        RecipeRun(load_recipe(path), killed, progress=False, callbacks=[stop]).run()
    assert (killed / "stages" / "01-s1" / "stage.json").is_file()
    assert not (killed / "stages" / "02-s2" / "stage.json").exists()
    resumed = RecipeRun(load_recipe(path), killed, progress=False)
    resumed.run()
    metrics = [json.loads(x) for x in (killed / "stages" / "02-s2" / "train" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3]
    a, b = _weights(out), _weights(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- LoRA stages
LORA = {"method": "lora", "r": 4}


def _base_name(name: str) -> str:
    """A parameter name of a PEFT-adapted model as the plain checkpoint spells it."""
    return name.replace(".base_layer", "").replace(".original_module", "")


@pytest.mark.parametrize("export", ["adapter", "none"])
def test_a_stage_whose_final_is_no_model_is_refused_when_a_later_stage_starts_from_it(export):
    """checkpoint.export adapter (a PEFT adapter folder) or none leaves the next stage nothing to extend and
    train: one line naming the stage, the key and the stage that needs a full model, before anything runs."""
    raw = tiny(**{"eval": False, "stages/0/train/peft": LORA, "stages/0/train/checkpoint": {"export": export}})
    with pytest.raises(LongctxError, match=rf"^r\.yaml: stage 's1': train\.checkpoint\.export: {export} leaves .* "
                                           r"stage 's2' starts from it: it needs a full model; use merged") as exc:
        parse_recipe(raw, "r.yaml")
    assert "\n" not in str(exc.value)


def test_an_adapter_export_is_refused_where_the_stage_is_evaluated_and_accepted_where_nothing_loads_it():
    """The after-stage evaluation loads train/final as a model too; a last stage without evaluation (or one no
    later stage starts from: from: base) may keep its adapters unmerged."""
    adapter = {"stages/1/train/peft": LORA, "stages/1/train/checkpoint": {"export": "adapter"}}
    with pytest.raises(LongctxError, match=r"stage 's2': train\.checkpoint\.export: adapter .* the after-stage "
                                           r"evaluation loads it: use merged .*, or eval: false"):
        parse_recipe(tiny(**adapter), "r.yaml")
    assert parse_recipe(tiny(**adapter, **{"stages/1/eval": False}), "r.yaml").stages[1].eval is None
    first = {"stages/0/train/peft": LORA, "stages/0/train/checkpoint": {"export": "adapter"}, "stages/0/eval": False,
             "stages/1/from": "base"}
    assert [s.start for s in parse_recipe(tiny(**first), "r.yaml").stages] == ["base", "base"]


def test_the_dry_run_says_which_stage_trains_lora():
    from longctx.recipe.runner import describe

    stages = parse_recipe(tiny(**{"stages/1/train/peft": LORA}), "r.yaml").stages
    assert "LoRA" not in " ".join(describe(stages[0]))
    assert "3 steps, lr 0.001, sp_degree 1 (varlen), 1 rank(s), LoRA r=4 + embeddings/norms (final: merged)" in \
        " ".join(describe(stages[1]))


def test_the_plan_plans_a_lora_stage_as_lora_with_its_auto_embeddings_norms():
    """The 8B recipe's first stage with peft.method lora: planned with a frozen base (less memory than full
    fine-tuning), LoRA+ on by auto (the stage extends the RoPE), and off when the stage says so (less again)."""
    from longctx.recipe.spec import plan_rows

    path = ROOT / "configs" / "recipes" / "glm4_style_llama3_8b.yaml"
    name = load_recipe(path).stages[0].name
    sets = [f"stages.{name}.train.peft.method=lora"]
    recipes = [load_recipe(path), load_recipe(path, sets),
               load_recipe(path, [*sets, f"stages.{name}.train.peft.train_embeddings_norms=false"])]
    assert [r.stages[0].embeddings_norms for r in recipes] == [False, True, False]
    full, plus, plain = (plan_rows(r.plan, r.stages)[0]["gib_per_gpu"] for r in recipes)
    assert full > plus > plain


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a tiny recipe end to end: ~1 CPU-minute, much longer wall time on a busy machine
@pytest.mark.parametrize("second", ["full", "lora"])
def test_a_lora_stage_hands_the_next_stage_its_merged_model(tmp_path, monkeypatch, second):
    """Stage 1 trains LoRA (yarn x2: LoRA+ by auto) and exports the adapters merged into a plain checkpoint;
    stage 2 (full fine-tuning, or LoRA again) extends that checkpoint and its trainer starts from exactly its
    weights. Stage 1's merge moved the adapted projections and kept the frozen MLP bit for bit."""
    from longctx.train.trainer import Trainer

    starts: dict[str, dict] = {}
    setup = Trainer.setup

    def recording_setup(self, *args, **kwargs):
        out = setup(self, *args, **kwargs)
        starts[Path(self.cfg.checkpoint.out).parent.name] = {
            _base_name(k): v.detach().clone() for k, v in self.model.state_dict().items()
            if "lora_" not in k and "modules_to_save" not in k}
        return out

    monkeypatch.setattr(Trainer, "setup", recording_setup)
    raw = tiny(**{"eval": False, "stages/0/train/peft": LORA, "stages/1/train/steps": 2,
                  **({"stages/1/train/peft": LORA} if second == "lora" else {})})
    RecipeRun(parse_recipe(raw, "r.yaml"), tmp_path / "run", progress=False).run()
    s1 = tmp_path / "run" / "stages" / "01-s1"
    final = s1 / "train" / "final"
    assert not (final / "adapter_config.json").exists()
    merged = load_file(final / "model.safetensors")
    assert not any("lora" in k for k in merged)
    extended = load_file(s1 / "model" / "model.safetensors")  # what stage 1 trained: the base, extended
    assert not torch.equal(merged["model.layers.0.self_attn.q_proj.weight"], extended["model.layers.0.self_attn.q_proj.weight"])
    assert torch.equal(merged["model.layers.0.mlp.up_proj.weight"], extended["model.layers.0.mlp.up_proj.weight"])
    start = starts["02-s2"]
    assert set(merged) <= set(start)
    assert all(torch.equal(start[k], v) for k, v in merged.items())
