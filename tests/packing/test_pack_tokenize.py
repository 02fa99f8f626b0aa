"""packing.tokenize: chat template + label masks without {% generation %} markers."""

import numpy as np
import pytest

from longctx.core.errors import LongctxError
from longctx.core.tokenizer import byte_tokenizer
from packing.tokenize import RecordError, tokenize_record

CONV = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And Italy?"},
    {"role": "assistant", "content": "Rome."},
]


def _labelled_text(tok, t):
    return tok.decode(t.labels[t.labels != -100].tolist())


def test_token_ids_equal_tokenizing_the_whole_rendered_conversation(tok):
    """Cutting the text at turn boundaries does not change the tokens."""
    t = tokenize_record(tok, {"messages": CONV})
    assert t.input_ids.tolist() == tok(tok.apply_chat_template(CONV, tokenize=False), add_special_tokens=False)["input_ids"]


def test_assistant_mode_labels_assistant_turns_and_masks_prompts(tok):
    """Labels cover exactly each assistant reply with its end-of-turn; system/user text gets -100."""
    t = tokenize_record(tok, {"messages": CONV}, train_on="assistant")
    assert _labelled_text(tok, t) == "Paris.<|eos|>\nRome.<|eos|>\n"
    prompt = tok.decode(t.input_ids[t.labels == -100].tolist())
    assert "Capital of France?" in prompt and "Paris" not in prompt


def test_last_mode_labels_only_the_final_assistant_turn(tok):
    """train_on=last: the earlier answer is context, not a target."""
    t = tokenize_record(tok, {"messages": CONV}, train_on="last")
    assert _labelled_text(tok, t) == "Rome.<|eos|>\n"


def test_all_mode_labels_every_token_but_the_first(tok):
    """train_on=all: everything except the first token (nothing predicts it)."""
    t = tokenize_record(tok, {"messages": CONV}, train_on="all")
    assert t.labels[0] == -100
    assert np.array_equal(t.labels[1:], t.input_ids[1:])


def test_sharegpt_record_tokenizes_like_the_same_messages(tok):
    """conversations [{from, value}] with human/gpt roles == messages [{role, content}]."""
    share = [{"from": {"system": "system", "user": "human", "assistant": "gpt"}[m["role"]], "value": m["content"]} for m in CONV]
    a, b = tokenize_record(tok, {"conversations": share}), tokenize_record(tok, {"messages": CONV})
    assert np.array_equal(a.input_ids, b.input_ids) and np.array_equal(a.labels, b.labels)


def test_text_record_learns_every_token_and_ends_with_eos(tok):
    """Plain text (continued pre-training): all tokens are targets, EOS appended."""
    t = tokenize_record(tok, {"text": "hello"})
    assert t.input_ids.tolist() == list(b"hello") + [tok.eos_token_id]
    assert t.num_targets == len(t.input_ids) - 1


@pytest.mark.parametrize("record, reason, field", [
    ({"messages": [{"role": "bot", "content": "x"}]}, "unknown role", "messages[0].role"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "  "}]}, "empty content", "messages[1].content"),
    ({"messages": [{"role": "user", "content": 3}]}, "non-string content", "messages[0].content"),
    ({"messages": [{"role": "user", "content": "q"}]}, "no assistant turn", "no assistant turn"),
    ({"conversations": [{"from": "alien", "value": "x"}]}, "unknown role", "conversations[0].from"),
    ({"prompt": "x"}, "no known field", "messages"),
])
def test_bad_records_raise_a_record_error_naming_the_field(tok, record, reason, field):
    """Each kind of bad record has its own counted reason and a message naming the field."""
    with pytest.raises(RecordError) as exc:
        tokenize_record(tok, record)
    assert exc.value.reason == reason and field in exc.value.message


U, A, S, T = ({"role": r, "content": r[0].upper()} for r in ("user", "assistant", "system", "tool"))


@pytest.mark.parametrize("messages, field", [
    ([A, U], "messages[0].role: 'assistant' as the first turn"),
    ([S, A], "messages[1].role: 'assistant' after 'system' (messages[0])"),
    ([U, U, A], "messages[1].role: 'user' after 'user' (messages[0])"),
    ([U, A, A], "messages[2].role: 'assistant' after 'assistant' (messages[1])"),
    ([U, A, S, U, A], "messages[2].role: 'system' after 'assistant' (messages[1])"),
    ([U, T, A], "messages[1].role: 'tool' after 'user' (messages[0])"),
])
def test_roles_out_of_order_are_a_bad_record_naming_the_turn(tok, messages, field):
    """Assistant-first used to be packed with its header labelled (the answer's start token unlabelled);
    non-alternating roles are refused as bad input naming the turn, in every train-on mode."""
    for train_on in ("assistant", "last", "all"):
        with pytest.raises(RecordError) as exc:
            tokenize_record(tok, {"messages": messages}, train_on)
        assert exc.value.reason == "roles out of order" and exc.value.message.startswith(field)


def test_sharegpt_roles_out_of_order_name_the_original_role(tok):
    """ShareGPT records are named with their own keys and role names (`conversations[0].from: 'gpt'`)."""
    with pytest.raises(RecordError, match=r"^conversations\[0\]\.from: 'gpt' as the first turn"):
        tokenize_record(tok, {"conversations": [{"from": "gpt", "value": "hi"}, {"from": "human", "value": "q"}]})


def test_tool_turns_after_an_assistant_turn_are_in_order(tok):
    """user, assistant (call), tool, tool, assistant: the answers are labelled, the tool output is not."""
    t = tokenize_record(tok, {"messages": [S, U, A, T, T, {"role": "assistant", "content": "done"}]})
    assert _labelled_text(tok, t) == "A<|eos|>\ndone<|eos|>\n"


def test_tokenizer_without_chat_template_is_refused_for_chat_records(tok):
    """No chat template: a user-facing error (not a silent fallback), while text records still work."""
    bare = byte_tokenizer()
    bare.chat_template = None
    with pytest.raises(LongctxError, match="no chat template"):
        tokenize_record(bare, {"messages": CONV}, tokenizer_name="bare-tok")
    assert tokenize_record(bare, {"text": "ok"}).num_targets == 2


def test_template_that_rewrites_earlier_turns_is_refused(tok):
    """If rendering a longer conversation changes earlier text, the mask cannot be found: refuse, say why."""
    odd = byte_tokenizer()
    odd.chat_template = "{% for m in messages %}{{ m['content'] }}{% if loop.last %}!{% endif %}\n{% endfor %}"
    with pytest.raises(LongctxError, match="--train-on all"):
        tokenize_record(odd, {"messages": CONV})
