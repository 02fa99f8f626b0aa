"""packing.readers: every record carries its location; malformed input is reported, not raised mid-stream."""

import json

import pytest

from longctx.core.errors import LongctxError
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


def test_lone_utf16_surrogate_is_a_bad_record_naming_file_line_and_field(tmp_path):
    """`"\\ud800"` parses in Python but is not text (no UTF-8 for it): it used to reach the tokenizer as a
    traceback; now a BadRecord at file:line naming the field. A proper surrogate pair is fine."""
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "ok \\ud83d\\ude00"}\n'
                 '{"messages": [{"role": "user", "content": "x \\ud800 y"}]}\n')
    good, bad = list(read_records(p))
    assert isinstance(good, Record) and good.data["text"] == "ok \U0001F600"
    assert isinstance(bad, BadRecord) and bad.reason == "lone surrogate"
    assert str(bad).startswith(f"{p}:2: messages[0].content: a lone UTF-16 surrogate")


def test_lone_surrogate_in_a_json_list_is_a_bad_record(tmp_path):
    """The same check for .json lists, located by record index."""
    p = tmp_path / "d.json"
    p.write_text('[{"text": "a"}, {"text": "\\udc00"}]')
    good, bad = list(read_records(p))
    assert isinstance(bad, BadRecord) and bad.where == f"{p}:record 1" and bad.reason == "lone surrogate"


def test_non_utf8_line_is_one_bad_record_at_its_line_and_reading_goes_on(tmp_path):
    """A Latin-1 byte on line 2 used to raise UnicodeDecodeError for the whole file; now line 2 is a
    BadRecord naming the byte and the next lines are still read."""
    p = tmp_path / "d.jsonl"
    p.write_bytes(b'{"text": "a"}\n{"text": "caf\xe9"}\n{"text": "b"}\n')
    recs = list(read_records(p))
    assert [type(r).__name__ for r in recs] == ["Record", "BadRecord", "Record"]
    assert str(recs[1]) == f"{p}:2: not valid UTF-8 (byte 0xe9 at byte column 14); re-encode the file as UTF-8"
    assert recs[1].reason == "not UTF-8"


def test_non_utf8_json_file_is_a_bad_record_at_the_line_of_the_byte(tmp_path):
    """A .json list with an undecodable byte: one BadRecord at the line holding it."""
    p = tmp_path / "d.json"
    p.write_bytes(b'[\n {"text": "a"},\n {"text": "\xff"}\n]\n')
    (bad,) = list(read_records(p))
    assert isinstance(bad, BadRecord) and bad.where == f"{p}:3" and bad.reason == "not UTF-8"


def test_utf8_byte_order_mark_on_the_first_line_is_accepted(tmp_path):
    """Editors on Windows write a BOM; it is not part of the first record."""
    p = tmp_path / "d.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"text": "a"}\n')
    (rec,) = list(read_records(p))
    assert isinstance(rec, Record) and rec.data == {"text": "a"}
