"""Never lose a user's data, never leave an output that looks complete but is not (issue #16, write side).

An output that is, holds or lies inside an input is refused; ``--overwrite`` replaces only a folder
longctx wrote (its ``.longctx-output`` marker); a full disk or read-only location is one line naming
the path and the cause, with no temp litter; a truncated or garbage safetensors file is named, never
hard-linked into a new checkpoint or handed to a loader.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import struct
from pathlib import Path

import pytest

import longctx.core.io as lio
from longctx.core.checkpoint_files import check_model_weights, check_safetensors
from longctx.cli import main as longctx_main
from longctx.core.errors import LongctxError
from longctx.core.io import OUTPUT_MARKER, atomic_dir, atomic_write_json, check_out_vs_inputs, is_our_output


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _one_line_error(capsys, *parts: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    for part in parts:
        assert part in err, (part, err)
    return err


@pytest.fixture()
def model(tiny_llama, tmp_path) -> Path:
    """A private copy of the tiny checkpoint inside a parent folder holding a sibling file of the user's."""
    parent = tmp_path / "models"
    shutil.copytree(tiny_llama, parent / "base")
    (parent / "notes.txt").write_text("the user's notes")
    return parent / "base"


# ---------------------------------------------------------------- out vs inputs


@pytest.mark.parametrize("rel, how", [(".", "is"), ("..", "contains"), ("sub/out", "is inside")])
def test_an_output_that_is_contains_or_is_inside_an_input_is_refused(tmp_path, rel, how):
    inp = tmp_path / "a" / "input"
    inp.mkdir(parents=True)
    with pytest.raises(LongctxError, match=f"--out .*: {how} the input .*input"):
        check_out_vs_inputs(inp / rel, [inp])


def test_out_vs_inputs_resolves_symlinks(tmp_path):
    inp = tmp_path / "input"
    inp.mkdir()
    (tmp_path / "link").symlink_to(tmp_path)
    with pytest.raises(LongctxError, match="contains the input"):
        check_out_vs_inputs(tmp_path / "link", [inp])


def test_out_vs_inputs_allows_siblings_and_skips_inputs_that_are_not_on_disk(tmp_path):
    (tmp_path / "input").mkdir()
    check_out_vs_inputs(tmp_path / "input-ext", [tmp_path / "input", "gpt2", None])
    check_out_vs_inputs(tmp_path / "out", [tmp_path / "input"])


def test_extend_out_parent_of_model_with_overwrite_deletes_nothing(model, capsys):
    """The reported case: `longctx extend MODEL --out PARENT_OF_MODEL --overwrite` deleted config.json and a sibling."""
    before = _tree(model.parent)
    rc = longctx_main(["extend", str(model), "--out", str(model.parent), "--factor", "2", "--overwrite"])
    assert rc == 2
    _one_line_error(capsys, "contains the input", str(model))
    assert _tree(model.parent) == before


def test_extend_out_inside_model_is_refused(model, capsys):
    before = _tree(model)
    assert longctx_main(["extend", str(model), "--out", str(model / "ext"), "--factor", "2"]) == 2
    _one_line_error(capsys, "is inside the input")
    assert _tree(model) == before


def test_pack_out_holding_the_input_with_overwrite_deletes_nothing(tiny_llama, tmp_path, capsys):
    """The reported case: `longctx pack DIR/train.jsonl --out DIR --overwrite` deleted the input."""
    d = tmp_path / "data"
    d.mkdir()
    rec = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    (d / "train.jsonl").write_text(json.dumps(rec) + "\n")
    before = _tree(d)
    rc = longctx_main(["pack", str(d / "train.jsonl"), "--tokenizer", str(tiny_llama), "--pack-length", "64",
                       "--out", str(d), "--overwrite", "--no-progress"])
    assert rc == 2
    _one_line_error(capsys, "contains the input", "train.jsonl")
    assert _tree(d) == before


