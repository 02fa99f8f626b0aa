"""`longctx quickstart`: a drastically reduced run writes a report whose numbers come from its runs."""

import hashlib
import json
from pathlib import Path

import pytest
from safetensors import safe_open
from support import ROOT

from longctx.cli.quickstart import build_parser, config_from_args
from longctx.core.errors import LongctxError
from longctx.quickstart.config import QuickstartConfig
from longctx.quickstart.pipeline import run_quickstart

# sha256 of sft_records(byte tokenizer, 6, 300..900, seed 1) as drawn before edge_share existed
QUICKSTART_RECORDS_SHA = "3c089cabccbbb13a"


@pytest.fixture(scope="module")
def reduced_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("qs") / "run"
    cfg = QuickstartConfig(out=str(out), factor=2, multiples=[1, 2], methods=["yarn"], eval_depths=1, eval_samples=1,
                           sft_records=4, steps=2, progress=False)
    summary = run_quickstart(cfg)
    return out, summary


def test_report_folder_has_every_artifact(reduced_run):
    """report/ holds both heatmaps, the ppl plot (real PNGs), summary.md/json and an executable commands.sh."""
    out, _ = reduced_run
    rep = out / "report"
    for png in ("heatmap_before.png", "heatmap_after.png", "ppl.png"):
        assert (rep / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (rep / "summary.md").read_text().count("\n| ") >= 3  # header + one row per model
    assert (rep / "commands.sh").stat().st_mode & 0o100


def test_summary_numbers_are_the_recorded_eval_results(reduced_run):
    """Every accuracy and ppl in summary.json equals what the needle / ppl result files recorded for that model,
    and each passkey prompt leaves room for the chat template and reply inside its window."""
    out, summary = reduced_run
    needle = json.loads((out / "eval" / "needle" / "results.json").read_text())["records"]
    ppl = json.loads((out / "eval" / "ppl" / "results.json").read_text())["records"]
    assert [m["model"] for m in summary["models"]] == ["base", "yarn-x2", "yarn-x2+ft"]
    for m in summary["models"]:
        assert sorted(map(int, m["windows"])) == [512, 1024]
        for window, cell in m["windows"].items():
            samples = [s for c in needle.values() if c["model"] == m["model"] and c["length"] == cell["prompt_tokens"]
                       for s in c["samples"]]
            assert len(samples) == cell["n"] == 1
            assert cell["prompt_tokens"] + summary["chat_overhead_tokens"] == int(window)
            assert all(isinstance(s["prediction"], str) and s["answer"].isdigit() for s in samples)
            assert cell["accuracy"] == sum(s["score"] for s in samples) / len(samples)
            assert cell["ppl"] == ppl[f"{m['model']}|{window}"]["ppl"]


def test_training_changed_the_extended_weights(reduced_run):
    """The fine-tuned model (trainer output) differs from the extended checkpoint it started from."""
    out, _ = reduced_run
    key = "model.layers.0.mlp.up_proj.weight"
    with safe_open(out / "models" / "yarn-x2" / "model.safetensors", "pt") as a, \
            safe_open(out / "train" / "yarn" / "final" / "model.safetensors", "pt") as b:
        assert not (a.get_tensor(key) == b.get_tensor(key)).all()
    trained = json.loads((out / "train" / "yarn" / "final" / "config.json").read_text())
    assert trained["rope_parameters"]["rope_type"] == "yarn" and trained["max_position_embeddings"] == 1024


def test_commands_sh_lists_each_step_with_loadable_configs(reduced_run):
    """commands.sh names extend, pack, train (2 ranks, ring via sp_degree 2), needle and ppl; its train config loads."""
    from longctx.train.config import load_config

    out, _ = reduced_run
    text = (out / "report" / "commands.sh").read_text()
    for piece in ("longctx extend", "--method yarn --factor 2", "longctx pack", "--pack-length 1024",
                  "longctx train --config", "--nproc 2", "longctx needle", "longctx ppl"):
        assert piece in text
    cfg = load_config(out / "configs" / "train-yarn.yaml")
    assert cfg.parallel.sp_degree == 2 and cfg.train.steps == 2
    assert Path(cfg.model.path) == out / "models" / "yarn-x2"


def test_a_rerun_continues_the_finished_run_and_reports_the_same_numbers(reduced_run, capsys):
    """The quick start is a recipe run: the same command again skips every finished stage (the runner's resume
    rule) and writes the same summary."""
    out, summary = reduced_run
    cfg = QuickstartConfig(out=str(out), factor=2, multiples=[1, 2], methods=["yarn"], eval_depths=1, eval_samples=1,
                           sft_records=4, steps=2, progress=False)
    again = run_quickstart(cfg)
    assert "finished" in capsys.readouterr().out
    drop = ("timings_s", "total_seconds", "finished")
    assert {k: v for k, v in again.items() if k not in drop} == {k: v for k, v in summary.items() if k not in drop}


def test_the_shipped_quickstart_recipe_is_what_the_default_flags_run():
    """configs/recipes/quickstart.yaml is the recipe `longctx quickstart` runs with its default flags (so
    `longctx recipe run` on it gives the quick start's numbers)."""
    from longctx.quickstart.recipe import base_model, quickstart_recipe
    from longctx.recipe.spec import load_recipe, parse_recipe

    shipped = load_recipe(ROOT / "configs" / "recipes" / "quickstart.yaml").to_dict()
    cfg = QuickstartConfig()
    built = parse_recipe(quickstart_recipe(cfg, base_model(cfg)), "built").to_dict()
    shipped.pop("path"), built.pop("path")
    assert shipped == built


def test_refuses_to_delete_a_folder_it_did_not_write(tmp_path):
    """--overwrite replaces only a quick start folder; any other non-empty folder is refused."""
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(LongctxError, match="not a quick start folder"):
        run_quickstart(QuickstartConfig(out=str(tmp_path), progress=False), overwrite=True)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_cli_rejects_lengths_beyond_the_extension():
    """--multiples larger than --factor is a user error naming the flag."""
    args = build_parser().parse_args(["--factor", "4", "--multiples", "1,8"])
    with pytest.raises(LongctxError, match="--multiples"):
        config_from_args(args)


def test_sft_records_have_the_requested_lengths():
    """Each synthetic conversation renders to the token count it records, within [min, max]."""
    from longctx.core.tokenizer import byte_tokenizer
    from longctx.recipe.synthetic import sft_records

    tok = byte_tokenizer()
    recs = sft_records(tok, 5, min_tokens=300, max_tokens=900, seed=1)
    for r in recs:
        n = len(tok(tok.apply_chat_template(r["messages"], tokenize=False), add_special_tokens=False)["input_ids"])
        assert n == r["tokens"] and 300 <= n <= 900
    assert len({r["messages"][1]["content"] for r in recs}) == 5


def _needle_position(record: dict) -> float:
    """Where the passkey sentence starts in the user turn, as a fraction of its length (byte tokenizer: chars = tokens)."""
    text, key = record["messages"][0]["content"], record["messages"][1]["content"].split()[-1].rstrip(".")
    return text.index(key) / len(text)


def test_edge_share_puts_that_share_of_needles_at_the_haystack_edges():
    """edge_share=1: every needle sits at the start or the end of the haystack, both edges used; 0: spread inside."""
    from longctx.core.tokenizer import byte_tokenizer
    from longctx.recipe.synthetic import sft_records

    tok = byte_tokenizer()
    edge = [_needle_position(r) for r in sft_records(tok, 20, min_tokens=1500, max_tokens=2000, seed=3, edge_share=1.0)]
    assert all(p < 0.15 or p > 0.85 for p in edge)
    assert any(p < 0.15 for p in edge) and any(p > 0.85 for p in edge)
    inside = [_needle_position(r) for r in sft_records(tok, 20, min_tokens=1500, max_tokens=2000, seed=3)]
    assert sum(0.2 < p < 0.8 for p in inside) >= 8


FILLER = [f"Sentence number {i} of the book says little." for i in range(400)]


def test_a_filler_text_replaces_the_noise_haystack():
    """With filler sentences the haystack is made of them (the key still hidden in it, the length still exact)."""
    from longctx.core.tokenizer import byte_tokenizer
    from longctx.recipe.synthetic import sft_records

    tok = byte_tokenizer()
    for r in sft_records(tok, 4, min_tokens=600, max_tokens=900, seed=2, filler=FILLER):
        prompt, key = r["messages"][0]["content"], r["messages"][1]["content"].split()[-1].rstrip(".")
        assert "of the book says little." in prompt and f"The pass key is {key}." in prompt
        n = len(tok(tok.apply_chat_template(r["messages"], tokenize=False), add_special_tokens=False)["input_ids"])
        assert n == r["tokens"]


def test_qa_share_asks_for_a_key_value_needle_among_distractors():
    """qa_share=1: every record hides 4 key-value needles and its reply is the value of the key it asks for,
    rendered at exactly the drawn length."""
    import re

    from longctx.core.tokenizer import byte_tokenizer
    from longctx.recipe.synthetic import QA_NEEDLES, sft_records

    tok = byte_tokenizer()
    recs = sft_records(tok, 6, min_tokens=700, max_tokens=1000, seed=4, filler=FILLER, qa_share=1.0)
    for r in recs:
        prompt, reply = r["messages"][0]["content"], r["messages"][1]["content"]
        needles = dict(re.findall(r"special magic numbers? for (\S+) is: (\d+)\.", prompt))
        asked = re.findall(r"What is the special magic number for (\S+) mentioned", prompt)
        assert len(needles) == QA_NEEDLES and len(asked) == 1
        assert reply == f"{needles[asked[0]]}."
        n = len(tok(tok.apply_chat_template(r["messages"], tokenize=False), add_special_tokens=False)["input_ids"])
        assert n == r["tokens"] and 700 <= n <= 1000
    mixed = sft_records(tok, 20, min_tokens=700, max_tokens=1000, seed=4, filler=FILLER, qa_share=0.5)
    kinds = {r["id"].split("-")[0] for r in mixed}
    assert kinds == {"qa", "passkey"}


def test_edge_share_zero_keeps_the_quick_start_records():
    """The default draws exactly the records it drew before the option existed (same stream, same depths)."""
    from longctx.core.tokenizer import byte_tokenizer
    from longctx.recipe.synthetic import sft_records

    tok = byte_tokenizer()
    a = sft_records(tok, 6, min_tokens=300, max_tokens=900, seed=1)
    b = sft_records(tok, 6, min_tokens=300, max_tokens=900, seed=1, edge_share=0.0)
    assert a == b
    assert hashlib.sha256(json.dumps(a).encode()).hexdigest()[:16] == QUICKSTART_RECORDS_SHA


def test_unknown_method_fails_before_anything_is_written(tmp_path):
    """A bad --methods entry is reported up front (naming the flag) and the output folder is never created."""
    out = tmp_path / "qs"
    with pytest.raises(LongctxError, match="--methods: unknown nope"):
        run_quickstart(QuickstartConfig(out=str(out), methods=["yarn", "nope"], progress=False))
    assert not out.exists()


def test_config_refuses_a_non_positive_value_naming_its_flag():
    """Building a config with --factor 0 fails on construction, without any CLI, as one line naming the flag."""
    with pytest.raises(LongctxError) as exc:
        QuickstartConfig(factor=0)
    assert str(exc.value) == "--factor: must be >= 1, got 0"


def test_config_refuses_lengths_beyond_the_extension():
    """Evaluated multiples above the factor are refused when the config is built."""
    with pytest.raises(LongctxError, match=r"^--multiples: need values between 1 and --factor 4, got \[1, 8\]$"):
        QuickstartConfig(factor=4, multiples=[1, 8])


def test_config_validate_catches_fields_changed_after_construction():
    """validate() (which the pipeline runs first) sees a field set to a bad value after the config was built."""
    cfg = QuickstartConfig()
    cfg.methods = []
    with pytest.raises(LongctxError, match="^--methods: give at least one method"):
        cfg.validate()


def test_abf_theta_of_the_shipped_model_is_the_ntk_base_over_its_rotary_dim():
    """The quick start's ABF base is rope_scaling's NTK-aware base: 10000 * 8 ** (32 / 30) for the shipped model."""
    from longctx.models.organism import shipped_model_dir
    from longctx.quickstart.recipe import default_abf_theta

    assert default_abf_theta(shipped_model_dir(), 8) == 10000.0 * 8 ** (32 / 30)
    assert round(default_abf_theta(shipped_model_dir(), 8)) == 91896


def test_abf_theta_counts_only_the_rotated_channels(tmp_path):
    """With partial_rotary_factor 0.5 the exponent uses the 16 rotated channels of a 32-wide head, not 32."""
    from longctx.models.organism import shipped_model_dir
    from longctx.quickstart.recipe import default_abf_theta

    conf = json.loads((shipped_model_dir() / "config.json").read_text())
    conf["rope_parameters"]["partial_rotary_factor"] = 0.5
    (tmp_path / "config.json").write_text(json.dumps(conf))
    assert default_abf_theta(tmp_path, 8) == pytest.approx(10000.0 * 8 ** (16 / 14), rel=1e-12)


def test_builtin_ppl_text_is_seed_zero_noise_covering_the_tokens():
    """The one builtin perplexity text (quick start and `longctx ppl --text builtin`): seed-0 noise sentences,
    need // 2 + 64 of them, at least as many tokens as asked for."""
    from eval_longbench.haystack import builtin_text, noise_stream
    from longctx.core.tokenizer import byte_tokenizer

    stream = noise_stream(0)
    assert builtin_text(2048) == " ".join(next(stream) for _ in range(2048 // 2 + 64))
    assert len(byte_tokenizer()(builtin_text(2048), add_special_tokens=False)["input_ids"]) >= 2048


def test_before_and_after_heatmap_titles_name_the_same_x_unit():
    """heatmap_after.png says what its x axis counts exactly as heatmap_before.png does (prompt tokens,
    and how many tokens the window adds)."""
    from types import SimpleNamespace

    from longctx.quickstart.report import heatmap_titles

    titles = heatmap_titles(SimpleNamespace(overhead=17, cfg=SimpleNamespace(steps=100)))
    unit = "(x axis: prompt tokens; +17 = window)"
    assert titles["before"].endswith(unit) and titles["after"].endswith(unit)
    assert "before training" in titles["before"] and "after 100 training steps" in titles["after"]


def test_eta_scales_with_the_config_and_corrects_itself_after_each_stage():
    """The forecast before each stage: more steps or methods mean more time; once a stage has run twice as
    long as estimated, the stages left are forecast twice as long too; the header reads "about N min left"."""
    from longctx.quickstart.eta import STAGES, eta_note, seconds_left, stage_estimates

    est = stage_estimates(QuickstartConfig())
    assert tuple(est) == STAGES and all(v > 0 for v in est.values())
    bigger = stage_estimates(QuickstartConfig(steps=400, methods=["yarn", "linear", "abf", "dynamic"]))
    assert bigger["train"] == pytest.approx(est["train"] * 4 * 4 / 3)
    assert seconds_left(est, {}) == pytest.approx(sum(est.values()))
    slow = {"evaluate": 2 * est["evaluate"]}
    assert seconds_left(est, slow) == pytest.approx(2 * (sum(est.values()) - est["evaluate"]))
    assert eta_note(est, {}).startswith("about ") and "reference" in eta_note(est, {})
    minutes = round(seconds_left(est, slow) / 60)
    assert eta_note(est, slow) == f"about {minutes} min left"
    assert eta_note(est, {k: v for k, v in est.items()}) == "under a minute left"
