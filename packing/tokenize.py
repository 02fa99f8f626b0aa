"""Chat-template tokenization with label masks that do not need ``{% generation %}`` markers.

How the mask is found: for every assistant turn i the template is rendered twice more — the
conversation before turn i with the generation prompt (where the answer starts) and the
conversation up to and including turn i (where it ends). Both must be prefixes of the full
rendering (true of ordinary chat templates; a template that rewrites earlier turns is refused).
The full text is then cut at those character offsets and each piece tokenized on its own, so the
label boundary falls exactly between tokens. Pieces begin at role headers / special tokens, where
tokenizers do not merge across anyway.

Train-on modes: ``assistant`` (every assistant turn, default), ``last`` (only the final assistant
turn), ``all`` (every token). Plain ``text`` records (continued pre-training) learn every token.
The first token of every sequence is always left unlabelled: nothing predicts it, so the label
count equals the count of real next-token targets (see :mod:`packing.weights`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from longctx.core.errors import LongctxError
from longctx.core.labels import IGNORE_INDEX

TRAIN_ON = ("all", "assistant", "last")
ROLES = ("system", "user", "assistant", "tool")
SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "tool": "tool",
    "function": "tool",
    "observation": "tool",
}


class RecordError(Exception):
    """A problem with one record: ``reason`` is the category counted in the report."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Tokenized:
    input_ids: np.ndarray  # int32 [L]
    labels: np.ndarray  # int32 [L], -100 where no loss, aligned with input_ids (not shifted)

    @property
    def num_targets(self) -> int:
        return int((self.labels != IGNORE_INDEX).sum())


def _check_turns(turns, field: str, role_key: str, content_key: str, role_map: dict | None) -> list[dict]:
    if not isinstance(turns, list) or not turns:
        raise RecordError("empty conversation", f"{field}: expected a non-empty list of turns")
    out = []
    for j, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise RecordError("bad turn", f"{field}[{j}]: expected an object, got {type(turn).__name__}")
        role = turn.get(role_key)
        if role_map is not None:
            role = role_map.get(role) if isinstance(role, str) else None
        if role not in ROLES:
            allowed = ", ".join(role_map) if role_map is not None else ", ".join(ROLES)
            raise RecordError("unknown role", f"{field}[{j}].{role_key}: unknown role {turn.get(role_key)!r} (expected one of {allowed})")
        content = turn.get(content_key)
        if not isinstance(content, str):
            raise RecordError("non-string content", f"{field}[{j}].{content_key}: expected a string, got {type(content).__name__}")
        if not content.strip():
            raise RecordError("empty content", f"{field}[{j}].{content_key}: empty content")
        out.append({"role": role, "content": content})
    _check_order([t["role"] for t in out], [t.get(role_key) for t in turns], field, role_key)
    return out


# role -> the roles it may follow (None: first turn). A tool turn answers an assistant's call.
FOLLOWS = {
    "system": (None,),
    "user": (None, "system", "assistant", "tool"),
    "assistant": ("user", "tool"),
    "tool": ("assistant", "tool"),
}


def _check_order(roles: list[str], shown: list, field: str, role_key: str) -> None:
    """Refuse a conversation whose roles are out of order: [system], user, assistant, user, ... with tool
    turns only after an assistant turn.

    Why refuse rather than pack: an assistant turn's labels start where the template's generation prompt
    ends after the turns before it. An assistant turn with no user turn before it has no such prompt (an
    empty conversation renders nothing, or is refused), so its header was labelled as if the model wrote it.
    Two turns of one speaker in a row are rejected or merged by most real templates (Llama 2, Mistral,
    Gemma), which moves the boundaries the mask is cut at; such data is a conversion bug upstream.
    """
    prev = None
    for j, role in enumerate(roles):
        if prev not in FOLLOWS[role]:
            after = "as the first turn" if prev is None else f"after {shown[j - 1]!r} ({field}[{j - 1}])"
            raise RecordError("roles out of order",
                              f"{field}[{j}].{role_key}: {shown[j]!r} {after}; roles must go [system], user, "
                              "assistant, user, ... (tool turns only after an assistant turn)")
        prev = role


