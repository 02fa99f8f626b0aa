"""longctx.core.io.read_json: every way a user's JSON file can be wrong is one line naming the file."""

from __future__ import annotations

import pytest

from longctx.core.errors import LongctxError
from longctx.core.io import read_json


def test_read_json_returns_the_parsed_object(tmp_path):
    p = tmp_path / "c.json"
    p.write_text('{"a": [1, 2]}')
    assert read_json(p) == {"a": [1, 2]}


def test_a_missing_file_names_the_file_and_what_it_should_be(tmp_path):
    with pytest.raises(LongctxError, match=r"nope\.json: missing \(not a checkpoint\)$"):
        read_json(tmp_path / "nope.json", missing="missing (not a checkpoint)")


def test_malformed_json_names_the_file_and_line(tmp_path):
    p = tmp_path / "c.json"
    p.write_text('{\n  "a": 1,\n  "b": \n}')
    with pytest.raises(LongctxError, match=r"c\.json:4: not valid JSON"):
        read_json(p)


def test_non_utf8_bytes_are_a_one_line_error(tmp_path):
    p = tmp_path / "c.json"
    p.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(LongctxError, match=r"c\.json: not UTF-8 text \(byte 0xff at offset 7\); expected a JSON file"):
        read_json(p)


def test_the_wrong_top_level_type_is_refused(tmp_path):
    p = tmp_path / "c.json"
    p.write_text("[1, 2]")
    with pytest.raises(LongctxError, match=r"c\.json: expected a JSON object, got list"):
        read_json(p)
    assert read_json(p, kind=list) == [1, 2]
    assert read_json(p, kind=None) == [1, 2]
