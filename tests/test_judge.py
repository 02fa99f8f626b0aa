"""The judge client against a real chat-completions HTTP server on loopback (no internet)."""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from eval_longbench.judge import JudgeUnreachable, OpenAIJudge, build_judge_prompt, parse_rating, rate_many
from longctx.errors import LongctxError

KEY = "sk-test-SECRET-0123456789"


class FakeJudgeServer:
    """A chat-completions endpoint whose replies follow a script of steps, then a default step.

    Steps: ("ok", content) | ("status", code) | ("slow", seconds, content) | ("garbage",) | ("drop",).
    It records every request (headers, JSON body) and the peak number of requests in flight.
    """

    def __init__(self, script=(), default=("ok", "Fine answer. Rating: [[7]]"), delay=0.0):
        self.script, self.default, self.delay = list(script), default, delay
        self.requests, self.in_flight, self.peak = [], 0, 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    step = server.script.pop(0) if server.script else server.default
                    server.in_flight += 1
                    server.peak = max(server.peak, server.in_flight)
                try:
                    time.sleep(server.delay)
                    server.reply(self, step)
                finally:
                    with server.lock:
                        server.in_flight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def reply(self, h, step):
        kind = step[0]
        if kind == "drop":
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        if kind == "slow":
            time.sleep(step[1])
            step = ("ok", step[2])
        if kind == "status":
            data, code = json.dumps({"error": {"message": f"status {step[1]}"}}).encode(), step[1]
        elif kind == "garbage":
            data, code = b"<html>not json</html>", 200
        else:
            data, code = json.dumps({"choices": [{"message": {"role": "assistant", "content": step[1]}}]}).encode(), 200
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def judge(url, **kw):
    sleeps = []
    j = OpenAIJudge(url, "judge-model", api_key=KEY, timeout=kw.pop("timeout", 5.0), max_tries=kw.pop("max_tries", 4),
                    backoff=0.01, sleep=sleeps.append, **kw)
    return j, sleeps


def test_parse_takes_the_last_bracketed_rating():
    """The format quoted before the verdict ([[rating]], [[3]]) does not count; the last [[n]] does."""
    assert parse_rating('Use "[[rating]]", e.g. [[3]]. My verdict: [[8]]') == 8.0
    assert parse_rating("Rating: [[7.5]]") == 7.5
    assert parse_rating("[[ 9 ]] then [[x]]") is None
    assert parse_rating("Rating: [[11]]") is None
    assert parse_rating("Rating: 7") is None


def test_429_then_good_reply_is_retried(tmp_path):
    """A rate-limited first reply is retried after a backoff sleep; the rating comes from the second."""
    with FakeJudgeServer([("status", 429)], default=("ok", "ok [[6]]")) as srv:
        j, sleeps = judge(srv.url)
        r = j.rate("rate this")
    assert (r.score, r.attempts) == (6.0, 2) and len(srv.requests) == 2 and len(sleeps) == 1
    assert srv.requests[0]["path"] == "/v1/chat/completions"
    assert srv.requests[0]["body"]["model"] == "judge-model" and srv.requests[0]["body"]["temperature"] == 0


def test_server_errors_timeouts_drops_and_garbage_are_retried():
    """500, a reply slower than the timeout, a dropped connection and non-JSON are all retried."""
    script = [("status", 500), ("slow", 1.5, "[[2]]"), ("drop",), ("garbage",)]
    with FakeJudgeServer(script, default=("ok", "[[9]]")) as srv:
        j, _ = judge(srv.url, timeout=0.5, max_tries=5)
        r = j.rate("x")
    assert (r.score, r.attempts) == (9.0, 5)


def test_unparseable_reply_is_retried_then_reported_as_failure():
    """Replies without a valid [[n]] are retried; after max_tries the rating is None with an error."""
    with FakeJudgeServer(default=("ok", "I would say eleven [[11]]")) as srv:
        j, _ = judge(srv.url, max_tries=3)
        r = j.rate("x")
    assert r.score is None and r.attempts == 3 and len(srv.requests) == 3 and "rating" in r.error


def test_auth_error_is_not_retried():
    """401 cannot be fixed by retrying: one request, then a user error."""
    with FakeJudgeServer(default=("status", 401)) as srv:
        j, _ = judge(srv.url)
        with pytest.raises(LongctxError, match="HTTP 401"):
            j.rate("x")
    assert len(srv.requests) == 1


def test_unreachable_judge_is_a_clear_error():
    """Nothing listening: after the tries, JudgeUnreachable names the endpoint."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    j, sleeps = judge(f"http://127.0.0.1:{port}/v1", max_tries=2)
    with pytest.raises(JudgeUnreachable, match=f"127.0.0.1:{port}.*unreachable"):
        j.rate("x")
    assert len(sleeps) == 1


def test_api_key_is_sent_but_never_echoed():
    """The key goes in the Authorization header only; a server echoing it back gets it redacted,
    and the judge's repr does not show it."""
    with FakeJudgeServer(default=("ok", f"your key {KEY} [[5]]")) as srv:
        j, _ = judge(srv.url)
        r = j.rate("x")
    assert srv.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"
    assert KEY not in r.reply and r.score == 5.0
    assert KEY not in repr(j)


def test_concurrency_is_bounded():
    """With 10 prompts and concurrency 3 the server never sees more than 3 requests at once (and sees 3)."""
    got = {}
    with FakeJudgeServer(delay=0.15) as srv:
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
