"""LongBench-Chat: reading the files, middle truncation, generate -> judge -> report, resume, key hygiene."""

import json

import pytest

from eval_longbench.judge import OpenAIJudge
from eval_longbench.longbench_chat import (
    few_shots_for, generate_predictions, judge_predictions, load_cases, load_few_shots, report, truncate_middle,
)
from eval_longbench.models import chat_prompt
from eval_longbench.results import ResultStore
from longctx.core.errors import LongctxError
from longctx.core.tokenizer import byte_tokenizer
from support.chat_server import KEY, ChatServer

TOK = byte_tokenizer()


def write_cases(path, n=3, jsonl=False):
    cases = [{"idx": i, "prompt": f"Document {i}: " + "blah " * 40 + f"Question {i}?", "query": f"Question {i}?",
              "answer": f"Answer {i}."} for i in range(1, n + 1)]
    path.write_text("\n".join(json.dumps(c) for c in cases) if jsonl else json.dumps(cases))
    return path


def write_shots(path, n=3):
    path.write_text(json.dumps([[{"answer": f"ex{i}-{j}", "score": 10 - 3 * j} for j in range(3)] for i in range(n)]))
    return path


def test_real_few_shot_file_builds_prompts(shared_data):
    """The benchmark's own few-shot file (50 x 3) loads, and entry i goes to case idx i+1."""
    from eval_longbench.judge import build_judge_prompt

    path = shared_data / "longbench_chat_few_shots.json"
    shots = load_few_shots(path)
    assert len(shots) == 50 and all(len(e) == 3 for e in shots)
    raw = json.loads(path.read_text())
    for idx in (1, 50):
        p = build_judge_prompt("Q", "R", few_shots_for(shots, idx), "P")
        for ex in raw[idx - 1]:
            assert ex["answer"] in p and f"[[{ex['score']}]]" in p
    with pytest.raises(LongctxError, match="none for case idx 51"):
        few_shots_for(shots, 51)


@pytest.mark.parametrize("jsonl", [False, True])
def test_missing_field_names_file_record_and_field(tmp_path, jsonl):
    """A case without `answer` is reported as file:record: answer (record = JSONL line or list position)."""
    p = write_cases(tmp_path / "c.json", 3, jsonl)
    recs = [json.loads(line) for line in p.read_text().splitlines()] if jsonl else json.loads(p.read_text())
    del recs[1]["answer"]
    p.write_text("\n".join(map(json.dumps, recs)) if jsonl else json.dumps(recs))
    with pytest.raises(LongctxError, match=r"c\.json:2: answer: missing"):
        load_cases(p)


def test_bad_inputs_are_clear_errors(tmp_path):
    """Empty file, wrong type, repeated idx and a malformed few-shot entry each give a one-line error."""
    (tmp_path / "e.json").write_text("  \n")
    with pytest.raises(LongctxError, match="empty"):
        load_cases(tmp_path / "e.json")
    (tmp_path / "t.jsonl").write_text('{"idx": "1", "prompt": "p", "query": "q", "answer": "a"}\n')
    with pytest.raises(LongctxError, match="t.jsonl:1: idx: expected int, got str"):
        load_cases(tmp_path / "t.jsonl")
    (tmp_path / "d.jsonl").write_text('{"idx": 1, "prompt": "p", "query": "q", "answer": "a"}\n' * 2)
    with pytest.raises(LongctxError, match="d.jsonl:2: idx: 1 repeats record 1"):
        load_cases(tmp_path / "d.jsonl")
    (tmp_path / "s.json").write_text(json.dumps([[{"answer": "a"}]]))
    with pytest.raises(LongctxError, match=r"\[0\]\[0\]\.score"):
        load_few_shots(tmp_path / "s.json")


def test_middle_truncation_keeps_both_ends():
    """A 1000-token prompt cut to 100 keeps exactly its first 50 and last 50 tokens; short prompts pass unchanged."""
    text = "".join(chr(ord("a") + i % 26) for i in range(1000))
    cut = truncate_middle(TOK, text, 100)
    assert cut == text[:50] + text[-50:]
    assert truncate_middle(TOK, "short", 100) == "short"


def test_chat_template_wraps_the_prompt():
    """Generation input goes through the tokenizer's chat template, ending where the assistant speaks."""
    s = chat_prompt(TOK, "Hello?")
    assert s.startswith("<|user|>\nHello?") and s.endswith("<|assistant|>\n")


def run_pipeline(tmp_path, url, generate, key=KEY, n=3):
    cases = load_cases(write_cases(tmp_path / "cases.json", n))
    shots = load_few_shots(write_shots(tmp_path / "shots.json", n))
    store = ResultStore(tmp_path / "out" / "results.json", {"model": "m"})
    preds = generate_predictions(cases, generate, TOK, store, max_length=64, max_new_tokens=8, progress=False)
    judge = OpenAIJudge(url, "j", api_key=key, timeout=5, max_tries=2, backoff=0.0, sleep=lambda s: None)
    judge_predictions(cases, preds, shots, judge, store, concurrency=2, progress=False)
    return cases, store


