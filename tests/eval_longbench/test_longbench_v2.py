"""LongBench v2: the official prompt, answer extraction (hand-worked against the official regexes),
middle truncation, accuracy by difficulty and length bucket, bad records, resume and content keys."""

import json

import pytest

from eval_longbench.chat_client import GenerationFailed
from eval_longbench.longbench_v2 import (
    TEMPLATE_COT, TEMPLATE_COT_ANSWER, V2Config, build_prompt, extract_answer, fit_prompt, load_records, report,
    run_longbench_v2, table_line,
)
from eval_longbench.results import ResultStore
from longctx.core.errors import LongctxError
from longctx.core.tokenizer import byte_tokenizer
from support import ORGANISM

TOK = byte_tokenizer()


def record(i=0, **kw):
    rec = {"_id": f"q{i}", "domain": "Single-Document QA", "sub_domain": "Financial", "difficulty": "easy",
           "length": "short", "question": "Which city?", "choice_A": "Paris", "choice_B": "Rome", "choice_C": "Oslo",
           "choice_D": "Bern", "answer": "A", "context": "Some document."}
    return {**rec, **kw}


# --- prompt ----------------------------------------------------------------------------------------

def test_prompt_is_the_official_zero_shot_template_with_stripped_fields():
    """The text of prompts/0shot.txt (THUDM/LongBench), every field .strip()-ed as pred.py does."""
    rec = record(question="  Which city?\n", choice_B=" Rome ", context="\nSome document.\n\n")
    expected = ("Please read the following text and answer the question below.\n\n<text>\nSome document.\n</text>\n\n"
                "What is the correct answer to this question: Which city?\nChoices:\n(A) Paris\n(B) Rome\n(C) Oslo\n(D) Bern\n\n"
                'Format your response as follows: "The correct answer is (insert answer here)".')
    assert build_prompt(rec) == expected


def test_cot_prompts_reason_first_then_answer_without_the_document():
    rec = record(context="SECRET DOCUMENT")
    first = build_prompt(rec, TEMPLATE_COT)
    assert "SECRET DOCUMENT" in first and first.endswith("\n\nLet\u2019s think step by step:")
    second = build_prompt(rec, TEMPLATE_COT_ANSWER, "It must be Paris.")
    assert "SECRET DOCUMENT" not in second and "The text is too long and omitted here." in second
    assert "Let\u2019s think step by step: It must be Paris.\n\nBased on the above, what is the single" in second


# --- answer extraction: the official two regexes ------------------------------------------------

@pytest.mark.parametrize("reply,letter", [
    ("The correct answer is (B)", "B"),
    ("**The correct answer is (C)**", "C"),          # markdown stars are removed first
    ("The correct answer is **D**.", "D"),
    ("The correct answer is A because ...", "A"),     # the bare form
    ("The correct answer is B, not (A). The correct answer is (C)", "C"),  # the parenthesised form wins wherever it is
    ("The correct answer is (A). The correct answer is (B)", "A"),        # first match
    ("The correct answer is Alpha", "A"),             # the official rule reads the letter A here
    ("The correct answer is (E)", None),
    ("the correct answer is (A)", None),              # case-sensitive, as the official regex
    ("Answer: (A)", None),
    ("", None),
])
def test_answer_extraction_follows_the_official_regexes(reply, letter):
    assert extract_answer(reply) == letter


# --- truncation --------------------------------------------------------------------------------

def test_middle_truncation_keeps_the_first_half_and_the_last_ceil_half():
    """Official cut ids[:L//2] + ids[-L//2:]: for L = 101, the first 50 and the last 51 tokens (bytes here)."""
    text = "".join(chr(ord("a") + i % 26) for i in range(1000))
    cut, n, truncated = fit_prompt(TOK, text, 101)
    assert cut == text[:50] + text[-51:] and (n, truncated) == (101, True)
    assert fit_prompt(TOK, "short", 101) == ("short", 5, False)
    assert fit_prompt(None, text, None) == (text, None, False)  # no tokenizer: sent whole


# --- bucket accounting ---------------------------------------------------------------------------

ROWS = [  # (difficulty, length, answer, reply)
    ("easy", "short", "A", "The correct answer is (A)"),
    ("easy", "medium", "B", "The correct answer is (C)"),
    ("hard", "long", "C", "The correct answer is C"),
    ("hard", "short", "D", "**The correct answer is (D)**"),
    ("hard", "medium", "A", "I cannot tell."),
    ("easy", "long", "B", "The correct answer is (B)"),
]


