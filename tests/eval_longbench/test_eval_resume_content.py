"""A resumed `ppl` / `needle` run reuses stored results only for the same content: another checkpoint
under the same directory name, or a changed text/haystack file, is refused with the meta message."""

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from eval_longbench.fingerprint import model_fingerprint, text_fingerprint
from eval_longbench.results import ResultStore
from longctx.core.errors import LongctxError


def retrained_copy(src, dst):
    """``src`` copied to ``dst`` with every weight changed (same names, shapes, dtypes and file sizes)."""
    shutil.copytree(src, dst)
    w = load_file(dst / "model.safetensors")
    save_file({k: v + 0.5 for k, v in w.items()}, dst / "model.safetensors", metadata={"format": "pt"})
    assert (dst / "model.safetensors").stat().st_size == (src / "model.safetensors").stat().st_size
    return dst


def test_fingerprint_follows_weights_and_config_not_names_or_times(tiny_llama, tmp_path):
    """Other weights of the same shapes or another config.json change it; a copy, a touch, a README do not."""
    fp = model_fingerprint(tiny_llama)
    copy = tmp_path / "copy"
    shutil.copytree(tiny_llama, copy)
    (copy / "model.safetensors").touch()
    (copy / "README.md").write_text("notes")
    assert model_fingerprint(copy) == fp
    assert model_fingerprint(retrained_copy(tiny_llama, tmp_path / "retrained")) != fp
    extended = tmp_path / "extended"
    shutil.copytree(tiny_llama, extended)
    (extended / "config.json").write_text((extended / "config.json").read_text().replace("}", ', "x": 1}', 1))
    assert model_fingerprint(extended) != fp


def test_one_changed_tensor_changes_the_fingerprint(tmp_path):
    """Each tensor is sampled, so retraining one small tensor among large ones is seen."""
    w = {f"layer{i}": torch.zeros(64, 64) for i in range(8)}
    save_file(w, tmp_path / "model.safetensors")
    before = model_fingerprint(tmp_path)
    w["layer5"] = w["layer5"] + 1e-3
    save_file(w, tmp_path / "model.safetensors")
    assert model_fingerprint(tmp_path) != before


def test_garbage_safetensors_is_hashed_in_full_not_a_crash(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"\xff" * 100)
    a = model_fingerprint(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\xff" * 99 + b"\x00")
    assert model_fingerprint(tmp_path) != a


def test_store_refuses_another_fingerprint_under_the_same_name(tmp_path):
    """bind_model: same name + same content resumes; same name + other content is the meta error."""
    store = ResultStore(tmp_path / "r.json", {"k": 1})
    store.bind_model("ckpt", "aaaa")
    store.put("ckpt|64", {"ppl": 3.0})
    again = ResultStore(tmp_path / "r.json", {"k": 1})
    again.bind_model("ckpt", "aaaa")
    assert "ckpt|64" in again
    with pytest.raises(LongctxError, match=r"meta\.models\.ckpt: this file was written with 'aaaa', now 'bbbb'"):
        ResultStore(tmp_path / "r.json", {"k": 1}).bind_model("ckpt", "bbbb")


def test_ppl_resume_refuses_another_model_with_the_same_directory_name(tiny_llama, tmp_path):
    """`longctx ppl runs/a/tiny-llama` then `longctx ppl runs/b/tiny-llama` (other weights) into the
    same --out: refused (it used to print the first model's perplexities as the second's)."""
    from longctx.cli.ppl import main as ppl_main

    out = tmp_path / "out"
    args = ["--lengths", "32", "--stride", "16", "--out", str(out)]
    assert ppl_main([str(tiny_llama), *args]) == 0
    other = retrained_copy(tiny_llama, tmp_path / "b" / tiny_llama.name)
    with pytest.raises(LongctxError, match=f"meta.models.{tiny_llama.name}: this file was written with"):
        ppl_main([str(other), *args])
    assert ppl_main([str(tiny_llama), *args]) == 0  # the same checkpoint still resumes


def test_ppl_resume_refuses_a_changed_text_file(tmp_path):
    """Same --text path, new content: refused by meta.text_sha256 (before any model loads)."""
    from longctx.cli.ppl import main as ppl_main

    (tmp_path / "m").mkdir()
    text = tmp_path / "book.txt"
    text.write_text("first edition. " * 50)
    out = tmp_path / "out"
    meta = {"text": [str(text)], "text_sha256": text_fingerprint(text.read_text().strip()), "stride": 256, "max_tokens": 64}
    ResultStore(out / "results.json", meta).save()
    text.write_text("second edition. " * 50)
    with pytest.raises(LongctxError, match="meta.text_sha256: this file was written with"):
        ppl_main([str(tmp_path / "m"), "--text", str(text), "--lengths", "64", "--out", str(out)])


def test_needle_resume_refuses_a_changed_haystack_file(tmp_path, monkeypatch):
    """Same --haystack path, new content: refused by meta.haystack_sha256 (before any model loads)."""
    import eval_longbench.models as models
    from longctx.cli.needle import main as needle_main

    (tmp_path / "m").mkdir()
    hay = tmp_path / "hay.txt"
    out = tmp_path / "out"
    args = [str(tmp_path / "m"), "--haystack", str(hay), "--lengths", "256", "--out", str(out)]
    hay.write_text("The old text is here. It has sentences. " * 20)

    def stop(*a, **k):
        raise RuntimeError("stop before loading")

    monkeypatch.setattr(models, "load_model", stop)
    with pytest.raises(RuntimeError, match="stop before loading"):
        needle_main(args)  # writes results.json's meta (with the haystack's hash), then stops
    hay.write_text("The new text is here. It has other sentences. " * 20)
    with pytest.raises(LongctxError, match="meta.haystack_sha256: this file was written with"):
        needle_main(args)


def test_needle_resume_refuses_another_model_with_the_same_directory_name(tiny_llama, tmp_path):
    """The needle grid of one checkpoint is not reused for another one saved under the same name."""
    from longctx.cli.needle import main as needle_main

    out = tmp_path / "out"
    args = ["--lengths", "200", "--depths", "1", "--max-new-tokens", "1", "--out", str(out)]
    assert needle_main([str(tiny_llama), *args]) == 0
    other = retrained_copy(tiny_llama, tmp_path / "b" / tiny_llama.name)
    with pytest.raises(LongctxError, match=f"meta.models.{tiny_llama.name}"):
        needle_main([str(other), *args])
