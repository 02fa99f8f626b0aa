"""One OpenAI-compatible ``/chat/completions`` client, shared by the LLM judge and by endpoint models.

Plain ``urllib``, no SDK. One home for every rule about talking to a server we do not control:

- **Retries**: 429, 5xx, timeouts, dropped connections and malformed replies are retried with
  exponential back-off (or the server's ``Retry-After``); every wait is capped at :data:`MAX_WAIT`
  seconds, and the cap is logged. 401/403/404 (wrong key, URL or model) stop the run at once;
  other 4xx (e.g. a prompt too long) fail that one request, since retrying cannot fix them.
- **Never hang**: each request has one total deadline (``timeout``: connect, headers and body
  together; a server dripping its reply byte by byte is cut off).
- **The key**: read from an environment variable by the caller, kept out of ``repr``, sent only to
  ``url``'s origin (scheme, host, port), and redacted from every reply and error text returned
  (before any text is cut, and a key prefix left at the end of a cut text too). A redirect to
  another origin is refused, not followed; a same-origin 307/308 is followed (the POST and its body
  are kept); any other redirect is refused (it would turn the POST into a GET).
- **Concurrency**: :func:`map_concurrent` keeps at most N requests in flight and hands each result
  back in the caller's thread, so results are saved as they come.

:class:`ChatClient` is the model-under-test flavour (flags ``--endpoint`` ...);
:class:`eval_longbench.judge.OpenAIJudge` is the same client with the judge's flags and a rating parser.
"""

from __future__ import annotations

import http.client
import json
import math
import random
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, ClassVar

from longctx.core.console import stderr_line
from longctx.core.errors import LongctxError

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


def origin_str(url: str) -> str:
    """``scheme://host:port`` of ``url`` (no user, path or query: safe to log and to key results by)."""
    scheme, host, port = origin(url)
    return f"{scheme}://{host}:{port}" if port else f"{scheme}://{host}"


class TransientError(Exception):
    """Worth retrying: 429, 5xx, timeout, dropped connection, malformed or unparseable reply."""


class EndpointUnreachable(LongctxError):
    """The endpoint never answered (connection refused / DNS / timeouts on every try)."""


class GenerationFailed(LongctxError):
    """An endpoint model gave no reply for one prompt: a rejected request (e.g. HTTP 400, prompt too
    long) or transient failures on every try. The case fails; the run may go on."""


def raise_failures(failures: list[dict], key: str, total: int) -> None:
    """One rule for every evaluator: a request with no reply after its retries makes the run exit 2.

    needle and ruler stop at the first :class:`GenerationFailed`; the per-record evaluators
    (LongBench v2, LongBench-Chat) save every answer and report first, then call this: the same
    error, naming how many failed and the first one (a rerun retries only those).
    """
    if failures:
        first = failures[0]
        raise GenerationFailed(f"{len(failures)} of {total} requests got no reply ({key} {first[key]}: "
                               f"{first['error']}); the others are saved, rerun to retry these")


class _Unreachable(TransientError):
    pass


class _Rejected(Exception):
    """A 4xx other than auth/not-found (e.g. prompt too long): this request fails, the run goes on."""


@dataclass
class Outcome:
    """What :func:`call_with_retries` got: the parsed value (``None`` when every try failed)."""

    value: Any
    reply: str
    attempts: int
    error: str | None = None


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


