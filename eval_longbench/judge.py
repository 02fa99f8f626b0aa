"""An LLM judge that rates an answer 1-10 against a reference, as LongBench-Chat does.

Two back ends share one retry loop: any OpenAI-compatible ``/chat/completions`` endpoint (plain
``urllib``, no SDK) and a local Hugging Face model. The rating is the number in the *last*
``[[n]]`` of the reply (judges often quote the format before answering). 429, 5xx, timeouts,
dropped connections and unparseable replies are retried with exponential backoff; other HTTP
errors (401, 400) are not, since retrying cannot fix them.

The API key is read from an environment variable by the caller, kept out of ``repr`` and
redacted from every reply and error text this module returns (before any text is cut, and a
key prefix left at the end of a cut text too). It is only ever sent to ``url``'s origin
(scheme, host, port): a redirect to another origin is refused, not followed; a same-origin 307/308
is followed (the POST and its body are kept), any other redirect is refused (it would turn the POST
into a GET, which no chat-completions endpoint answers).

Never hang: each request has one total deadline (``timeout``: connect, headers and body together;
a server dripping its reply byte by byte is cut off), and waits between tries (the back-off, or the
server's ``Retry-After``) are capped at :data:`MAX_WAIT` seconds.
"""

from __future__ import annotations

import http.client
import json
import math
import random
import re
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
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


MAX_WAIT = 60.0
"""Seconds: the longest wait between two tries, whatever the back-off or ``Retry-After`` says."""

ERROR_BODY_CHARS = 300
"""How much of an HTTP error body goes into an error message (after redaction)."""

MIN_KEY_PREFIX = 4
"""A cut text ending in this many or more leading characters of the key has that tail redacted."""

_BEARER = re.compile(r"(Bearer\s+)[^\s\"',;}\]]+", re.IGNORECASE)


def redact(text: str, secret: str | None) -> str:
    """``text`` without ``secret``; also without any ``Bearer <token>`` (an echoed Authorization header)."""
    if secret:
        text = text.replace(secret, "***")
    return _BEARER.sub(r"\1***", text)


def redact_and_cut(text: str, secret: str | None, limit: int = ERROR_BODY_CHARS) -> str:
    """``text`` redacted, *then* cut to ``limit`` characters; a key prefix (>= :data:`MIN_KEY_PREFIX`
    characters) left at the end of the cut is redacted too."""
    text = redact(text, secret)
    if len(text) <= limit:
        return text
    text = text[:limit]
    if secret:
        for n in range(min(len(secret), len(text)), MIN_KEY_PREFIX - 1, -1):
            if text.endswith(secret[:n]):
                return text[:-n] + "***"
    return text


