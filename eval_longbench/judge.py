"""An LLM judge that rates an answer 1-10 against a reference, as LongBench-Chat does.

Two back ends share one retry loop: any OpenAI-compatible ``/chat/completions`` endpoint (plain
``urllib``, no SDK) and a local Hugging Face model. The rating is the number in the *last*
``[[n]]`` of the reply (judges often quote the format before answering). 429, 5xx, timeouts,
dropped connections and unparseable replies are retried with exponential backoff; other HTTP
errors (401, 400) are not, since retrying cannot fix them.

The API key is read from an environment variable by the caller, kept out of ``repr`` and
redacted from every reply and error text this module returns.
"""

from __future__ import annotations

import json
import random
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import ClassVar
from dataclasses import dataclass, field

from longctx.errors import LongctxError

JUDGE_SYSTEM = "You are a careful and impartial grader of answers to questions about long documents."

# Our own wording of LongBench-Chat's judging instructions (reference + three scored examples).
JUDGE_TEMPLATE = """Please act as an impartial judge and rate the quality of an AI assistant's answer to a user's question about a long document, which you do not see. Use the reference answer as the standard: reward answers that are correct, complete and faithful to it, and penalise factual errors, omissions, invented content and needless length. A correct but incomplete answer deserves a middling score; a wrong or off-topic answer deserves a low one.

Three answers to the same question have already been rated. Use them to calibrate your scale.

[Question]
{question}

[Reference answer]
{reference}

{examples}

[Answer to rate]
{prediction}

First explain briefly how the answer compares with the reference. Then give a rating from 1 to 10, written exactly in this format: "[[rating]]", for example "Rating: [[6]]"."""

NEEDLE_JUDGE_TEMPLATE = """Please act as an impartial judge. A model was asked a question about a long text; compare its answer with the reference answer.

[Question]
{question}

[Reference answer]
{reference}

[Model answer]
{prediction}

Rate from 1 (wrong or unrelated) to 10 (fully correct and matching the reference), written exactly as "[[rating]]"."""

_RATING = re.compile(r"\[\[([^\[\]]*)\]\]")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def build_judge_prompt(question: str, reference: str, examples: Iterable[dict], prediction: str) -> str:
    """The judge's user message: question, reference, the scored few-shot examples, the answer to rate."""
    blocks = []
    for i, ex in enumerate(examples, 1):
        blocks.append(f"[Rated answer {i}]\n{ex['answer']}\nRating: [[{ex['score']}]]")
    if not blocks:
        raise LongctxError("judge prompt: no few-shot examples given")
    return JUDGE_TEMPLATE.format(question=question, reference=reference, examples="\n\n".join(blocks), prediction=prediction)


def parse_rating(reply: str) -> float | None:
    """The first number inside the *last* ``[[...]]`` of ``reply``, if within 1-10; else ``None``."""
    found = _RATING.findall(reply or "")
    if not found:
        return None
    m = _NUMBER.search(found[-1])
    if not m:
        return None
    value = float(m.group(0))
    return value if 1.0 <= value <= 10.0 else None


def redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


class TransientJudgeError(Exception):
    """Worth retrying: 429, 5xx, timeout, dropped connection, unparseable reply."""


class JudgeUnreachable(LongctxError):
    """The endpoint never answered (connection refused / DNS / timeouts on every try)."""


@dataclass
class Rating:
    score: float | None
    reply: str
    attempts: int
    error: str | None = None


