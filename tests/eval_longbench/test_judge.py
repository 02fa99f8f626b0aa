"""The judge client against a real chat-completions HTTP server on loopback (no internet)."""

import threading
import time

import pytest

from eval_longbench.judge import JudgeUnreachable, OpenAIJudge, build_judge_prompt, parse_rating, rate_many
from longctx.core.errors import LongctxError
from support.chat_server import KEY, ChatServer, scripted_client, unused_port


def judge(url, max_tries=4, **kw):
    """A judge with small timeouts whose sleeps are recorded instead of slept."""
    return scripted_client(OpenAIJudge, url, "judge-model", max_tries=max_tries, **kw)


def test_parse_takes_the_last_bracketed_rating():
    """The format quoted before the verdict ([[rating]], [[3]]) does not count; the last [[n]] does."""
    assert parse_rating('Use "[[rating]]", e.g. [[3]]. My verdict: [[8]]') == 8.0
    assert parse_rating("Rating: [[7.5]]") == 7.5
    assert parse_rating("[[ 9 ]] then [[x]]") is None
    assert parse_rating("Rating: [[11]]") is None
    assert parse_rating("Rating: 7") is None


def test_429_then_good_reply_is_retried(tmp_path):
    """A rate-limited first reply is retried after a backoff sleep; the rating comes from the second."""
    with ChatServer([("status", 429)], default=("ok", "ok [[6]]")) as srv:
        j, sleeps = judge(srv.url)
        r = j.rate("rate this")
    assert (r.score, r.attempts) == (6.0, 2) and len(srv.requests) == 2 and len(sleeps) == 1
    assert srv.requests[0]["path"] == "/v1/chat/completions"
    assert srv.requests[0]["body"]["model"] == "judge-model" and srv.requests[0]["body"]["temperature"] == 0


def test_server_errors_timeouts_drops_and_garbage_are_retried():
    """500, a reply slower than the timeout, a dropped connection and non-JSON are all retried."""
    script = [("status", 500), ("slow", 1.5, "[[2]]"), ("drop",), ("garbage",)]
    with ChatServer(script, default=("ok", "[[9]]")) as srv:
        j, _ = judge(srv.url, timeout=0.5, max_tries=5)
        r = j.rate("x")
    assert (r.score, r.attempts) == (9.0, 5)


def test_unparseable_reply_is_retried_then_reported_as_failure():
    """Replies without a valid [[n]] are retried; after max_tries the rating is None with an error."""
    with ChatServer(default=("ok", "I would say eleven [[11]]")) as srv:
        j, _ = judge(srv.url, max_tries=3)
        r = j.rate("x")
    assert r.score is None and r.attempts == 3 and len(srv.requests) == 3 and "rating" in r.error


def test_auth_error_is_not_retried():
    """401 cannot be fixed by retrying: one request, then a user error."""
    with ChatServer(default=("status", 401)) as srv:
        j, _ = judge(srv.url)
        with pytest.raises(LongctxError, match="HTTP 401"):
            j.rate("x")
    assert len(srv.requests) == 1


def test_unreachable_judge_is_a_clear_error():
    """Nothing listening: after the tries, JudgeUnreachable names the endpoint."""
    port = unused_port()
    j, sleeps = judge(f"http://127.0.0.1:{port}/v1", max_tries=2)
    with pytest.raises(JudgeUnreachable, match=f"127.0.0.1:{port}.*unreachable"):
        j.rate("x")
    assert len(sleeps) == 1


def test_api_key_is_sent_but_never_echoed():
    """The key goes in the Authorization header only; a server echoing it back gets it redacted,
    and the judge's repr does not show it."""
    with ChatServer(default=("ok", f"your key {KEY} [[5]]")) as srv:
        j, _ = judge(srv.url)
        r = j.rate("x")
    assert srv.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"
    assert KEY not in r.reply and r.score == 5.0
    assert KEY not in repr(j)


def test_concurrency_is_bounded():
    """With 10 prompts and concurrency 3 the server never sees more than 3 requests at once (and sees 3)."""
    got = {}
    with ChatServer(delay=0.15) as srv:
        j, _ = judge(srv.url)
        rate_many(j, {str(i): f"p{i}" for i in range(10)}, lambda k, r: got.__setitem__(k, r.score), concurrency=3)
    assert srv.peak == 3 and len(got) == 10 and set(got.values()) == {7.0}