def run(tmp_path, records, generate, meta=None, **kw):
    store = ResultStore(tmp_path / "results.json", meta or {"m": 1})
    run_longbench_v2(records, generate, TOK, V2Config(max_length=4096), store, progress=False, **kw)
    return store


def test_accuracy_overall_by_difficulty_and_by_length_bucket(tmp_path):
    """Hand-counted: 4/6 overall; easy 2/3, hard 2/3; short 2/2, medium 0/2, long 2/2."""
    records = [record(i, difficulty=d, length=b, answer=a, question=f"Q{i}") for i, (d, b, a, _) in enumerate(ROWS)]
    replies = {f"Q{i}": r for i, (_, _, _, r) in enumerate(ROWS)}
    store = run(tmp_path, records, lambda p, n: next(v for k, v in replies.items() if f"question: {k}\n" in p), concurrency=3)
    rep = report(records, store)
    assert (rep["overall"]["correct"], rep["overall"]["n"]) == (4, 6)
    assert {d: (c["correct"], c["n"]) for d, c in rep["difficulty"].items()} == {"easy": (2, 3), "hard": (2, 3)}
    assert {b: (c["correct"], c["n"]) for b, c in rep["length"].items()} == {"short": (2, 2), "medium": (0, 2), "long": (2, 2)}
    assert rep["no_answer_extracted"] == 1 and rep["failures"] == []
    assert table_line(rep) == "66.7\t66.7\t66.7\t100.0\t0.0\t100.0"


# --- resume and failures --------------------------------------------------------------------------

def test_rerun_asks_nothing_again_and_retries_only_failed_requests(tmp_path):
    """A GenerationFailed record is listed, not counted; the rerun asks only it, then all are answered."""
    records = [record(i, question=f"Q{i}") for i in range(4)]
    asked = []

    def flaky(p, n):
        asked.append(p)
        if "Q2" in p and len(asked) <= 4:
            raise GenerationFailed("endpoint at http://x/v1/chat/completions: HTTP 400: too long")
        return "The correct answer is (A)"

    rep = report(records, run(tmp_path, records, flaky))
    assert (rep["answered"], rep["overall"]["correct"]) == (3, 3)
    assert [f["_id"] for f in rep["failures"]] == ["q2"] and "HTTP 400" in rep["failures"][0]["error"]
    rep = report(records, run(tmp_path, records, flaky))
    assert len(asked) == 5 and "Q2" in asked[-1]
    assert (rep["answered"], rep["overall"]["accuracy"], rep["failures"]) == (4, 1.0, [])


# --- bad records ------------------------------------------------------------------------------------

@pytest.mark.parametrize("jsonl", [False, True])
@pytest.mark.parametrize("change,message", [
    ({"choice_C": None}, r"{f}:2: choice_C: missing"),
    ({"answer": "E"}, r"{f}:2: answer: 'E' is not one of A, B, C, D"),
    ({"length": "huge"}, r"{f}:2: length: 'huge' is not one of short, medium, long"),
    ({"difficulty": 1}, r"{f}:2: difficulty: expected str, got int"),
    ({"_id": "q0"}, r"{f}:2: _id: 'q0' repeats record 1"),
])
def test_a_bad_record_names_file_record_and_field(tmp_path, jsonl, change, message):
    recs = [record(0), record(1)]
    for k, v in change.items():
        if v is None:
            del recs[1][k]
        else:
            recs[1][k] = v
    name = "d.jsonl" if jsonl else "d.json"
    (tmp_path / name).write_text("\n".join(map(json.dumps, recs)) if jsonl else json.dumps(recs))
    with pytest.raises(LongctxError, match=message.format(f=name.replace(".", r"\."))):
        load_records(tmp_path / name)


def test_empty_or_non_object_files_are_refused(tmp_path):
    (tmp_path / "e.json").write_text("[]")
    with pytest.raises(LongctxError, match="no records"):
        load_records(tmp_path / "e.json")
    (tmp_path / "n.json").write_text("[1]")
    with pytest.raises(LongctxError, match=r"n\.json:1: record is not an object"):
        load_records(tmp_path / "n.json")


# --- the command: keyed by data file and model -----------------------------------------------------