def call_with_retries(call: Callable[[], str], parse: Callable[[str], Any], max_tries: int, backoff: float,
                      sleep: Callable[[float], None], *, log: Callable[[str], None] = stderr_line, what: str = "endpoint",
                      unparsed: str = "reply could not be parsed") -> Outcome:
    """Call until ``parse(reply)`` is not ``None``. Fatal errors (401/403/404, refused redirects)
    propagate; a rejected request (other 4xx) ends at once with ``value=None``; after ``max_tries``
    transient failures ``value`` is ``None`` with the last error, or :class:`EndpointUnreachable`
    is raised when no try ever reached the server. Waits between tries never exceed
    :data:`MAX_WAIT`; a longer ``Retry-After`` is capped, and ``log`` says so."""
    last_reply, last_error, reached = "", None, False
    for attempt in range(1, max_tries + 1):
        try:
            reply = call()
            reached = True
            value = parse(reply)
            if value is not None:
                return Outcome(value, reply, attempt)
            last_reply, last_error, wait = reply, unparsed, None
        except _Rejected as e:
            return Outcome(None, "", attempt, str(e))
        except _Unreachable as e:
            last_error, wait = str(e), None
        except TransientError as e:
            reached, last_error, wait = True, str(e), _retry_after(getattr(e, "retry_after", None))
        if attempt < max_tries:
            if wait is not None and wait > MAX_WAIT:
                log(f"{what}: Retry-After {wait:g} s capped at {MAX_WAIT:g} s")
            delay = wait if wait is not None else backoff * 2 ** (attempt - 1) * (1 + 0.25 * random.random())
            sleep(min(MAX_WAIT, delay))
    if not reached:
        raise EndpointUnreachable(f"{last_error} after {max_tries} tries")
    return Outcome(None, last_reply, max_tries, last_error)