def test_judge_prompt_carries_question_reference_examples_and_answer():
    """Every piece the judge needs is in the prompt, examples with their scores in order."""
    p = build_judge_prompt("Q?", "REF", [{"answer": "A1", "score": 9}, {"answer": "A2", "score": 3}], "PRED")
    for part in ("Q?", "REF", "A1", "[[9]]", "A2", "[[3]]", "PRED", "[[rating]]"):
        assert part in p
    assert p.index("A1") < p.index("A2") < p.index("PRED")


def test_local_hf_judge_runs_offline(tiny_llama):
    """A local HF chat model can stand in for the endpoint; a random model's reply has no rating,
    so it is retried and reported unrated rather than guessed."""
    from eval_longbench.judge import LocalJudge
    from eval_longbench.models import load_model

    model, tok = load_model(tiny_llama)
    r = LocalJudge(model, tok, max_new_tokens=4, max_tries=2).rate("Rate: [[?]]")
    assert r.score is None and r.attempts == 2 and isinstance(r.reply, str)


def test_a_local_judge_is_called_one_prompt_at_a_time_whatever_the_concurrency():
    """LocalJudge generates on one model: rate_many never runs two of its ratings at once."""
    from eval_longbench.judge import LocalJudge, Rating

    state = {"now": 0, "peak": 0}
    lock = threading.Lock()

    class CountingLocalJudge(LocalJudge):
        def rate(self, prompt, system=""):
            with lock:
                state["now"] += 1
                state["peak"] = max(state["peak"], state["now"])
            time.sleep(0.02)
            with lock:
                state["now"] -= 1
            return Rating(score=7, reply="[[7]]", attempts=1)

    got = {}
    rate_many(CountingLocalJudge(model=None, tokenizer=None), {str(i): "p" for i in range(8)},
              lambda k, r: got.__setitem__(k, r.score), concurrency=4)
    assert got == {str(i): 7 for i in range(8)} and state["peak"] == 1


# --- the key only goes to --judge-url's origin -------------------------------------------------

def test_cross_origin_redirect_is_refused_and_the_other_server_never_sees_the_key():
    """A 302/307 from --judge-url's server to a server on another port is refused with a one-line
    error naming the other origin; that server gets no request, so no Authorization header."""
    codes = (301, 302, 303, 307, 308)
    with ChatServer() as other:
        loc = {"Location": other.url + "/chat/completions"}
        with ChatServer([("raw", c, b"", loc) for c in codes]) as srv:
            for code in codes:
                j, _ = judge(srv.url)
                with pytest.raises(LongctxError, match=f"HTTP {code} redirects to another origin") as err:
                    j.rate("x")
                port = other.url.split(":")[2].split("/")[0]
                assert "\n" not in str(err.value) and f"127.0.0.1:{port}" in str(err.value) and KEY not in str(err.value)
    assert len(srv.requests) == len(codes)
    assert other.requests == []  # not even a GET: no Authorization header reached it


def test_same_origin_307_is_followed_with_the_post_body():
    """A 307 to another path of the same server is followed: the POST body and key go again, to it only."""
    with ChatServer([("raw", 307, b"", {"Location": "/v2/chat/completions"})], default=("ok", "[[8]]")) as srv:
        j, _ = judge(srv.url)
        r = j.rate("x")
    assert r.score == 8.0 and [q["path"] for q in srv.requests] == ["/v1/chat/completions", "/v2/chat/completions"]
    assert srv.requests[1]["body"]["model"] == "judge-model" and srv.requests[1]["headers"]["Authorization"] == f"Bearer {KEY}"


def test_same_origin_302_is_refused_rather_than_turned_into_a_get():
    """301/302/303 would make the POST a GET (which no chat endpoint answers): a one-line error."""
    with ChatServer(default=("raw", 302, b"", {"Location": "/elsewhere"})) as srv:
        j, _ = judge(srv.url)
        with pytest.raises(LongctxError, match="HTTP 302 redirects to .*POST into a GET"):
            j.rate("x")
    assert len(srv.requests) == 1


