"""An LLM judge that rates an answer 1-10 against a reference, as LongBench-Chat does.

Two back ends share one retry loop: any OpenAI-compatible ``/chat/completions`` endpoint (the shared
client of :mod:`eval_longbench.chat_client`, which holds the retry, timeout, redirect and key rules)
and a local Hugging Face model. The rating is the number in the *last* ``[[n]]`` of the reply
(judges often quote the format before answering); an unparseable reply is retried like a 5xx.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar

from eval_longbench.chat_client import (  # noqa: F401  (re-exported: the judge's public names)
    ERROR_BODY_CHARS,
    MAX_WAIT,
    ChatClient,
    EndpointUnreachable,
    TransientError,
    call_with_retries,
    map_concurrent,
    redact,
    redact_and_cut,
)
from eval_longbench.models import hf_generate_fn
from longctx.core.console import stderr_line
from longctx.core.errors import LongctxError

JudgeUnreachable = EndpointUnreachable
"""The judge never answered (connection refused / DNS / timeouts on every try)."""
TransientJudgeError = TransientError

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


@dataclass
class Rating:
    score: float | None
    reply: str
    attempts: int
    error: str | None = None


@dataclass
class OpenAIJudge(ChatClient):
    """The shared chat-completions client (:class:`~eval_longbench.chat_client.ChatClient`) under the judge's flags."""

    timeout: float = 120.0
    role: ClassVar[str] = "judge"
    url_flag: ClassVar[str] = "--judge-url"
    model_flag: ClassVar[str] = "--judge-model"
    timeout_flag: ClassVar[str] = "--judge-timeout"
    tries_flag: ClassVar[str] = "--judge-tries"

    def rate(self, prompt: str, system: str = JUDGE_SYSTEM) -> Rating:
        return rate_with_retries(lambda: self.complete(system, prompt), self.max_tries, self.backoff, self.sleep)


def rate_with_retries(call: Callable[[], str], max_tries: int, backoff: float, sleep: Callable[[float], None],
                      log: Callable[[str], None] = stderr_line) -> Rating:
    """Call the judge until a rating parses (the shared retry rules of :func:`call_with_retries`);
    after ``max_tries`` failures the rating is ``None`` with the last error."""
    out = call_with_retries(call, parse_rating, max_tries, backoff, sleep, log=log, what="judge",
                            unparsed="no [[rating]] within 1-10 in the reply")
    return Rating(out.value, out.reply, out.attempts, out.error)


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
        gen = hf_generate_fn(self.model, self.tokenizer, chat=True, system=system)
        return rate_with_retries(lambda: gen(prompt, self.max_new_tokens), self.max_tries, 0.0, lambda s: None)


def rate_many(judge, prompts: dict[str, str], on_result: Callable[[str, Rating], None], *, concurrency: int = 4) -> None:
    """Rate every prompt with at most ``concurrency`` requests in flight (one for a local judge);
    ``on_result`` runs in the caller's thread as each finishes (so results are saved as they come).
    An unreachable judge stops the run after the finished ones are saved."""
    workers = max(1, min(concurrency, getattr(judge, "max_concurrency", concurrency)))
    map_concurrent(judge.rate, prompts, on_result, concurrency=workers)