def origin(url: str) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` of ``url``, the port made explicit (80 / 443) for http(s)."""
    u = urllib.parse.urlsplit(url)
    scheme = u.scheme.lower()
    try:
        port = u.port
    except ValueError:
        port = None
    return scheme, (u.hostname or "").lower(), port or {"http": 80, "https": 443}.get(scheme)


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
    """Total seconds per request (connect, headers and body together)."""
    max_tries: int = 5
    backoff: float = 1.0
    """Seconds before the second try; doubles each try, with jitter; Retry-After wins; every wait capped at MAX_WAIT."""
    max_tokens: int = 1024
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def __post_init__(self):
        if not (isinstance(self.timeout, (int, float)) and math.isfinite(self.timeout) and self.timeout > 0):
            raise LongctxError(f"--judge-timeout: must be a finite number of seconds above 0, got {self.timeout}")
        if self.max_tries < 1:
            raise LongctxError(f"--judge-tries: must be at least 1, got {self.max_tries}")
        if origin(self.url)[0] not in ("http", "https") or not origin(self.url)[1]:
            raise LongctxError(f"--judge-url: {self.url!r} is not an http(s) URL (e.g. https://api.openai.com/v1)")

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
        dog = _Deadline(self.timeout)
        opener = urllib.request.build_opener(_WatchedHTTP(dog), _WatchedHTTPS(dog), _SameOriginRedirects(self.endpoint))
        try:
            with opener.open(req, timeout=self.timeout) as resp:
                payload = resp.read()
            if dog.fired:  # a body without Content-Length ends "cleanly" when the deadline shuts the socket
                raise self._timed_out()
        except urllib.error.HTTPError as e:
            try:
                raw = e.read(64 * 1024)
            except (OSError, http.client.HTTPException):
                raw = b""
            if dog.fired:
                raise self._timed_out() from None
            detail = redact_and_cut(raw.decode("utf-8", "replace").strip(), self.api_key)
            msg = f"judge at {self.endpoint}: HTTP {e.code}: {detail}"
            if e.code in (401, 403, 404):  # wrong key, URL or model: every case would fail the same way
                raise LongctxError(msg + " (check --judge-url, --judge-model and the key variable)") from None
            exc = TransientJudgeError(msg) if e.code == 429 or e.code >= 500 else _Rejected(msg)
            exc.retry_after = e.headers.get("Retry-After") if e.headers is not None else None
            raise exc from None
        except urllib.error.URLError as e:
            if dog.fired or isinstance(e.reason, (socket.timeout, TimeoutError)):
                raise self._timed_out() from None
            raise _Unreachable(f"judge at {self.endpoint}: unreachable ({redact(str(e.reason), self.api_key)})") from None
        except (socket.timeout, TimeoutError):
            raise self._timed_out() from None
        except (ConnectionError, OSError, http.client.HTTPException) as e:  # e.g. the server dropped the connection mid-reply
            if dog.fired:
                raise self._timed_out() from None
            raise TransientJudgeError(f"judge at {self.endpoint}: connection lost ({e.__class__.__name__})") from None
        finally:
            dog.cancel()
        try:
            return redact(json.loads(payload)["choices"][0]["message"]["content"], self.api_key)
        except (ValueError, KeyError, IndexError, TypeError):
            raise TransientJudgeError(f"judge at {self.endpoint}: malformed response (no choices[0].message.content)") from None

    def _timed_out(self) -> "TransientJudgeError":
        return TransientJudgeError(f"judge at {self.endpoint}: no complete reply within {self.timeout:g} s")

    def rate(self, prompt: str, system: str = JUDGE_SYSTEM) -> Rating:
        return rate_with_retries(lambda: self.complete(system, prompt), self.max_tries, self.backoff, self.sleep)


class _Deadline:
    """One request's total deadline: when it passes, every socket the request opened is shut down,
    so a read blocked on a dripping server returns at once (a socket timeout alone restarts on
    every byte)."""

    def __init__(self, seconds: float):
        self.fired = False
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock) -> None:
        with self._lock:
            self._socks.append(sock)
            if self.fired:
                _shutdown(sock)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            for sock in self._socks:
                _shutdown(sock)

    def cancel(self) -> None:
        self._timer.cancel()


def _shutdown(sock) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _watched(base: type, dog: _Deadline) -> type:
    class Watched(base):
        def connect(self):
            super().connect()
            dog.watch(self.sock)

    return Watched


class _WatchedHTTP(urllib.request.HTTPHandler):
    def __init__(self, dog: _Deadline):
        super().__init__()
        self._dog = dog

    def http_open(self, req):
        return self.do_open(_watched(http.client.HTTPConnection, self._dog), req)


class _WatchedHTTPS(urllib.request.HTTPSHandler):
    def __init__(self, dog: _Deadline):
        super().__init__()
        self._dog = dog

    def https_open(self, req):
        kw = {"context": self._context}
        if hasattr(self, "_check_hostname"):  # Python < 3.12
            kw["check_hostname"] = self._check_hostname
        return self.do_open(_watched(http.client.HTTPSConnection, self._dog), req, **kw)


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a 307/308 to the same origin (the POST, its body and the key go again); refuse any
    other redirect with a one-line error, so the key never reaches another origin."""

    def __init__(self, endpoint: str):
        super().__init__()
        self._endpoint = endpoint

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        fp.close()
        if origin(newurl) != origin(self._endpoint):
            raise LongctxError(
                f"judge at {self._endpoint}: HTTP {code} redirects to another origin ({_origin_str(newurl)}); "
                "refused, the API key is only sent to --judge-url's origin (pass the new URL as --judge-url if you trust it)")
        if code not in (307, 308):
            raise LongctxError(
                f"judge at {self._endpoint}: HTTP {code} redirects to {newurl}, which would turn the POST into a GET; "
                "refused (pass the new URL as --judge-url)")
        return urllib.request.Request(newurl, data=req.data, headers=dict(req.headers), method="POST",
                                      origin_req_host=req.origin_req_host, unverifiable=True)


def _origin_str(url: str) -> str:
    scheme, host, port = origin(url)
    return f"{scheme}://{host}:{port}" if port else f"{scheme}://{host}"


class _Unreachable(TransientJudgeError):
    pass


class _Rejected(Exception):
    """A 4xx other than auth/not-found (e.g. prompt too long): this case fails, the run goes on."""


def _retry_after(value) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds form), or ``None`` when absent or not a
    finite number >= 0 (an HTTP date, ``-1``, ``nan``, garbage): then the normal back-off applies."""
    if value is None:
        return None
    try:
        seconds = float(str(value).strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def rate_with_retries(call: Callable[[], str], max_tries: int, backoff: float, sleep: Callable[[float], None],
                      log: Callable[[str], None] = _stderr) -> Rating:
    """Call the judge until a rating parses. Fatal errors (4xx) propagate; after ``max_tries``
    transient failures the rating is ``None`` with the last error, or :class:`JudgeUnreachable`
    when no try ever reached the server. Waits between tries never exceed :data:`MAX_WAIT`; a
    longer ``Retry-After`` is capped, and ``log`` says so."""
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
            reached, last_error, wait = True, str(e), _retry_after(getattr(e, "retry_after", None))
        if attempt < max_tries:
            if wait is not None and wait > MAX_WAIT:
                log(f"judge: Retry-After {wait:g} s capped at {MAX_WAIT:g} s")
            delay = wait if wait is not None else backoff * 2 ** (attempt - 1) * (1 + 0.25 * random.random())
            sleep(min(MAX_WAIT, delay))
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