def test_cli_refuses_to_reuse_results_of_another_data_file(tmp_path, monkeypatch):
    """Same --out, another --data content: the meta error, before any model loads."""
    from longctx.cli.longbench_v2 import main as longbench_v2_main

    org = str(ORGANISM)
    (tmp_path / "a.json").write_text(json.dumps([record(0, context="x " * 10)]))
    assert longbench_v2_main([org, "--data", str(tmp_path / "a.json"), "--out", str(tmp_path / "o"),
                              "--max-new-tokens", "4"]) == 0
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert rep["records"] == 1 and rep["model"] == "organism"
    meta = json.loads((tmp_path / "o" / "results.json").read_text())["meta"]
    template = len("<|user|>\n\n<|assistant|>\n".encode())  # the organism's chat template around a user message, in bytes
    assert meta["max_length"] == 512 - 4 - template  # the window, minus the reply, minus the template
    (tmp_path / "b.json").write_text(json.dumps([record(0, context="y " * 10)]))
    import eval_longbench.models as models

    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("loaded a model for a refused run"))
    with pytest.raises(LongctxError, match="meta.data_sha256"):
        longbench_v2_main([org, "--data", str(tmp_path / "b.json"), "--out", str(tmp_path / "o"), "--max-new-tokens", "4"])


def test_cot_asks_twice_with_the_official_budgets_and_keeps_the_reasoning(tmp_path):
    """--cot: the reasoning prompt (with the document, 1024 new tokens), then the answer prompt
    (reasoning in, document out, 128 new tokens); the answer is read from the second reply only."""
    calls = []

    def gen(prompt, n):
        calls.append((prompt, n))
        return "I think the correct answer is B... Paris fits." if len(calls) == 1 else "The correct answer is (A)"

    store = ResultStore(tmp_path / "r.json", {})
    run_longbench_v2([record(context="THE DOCUMENT")], gen, TOK, V2Config(cot=True, max_length=4096), store, progress=False)
    (first, n1), (second, n2) = calls
    assert (n1, n2) == (1024, 128)
    assert "THE DOCUMENT" in first and "THE DOCUMENT" not in second and "Paris fits." in second
    rec = store.get("pred/q0")
    assert rec["response_cot"].endswith("Paris fits.") and (rec["pred"], rec["judge"]) == ("A", True)


@pytest.mark.parametrize("context", ["", " \n\t "])
def test_a_record_with_an_empty_context_is_refused_naming_the_record(tmp_path, context):
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in [record(0), record(1, context=context)]))
    with pytest.raises(LongctxError, match=r"d\.jsonl:2: context: empty"):
        load_records(tmp_path / "d.jsonl")


def test_a_latin1_file_is_one_line_saying_it_is_not_utf8(tmp_path):
    (tmp_path / "d.jsonl").write_bytes(json.dumps(record(0, context="caf\u00e9"), ensure_ascii=False).encode("latin-1"))
    with pytest.raises(LongctxError, match=r"d\.jsonl: not UTF-8 text \(byte 0xe9 at offset \d+\)"):
        load_records(tmp_path / "d.jsonl")


@pytest.mark.parametrize("indent", [None, 2])
def test_records_wrapped_in_an_object_are_named_as_such_not_as_a_missing_field(tmp_path, indent):
    (tmp_path / "d.json").write_text(json.dumps({"data": [record(0), record(1)]}, indent=indent))
    with pytest.raises(LongctxError, match=r"d\.json: a JSON object with key 'data' \(a list of 2\); expected a "
                                           r"JSON list of records or JSON lines"):
        load_records(tmp_path / "d.json")


def test_a_single_record_as_one_json_line_is_still_read(tmp_path):
    (tmp_path / "d.jsonl").write_text(json.dumps(record(0)) + "\n")
    assert [r["_id"] for r in load_records(tmp_path / "d.jsonl")] == ["q0"]


def test_a_server_failing_every_request_exits_2_like_needle(tmp_path, capsys):
    """HTTP 500 on every try: the answers are saved and reported, then the run is the one-line error
    needle gives (exit status 2), not accuracy null with status 0."""
    from support.chat_server import ChatServer
    from longctx.cli import main

    (tmp_path / "d.json").write_text(json.dumps([record(0), record(1)]))
    with ChatServer(default=("status", 500)) as srv:
        rc = main(["longbench-v2", "--endpoint", srv.url, "--served-model", "m", "--data", str(tmp_path / "d.json"),
                   "--out", str(tmp_path / "o"), "--max-new-tokens", "4", "--endpoint-tries", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("longctx longbench-v2: error: 2 of 2 requests got no reply (_id q0: ")
    assert "HTTP 500" in err[-1]
    assert json.loads((tmp_path / "o" / "report.json").read_text())["answered"] == 0
