"""The model under test, from CLI flags: a local checkpoint directory, or a model behind an
OpenAI-compatible ``/chat/completions`` endpoint (vLLM, SGLang, llama.cpp's server, a hosted API).

Every evaluation calls :func:`add_model_source_args` on its parser, :func:`model_sources` for the
models named there, and :func:`open_source` (inside :func:`eval_longbench.sweep.run_sweep`, one model at
a time) to get :class:`ModelUnderTest` objects: a name, a greedy ``generate(prompt, max_new_tokens)``,
the tokenizer that lengths are counted in, and the content key that results are stored under.

Lengths with an endpoint: with ``--tokenizer DIR`` (the served model's tokenizer) prompts are
measured and cut in the served model's own tokens, as for a local checkpoint. Without it nothing
can be counted in tokens: tasks built to exact lengths (``needle``, ``ruler``) refuse to run
(:func:`require_tokenizer`), and LongBench prompts are sent whole (no middle truncation), which the
results' meta records.

Results keys (``fingerprint_key``): a checkpoint's content hash
(:func:`eval_longbench.fingerprint.model_fingerprint`); for an endpoint its origin and path, the
served model name and the tokenizer's content hash. Two different servers or served models under
one display name are therefore never mixed in one results file.
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from transformers import AutoTokenizer

from eval_longbench import models
from eval_longbench.chat_client import ChatClient, origin_str
from eval_longbench.fingerprint import model_fingerprint
from eval_longbench.flags import check_device, check_int, check_seconds
from eval_longbench.models import chat_prompt
from longctx.core.errors import LongctxError

if TYPE_CHECKING:
    from eval_longbench.models import GenerateFn


@dataclass(frozen=True)
class ModelSource:
    """Where a model under test comes from; cheap (nothing is loaded or contacted)."""

    name: str
    path: str | None = None
    endpoint: str | None = None
    served_model: str | None = None
    tokenizer_dir: str | None = None

    @property
    def is_endpoint(self) -> bool:
        return self.endpoint is not None

    @property
    def config_dir(self) -> str | None:
        """The folder holding config.json / tokenizer files: the checkpoint, or the endpoint's --tokenizer."""
        return self.tokenizer_dir if self.is_endpoint else self.path

    def window(self) -> int | None:
        """``max_position_embeddings`` from the config.json of :attr:`config_dir`, when there is one."""
        cfg = Path(self.config_dir) / "config.json" if self.config_dir else None
        if cfg is None or not cfg.is_file():
            return None
        try:
            data = json.loads(cfg.read_text(encoding="utf-8"))
            value = data.get("text_config", data).get("max_position_embeddings")  # multimodal configs nest it
        except (ValueError, AttributeError, UnicodeDecodeError):
            return None
        return value if isinstance(value, int) and value > 0 else None

    def load_tokenizer(self, trust_remote_code: bool = False):
        """The tokenizer lengths are counted in (``None`` for an endpoint without ``--tokenizer``); cheap."""
        if self.config_dir is None:
            return None
        return AutoTokenizer.from_pretrained(self.config_dir, trust_remote_code=trust_remote_code)

    def fingerprint_key(self) -> str:
        """What results are keyed by: the checkpoint's content, or endpoint + served name + tokenizer content."""
        if not self.is_endpoint:
            return model_fingerprint(self.path)
        tok = model_fingerprint(self.tokenizer_dir) if self.tokenizer_dir else "none"
        return f"endpoint {endpoint_id(self.endpoint)} model {self.served_model} tokenizer {tok}"


@dataclass
class ModelUnderTest:
    """One opened model: what every evaluation needs, whatever serves it."""

    name: str
    generate: GenerateFn
    """Greedy ``(prompt, max_new_tokens) -> reply``; the chat template is applied when asked (always for an endpoint)."""
    tokenizer: object | None
    """The tokenizer lengths are counted in; ``None`` for an endpoint without ``--tokenizer``."""
    fingerprint_key: str
    source: ModelSource
    window: int | None = None
    """The context window in tokens (``max_position_embeddings``), when known."""
    max_concurrency: int = 1
    """Prompts worth having in flight at once: 1 for a local model, ``--endpoint-concurrency`` for a server."""
    model: object | None = None
    """The Hugging Face model (local checkpoints only): for evaluations that need logits."""