def test_train_refuses_a_run_directory_holding_its_model(tiny_llama, tmp_path):
    from support import train_ranks as tr
    from longctx.train.trainer import Trainer

    packs = tr.make_packs(tmp_path / "packs", tr.random_seqs(4, 12, 50, seed=1), 128)
    with pytest.raises(LongctxError, match="checkpoint.out.*contains the input"):
        Trainer(tr.base_config(tiny_llama, packs, tmp_path, **{"checkpoint.export": False})).run()
    assert (packs / "manifest.json").is_file()


def test_needle_out_inside_a_model_is_refused(model, capsys):
    assert longctx_main(["needle", str(model), "--out", str(model / "eval")]) == 2
    _one_line_error(capsys, "is inside the input")
    assert not (model / "eval").exists()


# ---------------------------------------------------------------- --overwrite only replaces our outputs


def test_overwrite_refuses_a_folder_longctx_did_not_write(model, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    assert longctx_main(["extend", str(model), "--out", str(mine), "--factor", "2", "--overwrite"]) == 2
    _one_line_error(capsys, str(mine), "not a folder written by longctx")
    assert (mine / "thesis.tex").read_text() == "years of work"


def test_overwrite_replaces_an_output_longctx_wrote(model, tmp_path):
    out = tmp_path / "ext"
    assert longctx_main(["extend", str(model), "--out", str(out), "--factor", "2"]) == 0
    assert json.loads((out / OUTPUT_MARKER).read_text())["command"] == "extend"
    (out / "stale.txt").write_text("from the previous run")
    assert longctx_main(["extend", str(model), "--out", str(out), "--factor", "4", "--overwrite"]) == 0
    assert not (out / "stale.txt").exists()
    assert json.loads((out / "config.json").read_text())["max_position_embeddings"] == 4 * 256


def test_an_output_written_before_the_marker_is_recognised_by_its_known_files(tmp_path):
    old = tmp_path / "packs"
    old.mkdir()
    (old / "manifest.json").write_text("{}")
    assert is_our_output(old, legacy=("manifest.json",)) and not is_our_output(old)
    with atomic_dir(old, overwrite=True, legacy=("manifest.json",)) as tmp:
        (tmp / "x").write_text("new")
    assert (old / "x").read_text() == "new" and not (old / "manifest.json").exists()


def test_overwrite_refuses_a_plain_file(tmp_path):
    f = tmp_path / "out"
    f.write_text("a file")
    with pytest.raises(LongctxError, match="not a folder written by longctx"), atomic_dir(f, overwrite=True):
        pass
    assert f.read_text() == "a file"


# ---------------------------------------------------------------- full disk, read-only location


def _enospc(*_a, **_k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _litter(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


def test_a_full_disk_while_writing_a_directory_is_one_line_and_leaves_no_temp(tmp_path, monkeypatch):
    monkeypatch.setattr(lio.os, "replace", _enospc)
    with pytest.raises(LongctxError) as info, atomic_dir(tmp_path / "out") as tmp:
        (tmp / "a").write_text("data")
    msg = str(info.value)
    assert "\n" not in msg and str(tmp_path / "out") in msg and "No space left on device" in msg
    assert not (tmp_path / "out").exists() and _litter(tmp_path) == []


def test_a_full_disk_inside_the_block_is_one_line_and_leaves_no_temp(tmp_path):
    with pytest.raises(LongctxError, match="out: cannot write: No space left on device"), atomic_dir(tmp_path / "out"):
        _enospc()
    assert _litter(tmp_path) == []


def test_a_failed_replace_keeps_the_previous_output(tmp_path, monkeypatch):
    out = tmp_path / "out"
    with atomic_dir(out) as tmp:
        (tmp / "v").write_text("1")
    real = os.replace
    calls = []

    def second_fails(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            _enospc()
        return real(src, dst)

    monkeypatch.setattr(lio.os, "replace", second_fails)
    with pytest.raises(LongctxError, match="No space left"), atomic_dir(out, overwrite=True) as tmp:
        (tmp / "v").write_text("2")
    assert (out / "v").read_text() == "1" and _litter(tmp_path) == []


def test_a_full_disk_while_writing_a_file_is_one_line_and_leaves_no_temp(tmp_path, monkeypatch):
    monkeypatch.setattr(lio.os, "fsync", _enospc)
    with pytest.raises(LongctxError, match=r"results.json: cannot write: No space left on device"):
        atomic_write_json(tmp_path / "results.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_location_is_one_line_naming_it(tmp_path, monkeypatch):
    def rofs(*_a, **_k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path))

    monkeypatch.setattr(lio.tempfile, "mkdtemp", rofs)
    with pytest.raises(LongctxError, match="out: cannot write: Read-only file system"), atomic_dir(tmp_path / "out"):
        pass
    monkeypatch.setattr(lio.tempfile, "mkstemp", rofs)
    with pytest.raises(LongctxError, match="f.json: cannot write: Read-only file system"):
        atomic_write_json(tmp_path / "f.json", {})


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_a_read_only_parent_directory_is_one_line(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(LongctxError, match="cannot write: Permission denied"), atomic_dir(ro / "out"):
            pass
    finally:
        ro.chmod(0o755)


def test_extend_on_a_full_disk_is_one_line_and_leaves_no_temp(model, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(lio.os, "replace", _enospc)
    assert longctx_main(["extend", str(model), "--out", str(tmp_path / "ext"), "--factor", "2"]) == 2
    _one_line_error(capsys, str(tmp_path / "ext"), "No space left on device")
    assert not (tmp_path / "ext").exists() and _litter(tmp_path) == []


# ---------------------------------------------------------------- safetensors checks


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.unlink()  # break any hard link with the session's checkpoint
    path.write_bytes(data[: int(len(data) * keep)])


def _garbage(path: Path) -> None:
    path.unlink()
    path.write_bytes(b"<html>404 Not Found</html>" * 10)


def test_a_valid_safetensors_header_is_returned(tiny_llama):
    header = check_safetensors(tiny_llama / "model.safetensors")
    assert any(k.endswith("embed_tokens.weight") for k in header)


@pytest.mark.parametrize("damage", [_truncate, _garbage], ids=["truncated", "garbage"])
def test_a_damaged_safetensors_file_is_named_in_one_line(model, damage):
    damage(model / "model.safetensors")
    with pytest.raises(LongctxError, match=r"model.safetensors: not a valid safetensors file") as info:
        check_model_weights(model)
    assert "\n" not in str(info.value)


def test_a_header_whose_offsets_lie_past_the_file_is_refused(tmp_path):
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    f = tmp_path / "model.safetensors"
    f.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    with pytest.raises(LongctxError, match="tensor 'w' ends at byte 16 of a 8-byte data section"):
        check_safetensors(f)


@pytest.mark.parametrize("damage", [_truncate, _garbage], ids=["truncated", "garbage"])
def test_extend_never_links_a_damaged_safetensors_file(model, tmp_path, capsys, damage):
    damage(model / "model.safetensors")
    assert longctx_main(["extend", str(model), "--out", str(tmp_path / "ext"), "--factor", "2"]) == 2
    _one_line_error(capsys, "model.safetensors: not a valid safetensors file")
    assert not (tmp_path / "ext").exists()


@pytest.mark.parametrize("damage", [_truncate, _garbage], ids=["truncated", "garbage"])
def test_needle_and_ppl_name_a_damaged_safetensors_file(model, tmp_path, capsys, damage):
    damage(model / "model.safetensors")
    for cmd in ("needle", "ppl"):
        assert longctx_main([cmd, str(model), "--out", str(tmp_path / cmd), "--lengths", "64"]) == 2
        _one_line_error(capsys, "model.safetensors: not a valid safetensors file")


def test_train_names_a_damaged_safetensors_file(model, tmp_path):
    from support import train_ranks as tr
    from longctx.train.trainer import Trainer

    _truncate(model / "model.safetensors")
    packs = tr.make_packs(tmp_path / "packs", tr.random_seqs(4, 12, 50, seed=1), 128)
    with pytest.raises(LongctxError, match="model.safetensors: not a valid safetensors file"):
        Trainer(tr.base_config(model, packs, tmp_path / "run", **{"checkpoint.export": False})).run()