def test_pipeline_scores_resumes_and_retries_failures(tmp_path):
    """Mean over rated cases; an unrated case is listed; the rerun generates nothing, re-judges only
    the failed case, and then every case is rated."""
    prompts = []
    gen = lambda p, n: prompts.append(p) or f"answer to {p[-12:]}"  # noqa: E731
    script = [("ok", "[[8]]"), ("ok", "[[4]]"), ("ok", "no rating"), ("ok", "still none")]
    with ChatServer(script, default=("ok", "nope")) as srv:
        cases, store = run_pipeline(tmp_path, srv.url, gen)
        rep = report(cases, store)
    assert len(prompts) == 3 and all(len(TOK(p, add_special_tokens=False)["input_ids"]) <= 64 for p in prompts)
    assert rep["rated"] == 2 and rep["mean_score"] == 6.0 and len(rep["failures"]) == 1
    with ChatServer(default=("ok", "now fine [[10]]")) as srv:
        cases, store = run_pipeline(tmp_path, srv.url, gen)
        rep = report(cases, store)
        assert len(srv.requests) == 1
    assert len(prompts) == 3
    assert rep["rated"] == 3 and rep["mean_score"] == pytest.approx(22 / 3) and rep["failures"] == []


def test_unreachable_judge_keeps_predictions(tmp_path):
    """With no judge listening the run fails with a clear error, and the predictions are on disk."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    s.close()
    with pytest.raises(LongctxError, match="unreachable"):
        run_pipeline(tmp_path, url, lambda p, n: "pred")
    recs = json.loads((tmp_path / "out" / "results.json").read_text())["records"]
    assert sorted(recs) == ["pred/1", "pred/2", "pred/3"]


def test_cli_end_to_end_never_writes_the_key(tiny_llama, tmp_path, monkeypatch, capsys):
    """`longctx longbench-chat` with a tiny model and a loopback judge writes report.json; the key,
    set in the environment and echoed by the server, appears in no output file and no log."""
    from longctx.cli.longbench_chat import main as longbench_chat_main

    monkeypatch.setenv("LBC_TEST_KEY", KEY)
    write_cases(tmp_path / "cases.jsonl", 2, jsonl=True)
    write_shots(tmp_path / "shots.json", 2)
    out = tmp_path / "out"
    with ChatServer(default=("ok", f"echo {KEY}. Rating: [[3]]")) as srv:
        rc = longbench_chat_main([str(tiny_llama), "--cases", str(tmp_path / "cases.jsonl"), "--few-shots",
                                  str(tmp_path / "shots.json"), "--out", str(out), "--max-length", "48",
                                  "--max-new-tokens", "4", "--judge-url", srv.url, "--judge-key-env", "LBC_TEST_KEY"])
        assert srv.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"
    assert rc == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["mean_score"] == 3.0 and [c["idx"] for c in rep["per_case"]] == [1, 2]
    logs = capsys.readouterr()
    for text in [logs.out, logs.err] + [f.read_text() for f in out.iterdir()]:
        assert KEY not in text


def test_no_key_prefix_reaches_results_report_or_logs(tiny_llama, tmp_path, monkeypatch, capsys):
    """A judge whose 500 bodies echo 'Authorization: Bearer KEY' with the key straddling the
    300-character cut at every offset: no 4+-character prefix of the key is in results.json,
    report.json, stdout or stderr (the old code cut first, then redacted the whole key only)."""
    from longctx.cli.longbench_chat import main as longbench_chat_main
    from eval_longbench.judge import ERROR_BODY_CHARS

    monkeypatch.setenv("LBC_TEST_KEY", KEY)
    pads = list(range(ERROR_BODY_CHARS - len(KEY) - 24, ERROR_BODY_CHARS + 1, 3))
    write_cases(tmp_path / "cases.jsonl", len(pads), jsonl=True)
    write_shots(tmp_path / "shots.json", len(pads))
    script = [("raw", 500, ("p" * pad + f"Authorization: Bearer {KEY} rest").encode(), {}) for pad in pads]
    out = tmp_path / "out"
    with ChatServer(script) as srv, pytest.raises(LongctxError) as failed:  # no rating: exit 2, as needle
        longbench_chat_main([str(tiny_llama), "--cases", str(tmp_path / "cases.jsonl"), "--few-shots",
                             str(tmp_path / "shots.json"), "--out", str(out), "--max-length", "16",
                             "--max-new-tokens", "1", "--judge-url", srv.url, "--judge-key-env", "LBC_TEST_KEY",
                             "--judge-tries", "1"])
    assert len(srv.requests) == len(pads)
    logs = capsys.readouterr()
    rep = json.loads((out / "report.json").read_text())
    assert len(rep["failures"]) == len(pads) and all("HTTP 500" in f["error"] for f in rep["failures"])
    for text in [logs.out, logs.err, str(failed.value), (out / "results.json").read_text(),
                 (out / "report.json").read_text()]:
        leaked = [KEY[:n] for n in range(4, len(KEY) + 1) if KEY[:n] in text]
        assert not leaked, leaked[-1]


def test_scores_of_another_judge_are_rated_again_not_reused(tmp_path):
    """With judge_id, a rerun under the same judge asks nothing; another judge re-rates every case."""
    cases = load_cases(write_cases(tmp_path / "cases.json", 2))
    shots = load_few_shots(write_shots(tmp_path / "shots.json", 2))
    store = ResultStore(tmp_path / "r.json", {"model": "m"})
    preds = generate_predictions(cases, lambda p, n: "pred", TOK, store, max_length=64, progress=False)
    for judge_id, reply, asked in [("judge A", "[[8]]", 2), ("judge A", "[[1]]", 0), ("judge B", "[[3]]", 2)]:
        with ChatServer(default=("ok", reply)) as srv:
            judge = OpenAIJudge(srv.url, "j", timeout=5, max_tries=1, sleep=lambda s: None)
            judge_predictions(cases, preds, shots, judge, store, progress=False, judge_id=judge_id)
        assert len(srv.requests) == asked
    rep = report(cases, store)
    assert rep["mean_score"] == 3.0 and {store.get(f"score/{i}")["judge"] for i in (1, 2)} == {"judge B"}