def normalize_record(data: dict) -> tuple[str, list[dict] | str]:
    """('chat', messages) or ('text', text) from a chat, ShareGPT or plain-text record."""
    if "messages" in data and data["messages"] is not None:
        return "chat", _check_turns(data["messages"], "messages", "role", "content", None)
    if "conversations" in data and data["conversations"] is not None:
        return "chat", _check_turns(data["conversations"], "conversations", "from", "value", SHAREGPT_ROLES)
    if "text" in data and data["text"] is not None:
        text = data["text"]
        if not isinstance(text, str):
            raise RecordError("non-string content", f"text: expected a string, got {type(text).__name__}")
        if not text.strip():
            raise RecordError("empty content", "text: empty text")
        return "text", text
    raise RecordError("no known field", "no 'messages', 'conversations' or 'text' field")


def _render(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> str:
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    except Exception as e:  # noqa: BLE001 - jinja raise_exception etc.: the template rejects this record
        raise RecordError("template rejected", f"messages: the chat template rejected this conversation ({e})") from None


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def assistant_spans(tokenizer, messages: list[dict], train_on: str) -> tuple[str, list[tuple[int, int]]]:
    """The full rendered text and the character spans that receive labels."""
    full = _render(tokenizer, messages)
    assistant = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    if train_on == "last":
        assistant = assistant[-1:]
    spans = []
    for i in assistant:
        # i >= 1: _check_order puts a user (or tool) turn before every assistant turn
        start_text = _render(tokenizer, messages[:i], add_generation_prompt=True)
        end_text = _render(tokenizer, messages[: i + 1])
        if not (full.startswith(end_text) and end_text.startswith(start_text)):
            raise LongctxError(
                f"messages[{i}]: the tokenizer's chat template renders earlier turns differently as the conversation "
                "grows, so prompt tokens cannot be masked without {% generation %} markers; use --train-on all"
            )
        spans.append((len(start_text), len(end_text)))
    return full, spans


def tokenize_chat(tokenizer, messages: list[dict], train_on: str = "assistant") -> Tokenized:
    """Token ids and labels of one conversation (prompt tokens -100 unless ``train_on='all'``)."""
    if train_on not in TRAIN_ON:
        raise ValueError(f"train_on must be one of {TRAIN_ON}, got {train_on!r}")
    if train_on != "all" and not any(m["role"] == "assistant" for m in messages):
        raise RecordError("no assistant turn", "messages: no assistant turn to learn from")
    if train_on == "all":
        ids = _encode(tokenizer, _render(tokenizer, messages))
        labels = list(ids)
    else:
        full, spans = assistant_spans(tokenizer, messages, train_on)
        ids, labels, pos = [], [], 0
        for start, end in spans:
            prompt = _encode(tokenizer, full[pos:start])
            answer = _encode(tokenizer, full[start:end])
            ids += prompt + answer
            labels += [IGNORE_INDEX] * len(prompt) + answer
            pos = end
        tail = _encode(tokenizer, full[pos:])
        ids += tail
        labels += [IGNORE_INDEX] * len(tail)
    return to_sequence(ids, labels)


def tokenize_text(tokenizer, text: str) -> Tokenized:
    """Plain text for continued pre-training: every token is a target; EOS appended if the tokenizer has one."""
    ids = list(tokenizer(text, add_special_tokens=True)["input_ids"])
    eos = tokenizer.eos_token_id
    if eos is not None and (not ids or ids[-1] != eos):
        ids.append(eos)
    return to_sequence(ids, list(ids))


def to_sequence(ids: list[int], labels: list[int]) -> Tokenized:
    """A :class:`Tokenized` from aligned ids and labels, first token unlabelled; a :class:`RecordError`
    when nothing is left to learn (under 2 tokens, or no target)."""
    if len(ids) < 2:
        raise RecordError("too short", f"only {len(ids)} token(s): nothing to predict")
    labels = list(labels)
    labels[0] = IGNORE_INDEX  # nothing predicts the first token of a sequence
    out = Tokenized(np.asarray(ids, dtype=np.int32), np.asarray(labels, dtype=np.int32))
    if out.num_targets == 0:
        raise RecordError("no targets", "no target tokens after masking (assistant content tokenized to nothing)")
    return out


def tokenize_record(tokenizer, data: dict, train_on: str = "assistant", tokenizer_name: str = "tokenizer") -> Tokenized:
    """Normalize and tokenize one record; raises :class:`RecordError` for a bad record."""
    kind, payload = normalize_record(data)
    if kind == "text":
        return tokenize_text(tokenizer, payload)
    if not getattr(tokenizer, "chat_template", None):
        raise LongctxError(f"{tokenizer_name}: the tokenizer has no chat template, needed for chat records")
    return tokenize_chat(tokenizer, payload, train_on)
