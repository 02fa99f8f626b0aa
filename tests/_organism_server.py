"""A loopback OpenAI-compatible chat-completions server whose replies come from a REAL local model.

It answers each request with ``hf_generate_fn(model, tokenizer, chat=True, system=...)`` on the
request's messages, greedy, with the request's ``max_tokens``; so a run over the endpoint can be
compared reply for reply with the same run on the local checkpoint. It is the scripted test server
(:class:`_chat_server.FakeJudgeServer`: requests recorded, ``script`` steps such as ("status", code)
answer the first requests) whose default step asks the model.
"""

from __future__ import annotations

from _chat_server import FakeJudgeServer


class ModelServer(FakeJudgeServer):
    def __init__(self, model, tokenizer, served_name: str = "organism", script=()):
        super().__init__(script=script, default=("model",))
        self.model, self.tokenizer, self.served_name = model, tokenizer, served_name

    def reply(self, h, step):
        if step[0] != "model":
            return super().reply(h, step)
        from eval_longbench.models import hf_generate_fn

        body = h.body
        if body.get("model") != self.served_name:
            return super().reply(h, ("status", 404))
        msgs = body["messages"]
        system = next((m["content"] for m in msgs if m["role"] == "system"), None)
        with self.lock:  # one model, one generation at a time
            text = hf_generate_fn(self.model, self.tokenizer, chat=True, system=system)(msgs[-1]["content"], body["max_tokens"])
        super().reply(h, ("ok", text))
