"""packing.readers: every record carries its location; malformed input is reported, not raised mid-stream."""

import json

import pytest

from longctx.errors import LongctxError
from packing.readers import BadRecord, Record, read_records


def test_jsonl_records_carry_file_and_line_and_skip_blank_lines(tmp_path):
    """Line numbers count physical lines (blank lines included), so `file:line` points at the record."""
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "a"}\n\n{"text": "b"}\n')
    recs = list(read_records(p))
    assert [r.where for r in recs] == [f"{p}:1", f"{p}:3"] and all(isinstance(r, Record) for r in recs)


def test_malformed_json_file_reports_the_line_of_the_error(tmp_path):
    """A broken .json list yields one BadRecord located at the line where parsing failed."""
    p = tmp_path / "d.json"
    p.write_text('[\n {"text": "a"},\n {"text": }\n]\n')
    (bad,) = list(read_records(p))
    assert isinstance(bad, BadRecord) and str(bad).startswith(f"{p}:3: malformed JSON")


def test_json_list_records_are_numbered(tmp_path):
    """Records of a JSON list are located as `file:record N`."""
    p = tmp_path / "d.json"
    p.write_text(json.dumps([{"text": "a"}, "nope"]))
    good, bad = list(read_records(p))
    assert good.where == f"{p}:record 0" and isinstance(bad, BadRecord) and bad.where == f"{p}:record 1"


@pytest.mark.parametrize("name, message", [("d.csv", "unknown input format"), ("missing.jsonl", "no such file")])
def test_unreadable_sources_are_user_errors_naming_the_path(tmp_path, name, message):
    """Unknown formats and missing files raise LongctxError with the path."""
    p = tmp_path / name
    if name.endswith(".csv"):
        p.write_text("a,b\n")
    with pytest.raises(LongctxError, match=message) as exc:
        list(read_records(p))
    assert str(p) in str(exc.value)