# --- never hang: Retry-After caps and a total deadline per request ------------------------------

def test_retry_after_of_an_hour_is_capped_and_logged(capsys):
    """Retry-After: 3600 waits MAX_WAIT (60 s), and says so on stderr."""
    from eval_longbench.judge import MAX_WAIT

    with ChatServer([("raw", 429, b"{}", {"Retry-After": "3600"})], default=("ok", "[[5]]")) as srv:
        j, sleeps = judge(srv.url)
        r = j.rate("x")
    assert r.score == 5.0 and sleeps == [MAX_WAIT] == [60.0]
    assert "Retry-After 3600 s capped at 60 s" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "soon", "Wed, 21 Oct 2015 07:28:00 GMT", ""])
def test_unusable_retry_after_falls_back_to_the_backoff(value):
    """Negative, NaN, infinite, non-numeric or date Retry-After values neither crash nor set the wait:
    the normal back-off (0.01 s here, with at most 25 % jitter) applies."""
    with ChatServer([("raw", 503, b"{}", {"Retry-After": value})], default=("ok", "[[5]]")) as srv:
        j, sleeps = judge(srv.url)
        r = j.rate("x")
    assert r.score == 5.0 and len(sleeps) == 1 and 0.01 <= sleeps[0] <= 0.0125


@pytest.mark.parametrize("where", ["body", "head"])
def test_a_server_dripping_its_reply_is_cut_off_at_the_timeout(where):
    """A reply sent one byte every 50 ms (each byte resets a socket timeout) ends at the total
    deadline of 0.5 s as a timed-out try, not when the server is done (~10 s)."""
    with ChatServer(default=("drip", 0.05, "x" * 200 + " [[7]]", where)) as srv:
        j, _ = judge(srv.url, timeout=0.5, max_tries=1)
        t0 = time.monotonic()
        r = j.rate("x")
        took = time.monotonic() - t0
    assert r.score is None and "no complete reply within 0.5 s" in r.error and took < 2.0


def test_a_dripping_error_body_is_cut_off_too():
    """The deadline also covers reading an HTTP error's body."""
    class Drip(ChatServer):
        def reply(self, h, step):
            h.send_response(500)
            h.send_header("Content-Length", "1000")
            h.end_headers()
            try:
                for _ in range(1000):
                    h.wfile.write(b"e")
                    h.wfile.flush()
                    time.sleep(0.05)
            except OSError:
                pass

    with Drip() as srv:
        j, _ = judge(srv.url, timeout=0.5, max_tries=1)
        t0 = time.monotonic()
        r = j.rate("x")
    assert r.score is None and "no complete reply" in r.error and time.monotonic() - t0 < 2.0


# --- redaction before cutting --------------------------------------------------------------------

def test_an_echoed_key_is_redacted_before_the_error_body_is_cut():
    """Whatever byte the 300-character cut falls on inside an echoed 'Authorization: Bearer KEY',
    no 4+-character prefix of the key is left in the error."""
    from eval_longbench.judge import ERROR_BODY_CHARS

    pads = range(ERROR_BODY_CHARS - len(KEY) - 30, ERROR_BODY_CHARS + 2)
    script = [("raw", 500, ("p" * pad + f"Authorization: Bearer {KEY} rest").encode(), {}) for pad in pads]
    with ChatServer(script) as srv:
        for pad in pads:
            j, _ = judge(srv.url, max_tries=1)
            r = j.rate("x")
            assert r.score is None and "HTTP 500" in r.error
            assert not any(KEY[:n] in r.error for n in range(4, len(KEY) + 1)), (pad, r.error)


def test_a_bare_key_prefix_left_by_the_cut_is_redacted():
    """A key echoed without 'Bearer' that straddles the cut leaves no prefix of it behind."""
    from eval_longbench.judge import ERROR_BODY_CHARS, redact_and_cut

    for n in range(1, len(KEY)):
        text = "a" * (ERROR_BODY_CHARS - n) + KEY + " tail"
        cut = redact_and_cut(text, KEY)
        assert len(cut) <= ERROR_BODY_CHARS + 3
        assert not any(KEY[:m] in cut for m in range(4, len(KEY) + 1)), (n, cut)