def endpoint_id(url: str) -> str:
    """The endpoint as results are keyed and logged: scheme, host, port and path; no user, password or query."""
    return origin_str(url) + urllib.parse.urlsplit(url).path.rstrip("/")


def add_model_source_args(p: argparse.ArgumentParser, *, multiple: bool = False) -> None:
    """The positional MODEL(s) and the local / endpoint flags, on ``p`` (dest ``models``, a list)."""
    if multiple:
        p.add_argument("models", nargs="*", metavar="MODEL",
                       help="checkpoint directories (two or more compare side by side); or --endpoint instead")
    else:
        p.add_argument("models", nargs="?", metavar="MODEL", help="checkpoint directory; or --endpoint instead")
    add_local_model_args(p)
    g = p.add_argument_group(
        "a model behind an OpenAI-compatible endpoint, instead of MODEL",
        "Prompts go to URL/chat/completions (temperature 0; the server applies the chat template), with the\n"
        "judge's rules: retries on 429/5xx/timeouts, Retry-After capped at 60 s, one deadline per request,\n"
        "same-origin 307/308 redirects only, the key read from --api-key-env and never logged or saved.")
    g.add_argument("--endpoint", metavar="URL", help="API base, e.g. http://127.0.0.1:8000/v1 (vLLM, SGLang, llama.cpp server)")
    g.add_argument("--served-model", metavar="NAME", help="the model name the server expects (the 'model' field of requests)")
    g.add_argument("--tokenizer", metavar="DIR",
                   help="the served model's tokenizer (a Hugging Face folder): lengths are then exact in its tokens. "
                   "Without it, needle/ruler refuse (they build prompts to exact lengths) and LongBench prompts "
                   "are sent whole, without middle truncation")
    g.add_argument("--api-key-env", metavar="VAR",
                   help="environment variable holding the API key (default: none, no key is sent)")
    g.add_argument("--endpoint-timeout", type=float, default=600.0, metavar="SECONDS",
                   help="total seconds per request: connect, prefill and reply together (default: 600)")
    g.add_argument("--endpoint-tries", type=int, default=5, metavar="N", help="tries per prompt on 429/5xx/timeouts (default: 5)")
    g.add_argument("--endpoint-concurrency", type=int, default=4, metavar="N",
                   help="requests in flight at once where an evaluation can overlap them (default: 4)")


def add_local_model_args(p: argparse.ArgumentParser) -> None:
    """How a local checkpoint is loaded, and the display names of the models."""
    p.add_argument("--trust-remote-code", action="store_true", help="allow custom modeling code in the checkpoint")
    p.add_argument("--dtype", default="auto", help="auto (as saved), float32, bfloat16 or float16")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    p.add_argument("--names", help="comma-separated display names for the models (default: directory names, "
                   "or the served model name)")


def model_names(paths: list[str], names: str | None) -> list[str]:
    """Display names: ``--names`` (one per model), else directory names; repeats get ``#i`` suffixes."""
    if names:
        out = [n.strip() for n in names.split(",")]
        if len(out) != len(paths):
            raise LongctxError(f"--names: {len(out)} names for {len(paths)} models")
    else:
        out = [Path(p).name or str(p) for p in paths]
    if len(set(out)) != len(out):
        out = [f"{n}#{i}" for i, n in enumerate(out, 1)]
    return out


