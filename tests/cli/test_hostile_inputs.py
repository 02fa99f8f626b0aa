"""Issue #26: what a hostile user trips on. Each bad input is ONE stderr line and exit status 2."""

from __future__ import annotations

import json

import pytest

from longctx.cli import main


def _refused(capsys, *argv: str) -> str:
    """Run ``longctx *argv``; assert exit status 2 and one stderr line; return that line."""
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


def test_pack_of_a_missing_file_is_one_line_naming_it(tiny_llama, tmp_path, capsys):
    err = _refused(capsys, "pack", tmp_path / "missing.jsonl", "--tokenizer", tiny_llama, "--pack-length", 128,
                   "--out", tmp_path / "p", "--no-progress")
    assert err == f"longctx pack: error: {tmp_path / 'missing.jsonl'}: no such file"
    assert not (tmp_path / "p").exists()


def _train(capsys, model, packs, out) -> str:
    return _refused(capsys, "train", "--set", f"model.path={model}", "--set", f"data.path={packs}",
                    "--set", f"checkpoint.out={out}", "--set", "train.steps=1")


def test_train_on_a_model_folder_without_config_json_names_the_missing_file(tiny_llama, packs, tmp_path, capsys):
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes((tiny_llama / "model.safetensors").read_bytes())
    err = _train(capsys, model, packs, tmp_path / "run")
    assert f"{model / 'config.json'}: missing" in err
    assert not (tmp_path / "run").exists()


def test_train_on_a_config_json_without_model_type_names_the_key(tiny_llama, packs, tmp_path, capsys):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"hidden_size": 64}')
    err = _train(capsys, model, packs, tmp_path / "run")
    assert f"{model / 'config.json'}: model_type: missing" in err


def test_train_with_checkpoint_out_under_a_file_is_refused_before_training(tiny_llama, packs, tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("")
    err = _train(capsys, tiny_llama, packs, blocker / "run")
    assert f"checkpoint.out: {blocker / 'run'}: cannot write: {blocker} is a file" in err


@pytest.mark.parametrize("key, value, message", [
    ("num_attention_heads", 0, "num_attention_heads: must be an integer >= 1, got 0"),
    ("hidden_size", -64, "hidden_size: must be an integer >= 1, got -64"),
    ("num_key_value_heads", 3, "num_key_value_heads: 3 does not divide num_attention_heads 4"),
    ("num_attention_heads", 6, "num_attention_heads: 6 does not divide hidden_size 64 (and no head_dim is given)"),
])
def test_plan_on_an_impossible_model_shape_names_the_config_key(tiny_llama, tmp_path, capsys, key, value, message):
    conf = json.loads((tiny_llama / "config.json").read_text())
    conf.pop("head_dim", None)
    conf.update({"hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2, key: value})
    path = tmp_path / "config.json"
    path.write_text(json.dumps(conf))
    err = _refused(capsys, "plan", "--model", path, "--seq-len", 1024)
    assert err == f"longctx plan: error: {path}: {message}"


def test_plan_of_a_layout_the_trainer_refuses_is_an_error_not_a_fit(capsys):
    err = _refused(capsys, "plan", "--model", "llama-3-8b", "--seq-len", 3072, "--gpus", 3, "--sp", 3,
                   "--layout", "ulysses")
    assert err.startswith("longctx plan: error: --layout: ulysses: sp (3) must divide the 32 attention heads")


def test_recipe_run_on_a_binary_file_says_it_is_not_utf8_text(tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    path.write_bytes(b"\x9d\x00\xff binary")
    err = _refused(capsys, "recipe", "run", path)
    assert err == (f"longctx recipe: error: {path}: not UTF-8 text (byte 0x9d at offset 0); "
                   "expected a YAML file in UTF-8")


def test_recipe_run_on_a_directory_says_it_is_a_directory(tmp_path, capsys):
    err = _refused(capsys, "recipe", "run", tmp_path)
    assert err == f"longctx recipe: error: {tmp_path}: a directory; expected a YAML file"


def _ruler(tiny_llama, out, *flags) -> list:
    return ["ruler", tiny_llama, "--out", out, "--tasks", "niah_single_1", "--samples", 1, *flags]


def test_ruler_refuses_a_length_far_beyond_the_models_window_before_generating(tiny_llama, tmp_path, capsys, monkeypatch):
    import eval_longbench.ruler.report as report

    monkeypatch.setattr(report, "run_ruler", lambda *a, **k: pytest.fail("generated for a refused run"))
    err = _refused(capsys, *_ruler(tiny_llama, tmp_path / "o", "--lengths", 100000000))
    assert err == ("longctx ruler: error: --lengths: 100000000 is above the 16777216 tokens ruler builds")
    err = _refused(capsys, *_ruler(tiny_llama, tmp_path / "o", "--lengths", "256,9000"))
    assert err == ("longctx ruler: error: --lengths: 9000 is over 32 x the trained window of tiny-llama "
                   "(256, max_position_embeddings): at most 8192")
    assert not (tmp_path / "o").exists()


def test_ruler_threshold_base_without_the_window_among_the_lengths_is_refused_leaving_no_results(
        tiny_llama, tmp_path, capsys, monkeypatch):
    import eval_longbench.ruler.report as report

    monkeypatch.setattr(report, "run_ruler", lambda *a, **k: pytest.fail("generated for a refused run"))
    err = _refused(capsys, *_ruler(tiny_llama, tmp_path / "o", "--lengths", "128", "--threshold", "base"))
    assert err == "longctx ruler: error: --threshold base: the model's window 256 must be one of --lengths (have 128)"
    assert not (tmp_path / "o" / "results.json").exists()


def test_the_error_line_reaches_stderr_in_one_write(tmp_path, monkeypatch):
    """Ranks sharing a log print their errors at once: a line written in two pieces (print's separate newline)
    let another rank's line land inside it (seen in the two-node kill test)."""
    class Recorder:
        def __init__(self):
            self.writes: list[str] = []

        def write(self, text: str) -> int:
            self.writes.append(text)
            return len(text)

        def flush(self) -> None:
            pass

    err = Recorder()
    monkeypatch.setattr("sys.stderr", err)
    assert main(["pack", str(tmp_path / "missing.jsonl"), "--tokenizer", str(tmp_path), "--pack-length", "128",
                 "--out", str(tmp_path / "p"), "--no-progress"]) == 2
    assert len(err.writes) == 1 and err.writes[0].startswith("longctx pack: error: ") and err.writes[0].endswith("\n")
