"""The judge flags of the evaluations that rate answers with an LLM (``needle --scoring judge``,
``longbench-chat``): one flag group, its checks, the judge it builds and the key its ratings are stored
under. Private (``_``): a helper of two subcommands, not a subcommand.
"""

from __future__ import annotations

import argparse
import os

from eval_longbench import models
from eval_longbench.fingerprint import model_fingerprint
from eval_longbench.flags import check_int, check_seconds
from eval_longbench.judge import LocalJudge, OpenAIJudge
from eval_longbench.model_source import endpoint_id
from longctx.core.errors import LongctxError


def add_judge_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("judge (an OpenAI-compatible chat-completions endpoint, or a local model)")
    g.add_argument("--judge-url", help="API base, e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1")
    g.add_argument("--judge-model", default="gpt-4o", help="model name sent to the endpoint (default: gpt-4o)")
    g.add_argument("--judge-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the API key (default: OPENAI_API_KEY); the key is never logged or saved")
    g.add_argument("--judge-local", metavar="DIR", help="use a local Hugging Face chat model as the judge instead (offline)")
    g.add_argument("--judge-timeout", type=float, default=120.0,
                   help="total seconds per request: connect, headers and reply together (default: 120)")
    g.add_argument("--judge-tries", type=int, default=5,
                   help="tries per case on 429/5xx/timeouts/unparseable replies; waits between tries follow the "
                   "back-off or the server's Retry-After, capped at 60 s (default: 5)")
    g.add_argument("--concurrency", type=int, default=4, help="judge requests in flight at once (default: 4)")


def check_judge_args(a: argparse.Namespace) -> None:
    check_seconds("--judge-timeout", a.judge_timeout)
    check_int("--judge-tries", a.judge_tries)
    check_int("--concurrency", a.concurrency)


def build_judge(a: argparse.Namespace) -> OpenAIJudge | LocalJudge | None:
    """The judge object from flags, or ``None`` when none was asked for."""
    if a.judge_url and a.judge_local:
        raise LongctxError("--judge-url and --judge-local: choose one")
    if a.judge_local:
        # `models.load_model`, looked up at call time: tests replace it to prove a bad flag loads nothing
        return LocalJudge(*models.load_model(a.judge_local, trust_remote_code=a.trust_remote_code, dtype=a.dtype,
                                             device=a.device))
    if a.judge_url:
        key = os.environ.get(a.judge_key_env) or None
        if key is None:
            print(f"note: ${a.judge_key_env} is not set; calling the judge without an API key")
        return OpenAIJudge(a.judge_url, a.judge_model, api_key=key, timeout=a.judge_timeout, max_tries=a.judge_tries)
    return None


def judge_key(a: argparse.Namespace) -> str:
    """What a judge's scores are keyed by: its endpoint and model, or its local checkpoint's content."""
    if a.judge_local:
        return f"local {model_fingerprint(a.judge_local)}"
    return f"endpoint {endpoint_id(a.judge_url)} model {a.judge_model}"
