"""Golden prompts: each task's prompt is, character for character, the string NVIDIA/RULER builds.

The expected strings are written here from RULER's own files (``scripts/data/synthetic/constants.py``
for the templates and answer prefixes, ``scripts/data/template.py`` + ``prepare.py`` for the model
template, ``niah.py`` / ``variable_tracking.py`` / ``common_words_extraction.py`` /
``freq_words_extraction.py`` / ``qa.py`` for how the context is assembled), not from our modules: for
the needle values, insertion points and haystack lines a sample reports (the haystack text is ours),
RULER's code path gives exactly our prompt. The model template is the byte tokenizer's chat template
written as a RULER ``Templates`` entry.
"""

import json
import re
from collections import Counter

import pytest

from eval_longbench.haystack import split_sentences
from eval_longbench.ruler.base import GenContext
from eval_longbench.ruler.qa import load_qa
from eval_longbench.ruler.registry import TASKS
from eval_longbench.ruler.texts import ESSAY, Haystack
from longctx.core.tokenizer import byte_tokenizer

BYTE = byte_tokenizer()
CHAT = GenContext(BYTE, chat=True, essay=Haystack(ESSAY, "test"))

# scripts/data/template.py: a model template; this one is the byte tokenizer's chat template.
MODEL_TEMPLATE = "<|user|>\n{task_template}\n<|assistant|>\n"

# scripts/data/synthetic/constants.py
NIAH_TEMPLATE = ("Some special magic {type_needle_v} are hidden within the following text. Make sure to memorize it. "
                 "I will quiz you about the {type_needle_v} afterwards.\n{context}\nWhat are all the special magic "
                 "{type_needle_v} for {query} mentioned in the provided text?")
NIAH_PREFIX = " The special magic {type_needle_v} for {query} mentioned in the provided text are"
VT_TEMPLATE = ("Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n{context}\n"
               "Question: Find all variables that are assigned the value {query} in the text above.")
VT_PREFIX = (" Answer: According to the chain(s) of variable assignment in the text above, {num_v} variables are "
             "assigned the value {query}, they are: ")
CWE_TEMPLATE = ("Below is a numbered list of words. In these words, some appear more often than others. Memorize the "
                "ones that appear most often.\n{context}\nQuestion: What are the 10 most common words in the above list?")
CWE_PREFIX = " Answer: The top 10 words that appear most often in the list are:"
FWE_TEMPLATE = ("Read the following coded text and track the frequency of each coded word. Find the three most "
                "frequently appeared coded words. {context}\nQuestion: Do not provide any explanation. Please ignore the "
                "dots '....'. What are the three most frequently appeared words in the above coded text?")
FWE_PREFIX = " Answer: According to the coded text above, the three most frequently appeared words are:"
QA_TEMPLATE = ("Answer the question based on the given documents. Only give me the answer and do not output any other "
               "words.\n\nThe following are given documents.\n\n{context}\n\nAnswer the question based on the given "
               "documents. Only give me the answer and do not output any other words.\n\nQuestion: {query}")
QA_PREFIX = " Answer:"

# niah.py / variable_tracking.py
NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
NEEDLE = "One of the special magic {type_needle_v} for {key} is: {value}."
DEPTHS = [0, 3, 5, 8, 10, 13, 15, 18, 21, 23, 26, 28, 31, 33, 36, 38, 41, 44, 46, 49, 51, 54, 56, 59, 62, 64, 67, 69,
          72, 74, 77, 79, 82, 85, 87, 90, 92, 95, 97, 100]  # list(np.round(np.linspace(0, 100, num=40)).astype(int))


def prepare(task_template: str, answer_prefix: str, model_template: str = MODEL_TEMPLATE) -> str:
    """prepare.py: ``config['template'] = model_template.format(task_template=task_template) + answer_prefix``."""
    return model_template.format(task_template=task_template) + answer_prefix


def singular(template: str) -> str:
    """niah.py, when ``num_needle_q * num_needle_v == 1``."""
    template = template.replace("Some", "A")
    template = template.replace("are all", "is")
    template = template.replace("are", "is")
    return template.replace("answers", "answer")


