"""A trainer config key is one field in ``longctx/train/config.py`` plus the code that reads it (2 files;
a memory-relevant key also tells the planner, ``longctx/plan/options.py``: 3). Everything else a user meets
— YAML, ``--set``, ``longctx train --help``, the resolved config beside the checkpoints, the resume check
that refuses a changed run — is derived from the dataclass fields, which this test shows by adding a toy
field to a copy of the config module and touching nothing else."""

from __future__ import annotations

import importlib
import inspect

import pytest

import longctx.train.config as real

TOY = '''    toy_key: int = 7
    """A toy key added by tests/train/test_config_keys.py."""
'''


@pytest.fixture
def toy_config(tmp_path, monkeypatch):
    """``longctx/train/config.py`` with one more field in ``TrainConfig``, imported as ``toy_config``."""
    source = inspect.getsource(real)
    head = "class TrainConfig:\n"
    assert source.count(head) == 1
    (tmp_path / "toy_config.py").write_text(source.replace(head, head + TOY))
    monkeypatch.syspath_prepend(str(tmp_path))
    return importlib.import_module("toy_config")


def test_a_toy_config_key_is_read_from_yaml_and_set(toy_config, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  toy_key: 3\n")
    assert toy_config.load_config(path, validate_now=False).train.toy_key == 3
    assert toy_config.load_config(path, ["train.toy_key=9"], validate_now=False).train.toy_key == 9
    assert toy_config.load_config(None, ["toy_key=5"], validate_now=False).train.toy_key == 5  # unique bare name


def test_a_toy_config_key_has_its_type_checked_naming_it(toy_config):
    with pytest.raises(real.LongctxError, match="train.toy_key"):
        toy_config.load_config(None, ["train.toy_key=many"], validate_now=False)


def test_a_toy_config_key_is_documented_in_help_and_written_beside_the_checkpoints(toy_config):
    assert "toy key added" in toy_config.field_docs()["TrainConfig.toy_key"]
    assert "toy_key: 7" in toy_config.dump_yaml(toy_config.RunConfig())


def test_a_changed_toy_config_key_is_a_resume_change(toy_config):
    saved = toy_config.RunConfig().to_dict()
    current = toy_config.load_config(None, ["train.toy_key=8"], validate_now=False)
    assert ("train.toy_key", 7, 8) in toy_config.config_changes(saved, current)