def check_model_source(a) -> None:
    """One-line errors for a wrong MODEL / endpoint combination, before anything loads or connects."""
    paths = _paths(a)
    if a.endpoint and paths:
        raise LongctxError(f"--endpoint: give either checkpoint directories ({', '.join(paths)}) or --endpoint, not both")
    if not a.endpoint and not paths:
        raise LongctxError("MODEL: give a checkpoint directory, or --endpoint URL --served-model NAME")
    if a.endpoint:
        if not a.served_model:
            raise LongctxError("--served-model: needed with --endpoint (the model name the server expects)")
        if a.tokenizer and not Path(a.tokenizer).is_dir():
            raise LongctxError(f"--tokenizer: {a.tokenizer}: not a directory (the served model's Hugging Face tokenizer folder)")
        if a.api_key_env and not os.environ.get(a.api_key_env):
            raise LongctxError(f"--api-key-env: ${a.api_key_env} is not set (or empty)")
        check_seconds("--endpoint-timeout", a.endpoint_timeout)
        check_int("--endpoint-tries", a.endpoint_tries)
        check_int("--endpoint-concurrency", a.endpoint_concurrency)
        ChatClient(a.endpoint, a.served_model, timeout=a.endpoint_timeout, max_tries=a.endpoint_tries)  # checks the URL
    else:
        for flag in ("served_model", "tokenizer", "api_key_env"):
            if getattr(a, flag):
                raise LongctxError(f"--{flag.replace('_', '-')}: only with --endpoint")
        check_device(a.device)


def require_tokenizer(a, task: str) -> None:
    """Refuse an endpoint without ``--tokenizer`` for a task whose prompts are built to exact token lengths."""
    if a.endpoint and not a.tokenizer:
        raise LongctxError(f"--tokenizer: {task} builds prompts to exact lengths in the served model's tokens; "
                           "pass --tokenizer DIR (the served model's tokenizer folder)")


def refuse_endpoint(a, task: str, why: str) -> None:
    """One line for evaluations an endpoint cannot serve (e.g. perplexity needs logits)."""
    if getattr(a, "endpoint", None):
        raise LongctxError(f"--endpoint: {task} {why}; pass a checkpoint directory instead")


def _paths(a) -> list[str]:
    m = a.models
    return [] if m is None else [m] if isinstance(m, str) else list(m)


def input_paths(a) -> list[str | None]:
    """Local files the model source reads (for :func:`longctx.core.io.check_out_vs_inputs`)."""
    return [*_paths(a), getattr(a, "tokenizer", None)]


def model_sources(a) -> list[ModelSource]:
    """The models named on the command line (checked first), with their display names."""
    check_model_source(a)
    if a.endpoint:
        name = model_names([a.served_model], a.names)[0] if a.names else a.served_model
        return [ModelSource(name, endpoint=a.endpoint, served_model=a.served_model, tokenizer_dir=a.tokenizer)]
    paths = _paths(a)
    return [ModelSource(n, path=p) for p, n in zip(paths, model_names(paths, a.names))]


def bind_sources(store, sources: list[ModelSource]) -> None:
    """Tie each model name in ``store`` to its content key before anything loads: a rerun with
    other weights, another server or another served model under the same name is refused."""
    for src in sources:
        store.bind_model(src.name, src.fingerprint_key())


def open_source(a, src: ModelSource, *, chat: bool = True) -> ModelUnderTest:
    """Load ``src`` (a checkpoint) or connect it (an endpoint: nothing is sent until the first prompt)."""
    if not src.is_endpoint:
        model, tok = models.load_model(src.path, trust_remote_code=a.trust_remote_code, dtype=a.dtype, device=a.device)
        return ModelUnderTest(src.name, models.hf_generate_fn(model, tok, chat=chat), tok, src.fingerprint_key(), src,
                              window=src.window(), model=model)
    key = os.environ.get(a.api_key_env) if a.api_key_env else None
    client = ChatClient(a.endpoint, a.served_model, api_key=key or None, timeout=a.endpoint_timeout,
                        max_tries=a.endpoint_tries)
    return ModelUnderTest(src.name, client.generate_fn(), src.load_tokenizer(a.trust_remote_code), src.fingerprint_key(),
                          src, window=src.window(), max_concurrency=a.endpoint_concurrency)


def prompt_overhead(tokenizer) -> int:
    """Tokens the chat template adds around a user message (0 without a template)."""
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        return 0
    return len(tokenizer(chat_prompt(tokenizer, ""), add_special_tokens=False)["input_ids"])