def noise_lines(s) -> list[str]:
    """``[haystack] * num_haystack`` (niah.py), after the sample's fragment (the first tokens of one more
    block, when the length needs part of a line: the one difference, RULER stops at whole lines)."""
    fragment = s.info["fragment"]
    if fragment is None:
        return [NOISE] * s.info["lines"]
    assert NOISE.startswith(fragment) and fragment != NOISE  # "" is an empty first line: one token, its newline
    return [fragment] + [NOISE] * (s.info["lines"] - 1)


def insert_needles(sentences: list[str], needles: list[str], indexes: list[int]) -> str:
    """niah.py, noise and needle haystacks."""
    sentences = list(sentences)
    for index, element in zip(indexes, needles):
        sentences.insert(index, element)
    return "\n".join(sentences)


def essay_context(text: str, needles: list[str], depths: list[int]) -> str:
    """niah.py, essay haystack (``sent_tokenize`` is our sentence split, and our cut may end in a space,
    which stays: the haystack text is ours)."""
    document_sents = split_sentences(text)
    if text.endswith(" "):
        document_sents[-1] += " "
    insertion_positions = [0] + sorted([int(len(document_sents) * (depth / 100)) for depth in depths]) + \
        [len(document_sents)]
    document_sents_list = []
    for i in range(1, len(insertion_positions)):
        last_pos = insertion_positions[i - 1]
        next_pos = insertion_positions[i]
        document_sents_list.append(" ".join(document_sents[last_pos:next_pos]))
        if i - 1 < len(needles):
            document_sents_list.append(needles[i - 1])
    return " ".join(document_sents_list)


def join_query(queries: list[str]) -> str:
    return ", ".join(queries[:-1]) + ", and " + queries[-1] if len(queries) > 1 else queries[0]


def check_needles(s, value_type: str, values_per_key: int):
    """The needles are RULER's sentence with our drawn keys and values; the asked ones hold the answers."""
    pattern = re.compile(r"One of the special magic " + value_type + r" for (.+) is: (.+)\.")
    found = [pattern.fullmatch(n).groups() for n in s.info["needles"]]
    asked = [v for k in s.info["keys"] for key, v in found if key == k]
    assert sorted(asked) == sorted(s.answers) and len(s.answers) == len(s.info["keys"]) * values_per_key


@pytest.mark.parametrize("seed", range(3))
def test_niah_noise_haystack_is_rulers_prompt(seed):
    s = TASKS["niah_single_1"].generate(CHAT, 1500, 1372, seed)
    check_needles(s, "numbers", 1)
    at = s.info["insert_at"]
    assert at == sorted(at, reverse=True) and len(set(at)) == 1 and 0 <= at[0] < s.info["lines"]
    lines = noise_lines(s)
    expected = prepare(singular(NIAH_TEMPLATE), singular(NIAH_PREFIX)).format(
        type_needle_v="number", context=insert_needles(lines, s.info["needles"], at), query=s.info["keys"][0])
    assert s.prompt == expected


@pytest.mark.parametrize("name, value_type, values, plural", [
    ("niah_single_2", "numbers", 1, False), ("niah_single_3", "uuids", 1, False), ("niah_multikey_1", "numbers", 1, False),
    ("niah_multivalue", "numbers", 4, True), ("niah_multiquery", "numbers", 1, True)])
def test_niah_essay_haystack_is_rulers_prompt(name, value_type, values, plural):
    s = TASKS[name].generate(CHAT, 2000, 1872, 4)
    check_needles(s, value_type, values)
    assert set(s.info["depths"]) <= set(DEPTHS) and len(s.info["depths"]) == len(s.info["needles"])
    text = " ".join(ESSAY.split())[:s.info["haystack_chars"]]
    template, prefix, type_v = NIAH_TEMPLATE, NIAH_PREFIX, value_type
    if not plural:
        template, prefix, type_v = singular(template), singular(prefix), value_type[:-1]
    expected = prepare(template, prefix).format(type_needle_v=type_v, query=join_query(s.info["keys"]),
                                                context=essay_context(text, s.info["needles"], s.info["depths"]))
    assert s.prompt == expected


