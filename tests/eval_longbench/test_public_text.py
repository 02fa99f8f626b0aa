"""eval_longbench.public_text: a SWORD zText module (Debian's sword-text-web) read as plain text, offline."""

from __future__ import annotations

import struct

import pytest
from support.sword import write_module

from eval_longbench.public_text import (
    osis_to_text,
    read_sword_ztext,
    world_english_bible,
)
from longctx.core.errors import LongctxError

OT = [('<chapter osisID="Gen.1" sID="Gen.1"/><div type="x-p" sID="p1"/>In the <w lemma="x">beginning</w>, God '
       'created the heavens and the earth.<div eID="p1"/>'),
      ' The earth was formless<note placement="foot"><reference>1:2 </reference>or, void</note> and empty.']
NT = ['<title type="main">Matthew</title>The book of the genealogy &amp; more.']


def test_a_ztext_module_reads_as_running_text_in_testament_order_without_notes(tmp_path):
    write_module(tmp_path, "nt", NT)
    write_module(tmp_path, "ot", OT)
    assert read_sword_ztext(tmp_path) == ("In the beginning, God created the heavens and the earth. The earth was "
                                          "formless and empty. Matthew The book of the genealogy & more.")


def test_inline_tags_join_words_and_block_tags_separate_them():
    assert osis_to_text("a<w>b</w>c<lb/>d<milestone type='x'/>e") == "abc d e"


def test_a_folder_without_a_module_names_the_apt_command(tmp_path):
    with pytest.raises(LongctxError, match=r"no SWORD zText module here.*apt-get install sword-text-web"):
        read_sword_ztext(tmp_path)
    with pytest.raises(LongctxError, match=r"not installed; apt-get install sword-text-web"):
        world_english_bible(tmp_path / "absent")


def test_a_corrupt_block_is_one_line_naming_the_file(tmp_path):
    (tmp_path / "ot.bzs").write_bytes(struct.pack("<III", 0, 5, 10))
    (tmp_path / "ot.bzz").write_bytes(b"12345")
    with pytest.raises(LongctxError, match=r"ot\.bzz: block 0 does not decompress"):
        read_sword_ztext(tmp_path)
