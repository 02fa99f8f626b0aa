"""benchmarks/real_model.py without the model: the grid, the scoring of factual answers, the table."""

from __future__ import annotations

import pytest

from support.scripts import load_script
from eval_longbench.results import ResultStore
from longctx.core.errors import LongctxError


@pytest.fixture(scope="module")
def bench():
    return load_script("benchmarks/real_model.py", "real_model_bench")


def test_the_grid_runs_base_once_and_every_other_method_at_every_factor(bench):
    grid = bench.Grid(methods=["base", "pi", "yarn"], factors=[2, 4])
    assert grid.variants() == [("base", None, None), ("pi-x2", "linear", 2), ("pi-x4", "linear", 4),
                               ("yarn-x2", "yarn", 2), ("yarn-x4", "yarn", 4)]
    assert bench.Grid().depths() == [round(i / 9, 4) for i in range(10)]  # 10 samples, depths 0..1


@pytest.mark.parametrize("kw, match", [({"methods": ["rope"]}, "--methods: unknown"), ({"factors": [1.0]}, "--factors"),
                                       ({"tasks": ["qa"]}, "--tasks: unknown"), ({"samples": 0}, "--samples"),
                                       ({"short_tokens": 1024, "short_window": 2048}, "--short-tokens")])
def test_a_bad_grid_is_one_line_naming_the_flag(bench, kw, match):
    with pytest.raises(LongctxError, match=match):
        bench.Grid(**kw)


def test_the_cli_refuses_a_bad_grid_before_loading_anything(bench, tmp_path, capsys):
    assert bench.main(["--out", str(tmp_path / "o"), "--methods", "base,rope"]) == 2
    assert "--methods: unknown ['rope']" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_trained_checkpoint_is_a_row_measured_as_it_is(bench, tmp_path):
    """--trained LABEL=DIR adds the folder itself after the training-free variants (no extension applied)."""
    ckpt = tmp_path / "final"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    grid = bench.Grid(methods=["base", "yarn"], factors=[2], trained=bench._trained([f"yarn-x2-16k={ckpt}"]))
    assert grid.variants() == [("base", None, None), ("yarn-x2", "yarn", 2), ("yarn-x2-16k", None, None)]
    assert "trained: yarn-x2-16k" in bench.format_table(bench.summarize(ResultStore(tmp_path / "r.json", {}), grid, 4096),
                                                        grid, "text")


@pytest.mark.parametrize("trained, match", [({"yarn-x2": "."}, "the label must be new"),
                                            ({"t": "/no/such/dir"}, "not a checkpoint folder")])
def test_a_trained_checkpoint_needs_a_new_label_and_a_checkpoint_folder(bench, trained, match):
    with pytest.raises(LongctxError, match=match):
        bench.Grid(methods=["base", "yarn"], factors=[2], trained=trained)


@pytest.mark.parametrize("answer, accepted, score", [("The capital of France is Paris.", ("paris",), 1.0),
                                                     ("A spider has eight legs", ("8", "eight"), 1.0),
                                                     ("Parisian cafés", ("paris",), 0.0), ("Au.", ("au",), 1.0),
                                                     ("It is gold", ("au",), 0.0)])
def test_a_factual_answer_counts_when_it_contains_an_accepted_whole_word(bench, answer, accepted, score):
    assert bench.fact_score(answer, accepted) == score


def test_the_table_counts_correct_over_measured_samples_and_marks_missing_cells(bench, tmp_path):
    grid = bench.Grid(methods=["base", "yarn"], factors=[2], lengths=[4096], samples=3, tasks=["passkey"],
                      ppl_lengths=[4096], short_tokens=0, facts=True)
    store = ResultStore(tmp_path / "r.json", {})
    for d, s in zip(grid.depths()[:2], (1.0, 0.0)):  # 2 of 3 depths measured for base, one right
        store.put(f"passkey:base|4096|{d:.4f}", {"score": s})
    store.put("ppl@4096:base|4096", {"ppl": 7.125})
    store.put("facts:base", {"correct": 9, "n": 10})
    rows = bench.summarize(store, grid, 4096)
    assert rows[0] == {"variant": "base", "passkey@4096": (1.0, 2), "ppl@4096": 7.125, "facts": (9, 10)}
    table = bench.format_table(rows, grid, "text")
    assert "| variant | passkey 4K | ppl 4K | facts |" in table
    assert "| base | 1/2 | 7.12 | 9/10 |" in table and "| yarn-x2 | – | – | – |" in table


def test_the_variants_are_training_free_recipe_stages_made_once(bench, tiny_llama, tmp_path):
    """The extended checkpoints come from the recipe runner (one `from: base`, `train: false` stage per method and
    factor): each has its method's rope config, the base stands for itself, and a rerun keeps them (skipped)."""
    import json

    grid = bench.Grid(methods=["base", "pi", "yarn"], factors=[2])
    made = bench.variant_checkpoints(grid, tiny_llama, tmp_path, progress=False)
    assert list(made) == ["base", "pi-x2", "yarn-x2"] and made["base"] == tiny_llama
    for label, rope_type in (("pi-x2", "linear"), ("yarn-x2", "yarn")):
        conf = json.loads((made[label] / "config.json").read_text())
        assert made[label] == tmp_path / "variants" / label
        assert conf["rope_parameters"]["rope_type"] == rope_type and conf["max_position_embeddings"] == 512
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "variants").glob("*/config.json")}
    assert bench.variant_checkpoints(grid, tiny_llama, tmp_path, progress=False) == made
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "variants").glob("*/config.json")} == before