@dataclass
class ChatClient:
    """Chat-completions client (temperature 0). ``url`` is the API base (``.../v1``) or the full endpoint.

    Class attributes name the role in messages and the CLI flags errors point at, so the judge
    (:class:`eval_longbench.judge.OpenAIJudge`) reuses every line of this class under its own flags.
    """

    url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 600.0
    """Total seconds per request (connect, headers and body together)."""
    max_tries: int = 5
    backoff: float = 1.0
    """Seconds before the second try; doubles each try, with jitter; Retry-After wins; every wait capped at MAX_WAIT."""
    max_tokens: int = 1024
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    role: ClassVar[str] = "endpoint"
    url_flag: ClassVar[str] = "--endpoint"
    model_flag: ClassVar[str] = "--served-model"
    timeout_flag: ClassVar[str] = "--endpoint-timeout"
    tries_flag: ClassVar[str] = "--endpoint-tries"

    def __post_init__(self):
        if not (isinstance(self.timeout, (int, float)) and math.isfinite(self.timeout) and self.timeout > 0):
            raise LongctxError(f"{self.timeout_flag}: must be a finite number of seconds above 0, got {self.timeout}")
        if self.max_tries < 1:
            raise LongctxError(f"{self.tries_flag}: must be at least 1, got {self.max_tries}")
        if origin(self.url)[0] not in ("http", "https") or not origin(self.url)[1]:
            raise LongctxError(f"{self.url_flag}: {self.url!r} is not an http(s) URL (e.g. http://127.0.0.1:8000/v1)")

    @property
    def endpoint(self) -> str:
        u = self.url.rstrip("/")
        return u if u.endswith("/chat/completions") else u + "/chat/completions"

    def complete(self, system: str | None, user: str, max_tokens: int | None = None) -> str:
        """One request; raises :class:`TransientError` for retryable failures."""
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
        body = json.dumps({"model": self.model, "temperature": 0, "max_tokens": max_tokens or self.max_tokens,
                           "messages": messages}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.endpoint, data=body, headers=headers, method="POST")
        dog = _Deadline(self.timeout)
        opener = urllib.request.build_opener(_WatchedHTTP(dog), _WatchedHTTPS(dog), _SameOriginRedirects(self))
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
            msg = f"{self.role} at {self.endpoint}: HTTP {e.code}: {detail}"
            if e.code in (401, 403, 404):  # wrong key, URL or model: every case would fail the same way
                raise LongctxError(msg + f" (check {self.url_flag}, {self.model_flag} and the key variable)") from None
            exc = TransientError(msg) if e.code == 429 or e.code >= 500 else _Rejected(msg)
            exc.retry_after = e.headers.get("Retry-After") if e.headers is not None else None
            raise exc from None
        except urllib.error.URLError as e:
            if dog.fired or isinstance(e.reason, (socket.timeout, TimeoutError)):
                raise self._timed_out() from None
            raise _Unreachable(f"{self.role} at {self.endpoint}: unreachable ({redact(str(e.reason), self.api_key)})") from None
        except (socket.timeout, TimeoutError):
            raise self._timed_out() from None
        except (ConnectionError, OSError, http.client.HTTPException) as e:  # e.g. the server dropped the connection mid-reply
            if dog.fired:
                raise self._timed_out() from None
            raise TransientError(f"{self.role} at {self.endpoint}: connection lost ({e.__class__.__name__})") from None
        finally:
            dog.cancel()
        try:
            content = json.loads(payload)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            content = None
        if not isinstance(content, str):
            raise TransientError(f"{self.role} at {self.endpoint}: malformed response (no choices[0].message.content)")
        return redact(content, self.api_key)

    def _timed_out(self) -> TransientError:
        return TransientError(f"{self.role} at {self.endpoint}: no complete reply within {self.timeout:g} s")

    def ask(self, system: str | None, user: str, parse: Callable[[str], Any], *, max_tokens: int | None = None,
            unparsed: str = "reply could not be parsed") -> Outcome:
        """:meth:`complete` under :func:`call_with_retries` until ``parse`` accepts the reply."""
        return call_with_retries(lambda: self.complete(system, user, max_tokens), parse, self.max_tries, self.backoff,
                                 self.sleep, what=self.role, unparsed=unparsed)

    def generate_fn(self, system: str | None = None):
        """An :data:`eval_longbench.models.GenerateFn`: ``(prompt, max_new_tokens) -> reply`` (greedy).

        The server applies the model's chat template. A prompt the server rejects, or one without a
        reply after every try, raises :class:`GenerationFailed` naming the endpoint and the reason.
        """

        def generate(prompt: str, max_new_tokens: int) -> str:
            out = self.ask(system, prompt, lambda reply: reply, max_tokens=max_new_tokens)
            if out.value is None:
                raise GenerationFailed(f"{out.error} (after {out.attempts} tries)")
            return out.value

        return generate


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

    def __init__(self, client: ChatClient):
        super().__init__()
        self._endpoint = client.endpoint
        self._flag = client.url_flag
        self._role = client.role

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        fp.close()
        if origin(newurl) != origin(self._endpoint):
            raise LongctxError(
                f"{self._role} at {self._endpoint}: HTTP {code} redirects to another origin ({origin_str(newurl)}); "
                f"refused, the API key is only sent to {self._flag}'s origin (pass the new URL as {self._flag} if you trust it)")
        if code not in (307, 308):
            raise LongctxError(
                f"{self._role} at {self._endpoint}: HTTP {code} redirects to {newurl}, which would turn the POST into a GET; "
                f"refused (pass the new URL as {self._flag})")
        return urllib.request.Request(newurl, data=req.data, headers=dict(req.headers), method="POST",
                                      origin_req_host=req.origin_req_host, unverifiable=True)


def map_concurrent(fn: Callable[[Any], Any], items: dict[str, Any], on_result: Callable[[str, Any], None], *,
                   concurrency: int = 4) -> None:
    """``fn(item)`` for every item with at most ``concurrency`` calls in flight; ``on_result(key,
    result)`` runs in the caller's thread as each finishes (so results are saved as they come). An
    exception stops the run after the finished ones were handed back; pending calls are cancelled."""
    if not items:
        return
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        futures = {pool.submit(fn, item): k for k, item in items.items()}
        try:
            for fut in as_completed(futures):
                on_result(futures[fut], fut.result())
        except BaseException:
            for f in futures:
                f.cancel()
            raise