@dataclass
class OpenAIJudge:
    """Chat-completions client. ``url`` is the API base (``.../v1``) or the full endpoint."""

    url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 120.0
    max_tries: int = 5
    backoff: float = 1.0
    """Seconds before the second try; doubles each try (capped at 60 s), with jitter; Retry-After wins."""
    max_tokens: int = 1024
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    @property
    def endpoint(self) -> str:
        u = self.url.rstrip("/")
        return u if u.endswith("/chat/completions") else u + "/chat/completions"

    def complete(self, system: str, user: str) -> str:
        """One request; raises :class:`TransientJudgeError` for retryable failures."""
        body = json.dumps({
            "model": self.model, "temperature": 0, "max_tokens": self.max_tokens,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        }).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.endpoint, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as e:
            detail = redact(e.read(300).decode("utf-8", "replace"), self.api_key)
            msg = f"judge at {self.endpoint}: HTTP {e.code}: {detail.strip()}"
            if e.code in (401, 403, 404):  # wrong key, URL or model: every case would fail the same way
                raise LongctxError(msg + " (check --judge-url, --judge-model and the key variable)") from None
            exc = TransientJudgeError(msg) if e.code == 429 or e.code >= 500 else _Rejected(msg)
            exc.retry_after = _retry_after(e.headers.get("Retry-After"))
            raise exc from None
        except urllib.error.URLError as e:
            if isinstance(e.reason, (socket.timeout, TimeoutError)):
                raise TransientJudgeError(f"judge at {self.endpoint}: timed out after {self.timeout} s") from None
            raise _Unreachable(f"judge at {self.endpoint}: unreachable ({e.reason})") from None
        except (socket.timeout, TimeoutError):
            raise TransientJudgeError(f"judge at {self.endpoint}: timed out after {self.timeout} s") from None
        except (ConnectionError, OSError) as e:  # e.g. the server dropped the connection mid-reply
            raise TransientJudgeError(f"judge at {self.endpoint}: connection lost ({e.__class__.__name__})") from None
        try:
            return redact(json.loads(payload)["choices"][0]["message"]["content"], self.api_key)
        except (ValueError, KeyError, IndexError, TypeError):
            raise TransientJudgeError(f"judge at {self.endpoint}: malformed response (no choices[0].message.content)") from None

    def rate(self, prompt: str, system: str = JUDGE_SYSTEM) -> Rating:
        return rate_with_retries(lambda: self.complete(system, prompt), self.max_tries, self.backoff, self.sleep)


class _Unreachable(TransientJudgeError):
    pass


class _Rejected(Exception):
    """A 4xx other than auth/not-found (e.g. prompt too long): this case fails, the run goes on."""


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def rate_with_retries(call: Callable[[], str], max_tries: int, backoff: float, sleep: Callable[[float], None]) -> Rating:
    """Call the judge until a rating parses. Fatal errors (4xx) propagate; after ``max_tries``
    transient failures the rating is ``None`` with the last error, or :class:`JudgeUnreachable`
    when no try ever reached the server."""
    last_reply, last_error, reached = "", None, False
    for attempt in range(1, max_tries + 1):
        try:
            reply = call()
            reached = True
            score = parse_rating(reply)
            if score is not None:
                return Rating(score, reply, attempt)
            last_reply, last_error, wait = reply, "no [[rating]] within 1-10 in the reply", None
        except _Rejected as e:
            return Rating(None, "", attempt, str(e))
        except _Unreachable as e:
            last_error, wait = str(e), None
        except TransientJudgeError as e:
            reached, last_error, wait = True, str(e), getattr(e, "retry_after", None)
        if attempt < max_tries:
            delay = wait if wait is not None else min(60.0, backoff * 2 ** (attempt - 1)) * (1 + 0.25 * random.random())
            sleep(delay)
    if not reached:
        raise JudgeUnreachable(f"{last_error} after {max_tries} tries")
    return Rating(None, last_reply, max_tries, last_error)


@dataclass
class LocalJudge:
    """A local Hugging Face chat model as an offline judge (greedy, through its chat template)."""

    model: object
    tokenizer: object
    max_new_tokens: int = 512
    max_tries: int = 2
    # One model generating from several threads at once only contends for the same cores/GPU.
    max_concurrency: ClassVar[int] = 1

    def rate(self, prompt: str, system: str = JUDGE_SYSTEM) -> Rating:
        from eval_longbench.models import hf_generate_fn

        gen = hf_generate_fn(self.model, self.tokenizer, chat=True, system=system)
        return rate_with_retries(lambda: gen(prompt, self.max_new_tokens), self.max_tries, 0.0, lambda s: None)


def rate_many(judge, prompts: dict[str, str], on_result: Callable[[str, Rating], None], *, concurrency: int = 4) -> None:
    """Rate every prompt with at most ``concurrency`` requests in flight; ``on_result`` runs in the
    caller's thread as each finishes (so results are saved as they come). An unreachable judge
    stops the run after the finished ones are saved."""
    if not prompts:
        return
    workers = max(1, min(concurrency, getattr(judge, "max_concurrency", concurrency)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(judge.rate, p): k for k, p in prompts.items()}
        try:
            for fut in as_completed(futures):
                on_result(futures[fut], fut.result())
        except BaseException:
            for f in futures:
                f.cancel()
            raise
