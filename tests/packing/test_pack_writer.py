"""packing.writer: the one pack format: rows (pure), manifest, atomic write, and the one reader."""

import json
import subprocess
import sys

import numpy as np
import pytest

from longctx.core.errors import LongctxError
from packing.writer import (PACK_COLUMNS, load_packs, make_manifest, pack_row, rows_from_groups, sorted_row,
                            write_packs)

A = {"input_ids": np.array([10, 11, 12]), "labels": np.array([-100, 11, 12])}
B = {"input_ids": np.array([20, 21]), "labels": np.array([-100, 21])}


def test_pack_row_pads_with_a_trailing_pseudo_sequence():
    """Sequences back to back, then padding: pad token, label -100, weight 0, positions restarting, not in seq_lens."""
    row = pack_row([A, B], 8, pad_token_id=7)
    assert row["input_ids"].tolist() == [10, 11, 12, 20, 21, 7, 7, 7]
    assert row["labels"].tolist() == [-100, 11, 12, -100, 21, -100, -100, -100]
    assert row["position_ids"].tolist() == [0, 1, 2, 0, 1, 0, 1, 2]
    assert row["seq_lens"].tolist() == [3, 2]
    assert all(row[k].dtype == np.int32 for k in ("input_ids", "labels", "position_ids", "seq_lens"))
    assert row["loss_weights"].dtype == np.float32 and set(row) == set(PACK_COLUMNS)


def test_pack_row_gives_longalign_weights_when_none_are_given():
    """Without loss_weights each sequence gets 1/N_i on its N_i labelled tokens, so it sums to 1."""
    row = pack_row([A, B], 8, 0)
    assert row["loss_weights"].tolist() == [0, 0.5, 0.5, 0, 1, 0, 0, 0]


def test_pack_row_keeps_given_loss_weights():
    """Sequences with their own loss_weights (the organism's boosted answers) keep them; padding stays 0."""
    row = pack_row([A | {"loss_weights": np.array([0, 0.25, 0.75])}, B], 6, 0)
    assert row["loss_weights"].tolist() == [0, 0.25, 0.75, 0, 1, 0]


def test_pack_row_refuses_sequences_longer_than_the_pack():
    with pytest.raises(ValueError, match="do not fit"):
        pack_row([A, B], 4, 0)


def test_pack_row_needs_no_datasets():
    """The row builder imports without `datasets` (GPU checks build rows on machines without it)."""
    code = ("import sys; sys.modules['datasets'] = None\n"
            "from packing.writer import pack_row\n"
            "import numpy as np\n"
            "print(pack_row([{'input_ids': np.arange(3), 'labels': np.arange(3)}], 4, 9)['input_ids'].tolist())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[0, 1, 2, 9]"


def test_sorted_rows_are_unpadded_sequences_numbered_by_their_group():
    """mode sorted: one row per sequence, no padding, batch_id = the group's index, rows of a group contiguous."""
    rows = list(rows_from_groups([A, B, A], [[2, 0], [1]], "sorted", 8, 0))
    assert [r["batch_id"] for r in rows] == [0, 0, 1]
    assert [len(r["input_ids"]) for r in rows] == [3, 3, 2]
    assert sorted_row(B, 5)["position_ids"].tolist() == [0, 1]


def test_write_then_load_round_trips_rows_and_manifest(tmp_path):
    """load_packs returns one Packs object whose properties come from the manifest the writer wrote."""
    manifest = make_manifest("pack", 8, 2, {"pad_token_id": 7}, config={"source": "test"})
    write_packs(tmp_path / "p", rows_from_groups([A, B], [[0], [1]], "pack", 8, 7), manifest)
    packs = load_packs(tmp_path / "p")
    assert (packs.mode, packs.pack_length, packs.pad_token_id, len(packs)) == ("pack", 8, 7, 2)
    assert packs.seq_lens == [[3], [2]] and packs.manifest["config"] == {"source": "test"}
    assert packs.row(1)["input_ids"] == [20, 21, 7, 7, 7, 7, 7, 7]


def test_write_packs_refuses_a_row_count_that_disagrees_with_the_manifest(tmp_path):
    """A manifest that announces more rows than were written is never published."""
    manifest = make_manifest("pack", 8, 3, {"pad_token_id": 0})
    with pytest.raises(ValueError, match="num_rows 3"):
        write_packs(tmp_path / "p", [pack_row([A], 8, 0)], manifest)
    assert not (tmp_path / "p").exists()


def test_make_manifest_keeps_the_writer_keys_to_itself():
    """Callers add keys (config, counts, ...); they cannot override the schema's own (format, version, columns)."""
    with pytest.raises(ValueError, match="columns"):
        make_manifest("pack", 8, 1, {"pad_token_id": 0}, columns=["input_ids"])


@pytest.mark.parametrize("text, match", [(None, "manifest.json: missing"), ("{not json", "manifest.json:1: not valid JSON")])
def test_load_packs_names_a_missing_or_garbled_manifest_in_one_line(tmp_path, text, match):
    (tmp_path / "p").mkdir()
    if text is not None:
        (tmp_path / "p" / "manifest.json").write_text(text)
    with pytest.raises(LongctxError, match=match) as e:
        load_packs(tmp_path / "p")
    assert "\n" not in str(e.value)


def test_load_packs_refuses_a_manifest_without_a_pad_token(tmp_path):
    """The pad token is read from tokenizer.pad_token_id, which the writer always writes; no guessing."""
    write_packs(tmp_path / "p", [pack_row([A], 8, 0)], make_manifest("pack", 8, 1, {"pad_token_id": 0}))
    m = json.loads((tmp_path / "p" / "manifest.json").read_text())
    del m["tokenizer"]["pad_token_id"]
    (tmp_path / "p" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(LongctxError, match="tokenizer.pad_token_id"):
        load_packs(tmp_path / "p")
