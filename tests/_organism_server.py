"""A loopback OpenAI-compatible chat-completions server whose replies come from a REAL local model.

It answers each request with ``hf_generate_fn(model, tokenizer, chat=True, system=...)`` on the
request's messages, greedy, with the request's ``max_tokens``; so a run over the endpoint can be
compared reply for reply with the same run on the local checkpoint. Requests (path, headers, JSON
body) are recorded; ``script`` steps ("status", code) answer the first requests with an error.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ModelServer:
    def __init__(self, model, tokenizer, served_name: str = "organism", script=()):
        from eval_longbench.models import hf_generate_fn

        self.model, self.tokenizer, self.served_name = model, tokenizer, served_name
        self.script = list(script)
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self._gen = hf_generate_fn
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    step = server.script.pop(0) if server.script else None
                if step is not None:
                    return self._send(step[1], {"error": {"message": f"scripted {step[1]}"}})
                if body.get("model") != server.served_name:
                    return self._send(404, {"error": {"message": f"model {body.get('model')!r} not served"}})
                msgs = body["messages"]
                system = next((m["content"] for m in msgs if m["role"] == "system"), None)
                with server.lock:  # one model, one generation at a time
                    text = server._gen(server.model, server.tokenizer, chat=True, system=system)(msgs[-1]["content"], body["max_tokens"])
                self._send(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]})

            def _send(self, code, obj):
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