@pytest.mark.parametrize("name, key, value_type", [("niah_multikey_2", r"[\w' -]+", "numbers"),
                                                   ("niah_multikey_3", r"[0-9a-f-]{36}", "uuids")])
def test_niah_needle_haystack_is_rulers_prompt(name, key, value_type):
    """The haystack's lines are needles with other keys; RULER's insertion of the real needle into them
    at the sample's index gives our prompt."""
    s = TASKS[name].generate(CHAT, 1500, 1372, 2)
    check_needles(s, value_type, 1)
    head = prepare(singular(NIAH_TEMPLATE), "").split("{context}")[0].format(type_needle_v=value_type[:-1])
    context = s.prompt[len(head):s.prompt.index("\nWhat is the special magic")]
    lines = context.split("\n")
    lines.remove(s.info["needles"][0])
    distractor = re.compile(r"One of the special magic " + value_type + " for " + key + r" is: [\w-]+\.")
    assert all(distractor.fullmatch(x) for x in lines[1:]) and len(lines) == s.info["lines"] > 5
    expected = prepare(singular(NIAH_TEMPLATE), singular(NIAH_PREFIX)).format(
        type_needle_v=value_type[:-1], context=insert_needles(lines, s.info["needles"], s.info["insert_at"]),
        query=s.info["keys"][0])
    assert s.prompt == expected


def test_niah_without_a_chat_template_is_rulers_base_template():
    """RULER's ``base`` model template is the task text itself; the answer prefix follows it."""
    s = TASKS["niah_single_1"].generate(GenContext(BYTE, chat=False), 1500, 1372, 0)
    lines = noise_lines(s)
    expected = prepare(singular(NIAH_TEMPLATE), singular(NIAH_PREFIX), "{task_template}").format(
        type_needle_v="number", context=insert_needles(lines, s.info["needles"], s.info["insert_at"]),
        query=s.info["keys"][0])
    assert s.prompt == expected


def vt_example(example: str) -> tuple[str, str]:
    """variable_tracking.py's ICL example, re-derived: a 3-letter chain of 4 hops with its value, on at
    least 5 noise lines, the task template + answer prefix, then two spaces and the answer, newline."""
    m = re.fullmatch(r"(?s)" + re.escape(VT_TEMPLATE).replace(r"\{context\}", "(.*)").replace(r"\{query\}", r"(\d{5})")
                     + re.escape(VT_PREFIX).replace(r"\{num_v\}", "5").replace(r"\{query\}", r"(\d{5})")
                     + r" ([A-Z]{3}(?: [A-Z]{3}){4})\n", example)
    assert m, example
    context, value, value2, answer = m.groups()
    names = answer.split()
    chain = [f"VAR {names[0]} = {value}"] + [f"VAR {names[j + 1]} = VAR {names[j]} " for j in range(4)]
    lines = context.split("\n")
    assert value == value2 and [x for x in lines if x != NOISE] == chain and lines.count(NOISE) >= 5
    return value, answer


@pytest.mark.parametrize("seed", range(3))
def test_vt_is_rulers_prompt_with_its_one_shot_example(seed):
    s = TASKS["vt"].generate(CHAT, 2400, 2370, seed)
    (chain,) = s.info["chains"]
    # variable_tracking.py: chain statements, "VAR X = VAR Y " with RULER's trailing space
    names = s.answers
    assert chain == [f"VAR {names[0]} = {s.info['value']}"] + [f"VAR {names[j + 1]} = VAR {names[j]} " for j in range(4)]
    sentences = noise_lines(s)
    for positions in s.info["insert_at"]:
        assert positions == sorted(positions) and len(set(positions)) == len(chain)
        for insert_pi, j in zip(positions, range(len(chain))):
            sentences.insert(insert_pi + j, chain[j])
    context = "\n".join(sentences).replace(". \n", ".\n")
    input_text = prepare(VT_TEMPLATE, VT_PREFIX).format(context=context, query=s.info["value"], num_v=5)
    # the example goes "between model template and input", followed by a newline
    cutoff = input_text.index(VT_TEMPLATE[:20])
    example = s.prompt[cutoff:s.prompt.index(VT_TEMPLATE[:20], cutoff + 1) - 1]
    vt_example(example)
    assert s.prompt == input_text[:cutoff] + example + "\n" + input_text[cutoff:]
    assert len(BYTE(example)["input_ids"]) > 500  # byte tokens: RULER's 5-line minimum wins over its 500 tokens


