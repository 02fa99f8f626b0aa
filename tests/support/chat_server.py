"""One OpenAI-compatible chat-completions server on loopback (no internet) for every client test: the
judge's, the endpoint model source's, and whole evaluations over an endpoint. Each request is answered
by the next step of a script, then a default step; one step kind asks a REAL local model, so a run over
the endpoint can be compared reply for reply with the same run on the local checkpoint."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from eval_longbench.models import hf_generate_fn

KEY = "sk-test-SECRET-0123456789"  # the API key the client tests send: it must never be written or echoed


def scripted_client(cls, url: str, model: str, *, max_tries: int, timeout: float = 5.0, **kw):
    """``cls(url, model, ...)`` (the judge or the endpoint's chat client) with ``KEY``, a short timeout and a
    tiny back-off whose sleeps are recorded instead of slept: (client, sleeps)."""
    sleeps: list[float] = []
    client = cls(url, model, api_key=KEY, timeout=timeout, max_tries=max_tries, backoff=0.01, sleep=sleeps.append, **kw)
    return client, sleeps


def unused_port() -> int:
    """A loopback port nothing listens on (bound, then closed): an endpoint that never answers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class ChatServer:
    """A chat-completions endpoint whose replies follow a script of steps, then a default step.

    Steps: ("ok", content) | ("status", code) | ("slow", seconds, content) | ("garbage",) | ("drop",) |
    ("raw", code, body_bytes, {header: value}) | ("drip", seconds_per_byte, content, where) where
    ``where`` is "head" (status line and headers dripped) or "body" | ("model",): ``model`` answers the
    request's messages with ``hf_generate_fn(model, tokenizer, chat=True, system=...)``, greedy, with the
    request's ``max_tokens`` (HTTP 404 for a model name other than ``served_name``); the default step
    when a model is given.
    It records every request (headers, JSON body) and the peak number of requests in flight.
    """

    def __init__(self, script=(), default=None, delay=0.0, model=None, tokenizer=None, served_name="organism"):
        if default is None:
            default = ("model",) if model is not None else ("ok", "Fine answer. Rating: [[7]]")
        self.script, self.default, self.delay = list(script), default, delay
        self.model, self.tokenizer, self.served_name = model, tokenizer, served_name
        self.requests, self.in_flight, self.peak = [], 0, 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):  # recorded too: a redirected POST may arrive as a GET (with the key)
                with server.lock:
                    server.requests.append({"path": self.path, "headers": dict(self.headers), "body": None})
                self.send_response(405)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    step = server.script.pop(0) if server.script else server.default
                    server.in_flight += 1
                    server.peak = max(server.peak, server.in_flight)
                self.body = body  # for reply() steps that answer from the request
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
        if kind == "model":
            body = h.body
            if body.get("model") != self.served_name:
                return self.reply(h, ("status", 404))
            msgs = body["messages"]
            system = next((m["content"] for m in msgs if m["role"] == "system"), None)
            with self.lock:  # one model, one generation at a time
                text = hf_generate_fn(self.model, self.tokenizer, chat=True, system=system)(msgs[-1]["content"],
                                                                                           body["max_tokens"])
            step, kind = ("ok", text), "ok"
        if kind == "raw":
            h.send_response(step[1])
            for k, v in step[3].items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(step[2])))
            h.end_headers()
            h.wfile.write(step[2])
            return
        if kind == "drip":
            data = json.dumps({"choices": [{"message": {"role": "assistant", "content": step[2]}}]}).encode()
            head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode()
            h.close_connection = True
            try:
                if step[3] == "body":
                    h.wfile.write(head)
                    h.wfile.flush()
                for i in range(len(head) if step[3] == "head" else 0, len(head + data)):
                    h.wfile.write((head + data)[i:i + 1])
                    h.wfile.flush()
                    time.sleep(step[1])
            except OSError:  # the client gave up and closed the connection
                pass
            return
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