def numbered(words: list[str]) -> str:
    return " ".join(f"{i + 1}. {word}" for i, word in enumerate(words))


def items(numbered_list: str) -> list[str]:
    parts = re.split(r"(?:^| )(\d+)\. ", numbered_list)[1:]
    assert [int(n) for n in parts[0::2]] == list(range(1, len(parts) // 2 + 1))
    return parts[1::2]


@pytest.mark.parametrize("length, shape", [(2400, (20, 3, 1, 6, 1)), (8000, (40, 10, 3, 30, 3))])
def test_cwe_is_rulers_prompt_with_its_one_shot_example(length, shape):
    """common_words_extraction.py: a whole templated example with its answer, a newline, the task; below
    4096 tokens 20 example words 3/1 times and the list 6/1 times, from 4096 on 40 words 10/3 and 30/3."""
    ex_words, ex_cw, ex_ucw, cw, ucw = shape
    s = TASKS["cwe"].generate(CHAT, length, length - 120, 1)
    template = prepare(CWE_TEMPLATE, CWE_PREFIX)
    head, mid = template.split("{context}")
    assert s.prompt.startswith(head) and s.prompt.endswith(mid)
    ex_list = s.prompt[len(head):s.prompt.index(mid)]
    main_list = s.prompt[s.prompt.rindex(head) + len(head):-len(mid)]
    ex_counts, counts = Counter(items(ex_list)), Counter(items(main_list))
    ex_answer = [w for w, c in ex_counts.items() if c == ex_cw]
    assert len(ex_counts) == ex_words and sorted(Counter(ex_counts.values()).items()) == [(ex_ucw, ex_words - 10), (ex_cw, 10)]
    assert sorted(w for w, c in counts.items() if c == cw) == sorted(s.answers) and set(counts.values()) == {cw, ucw}
    shown = items(s.prompt[s.prompt.index(mid) + len(mid) + 1:s.prompt.rindex(head) - 1])  # the example's answer
    assert sorted(shown) == sorted(ex_answer)
    few_shots = template.format(context=ex_list, query="") + " " + numbered(shown)
    assert s.prompt == few_shots + "\n" + template.format(context=main_list, query="")


def test_fwe_is_rulers_prompt():
    s = TASKS["fwe"].generate(CHAT, 2000, 1950, 5)
    head, tail = prepare(FWE_TEMPLATE, FWE_PREFIX).split("{context}")
    context = s.prompt[len(head):-len(tail)]
    assert s.prompt == prepare(FWE_TEMPLATE, FWE_PREFIX).format(context=context, query="")
    counts = Counter(context.split())
    assert [w for w, _ in counts.most_common(4)] == ["...", *s.answers]


def test_qa_is_rulers_prompt(tmp_path):
    docs = ["Paris is the capital of France.", "The Seine flows through Paris.", "Mount Kenya is in Kenya."]
    squad = {"data": [{"title": "t", "paragraphs": [
        {"context": d, "qas": [{"question": f"Q{i}?", "answers": [{"text": f"A{i}"}]}]} for i, d in enumerate(docs)]}]}
    f = tmp_path / "squad.json"
    f.write_text(json.dumps(squad))
    s = TASKS["qa_1"].generate(GenContext(BYTE, chat=True, qa={"squad": load_qa(f, "squad")}), 1000, 968, 3)
    order = sorted(docs, key=s.prompt.index)
    context = "\n\n".join(f"Document {i + 1}:\n{d}" for i, d in enumerate(order))
    query = re.search(r"Question: (Q\d\?)", s.prompt).group(1)
    assert s.prompt == prepare(QA_TEMPLATE, QA_PREFIX).format(context=context, query=query)
