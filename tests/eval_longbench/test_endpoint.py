"""Models behind an OpenAI-compatible endpoint: the shared client's rules for generation, the CLI's
model source flags, and `longctx needle` / `longbench-v2` over a loopback server that serves the
shipped organism's own replies (same scores as the local run; the key never written)."""

import json

import pytest

from eval_longbench.chat_client import ChatClient, EndpointUnreachable, GenerationFailed
from eval_longbench.models import load_model
from longctx.cli.longbench_chat import main as longbench_chat_main
from longctx.cli.longbench_v2 import main as longbench_v2_main
from longctx.cli.needle import main as needle_main
from longctx.cli.ppl import main as ppl_main
from longctx.cli.ruler import main as ruler_main
from longctx.core.errors import LongctxError
from support import ORGANISM
from support.chat_server import KEY, ChatServer, scripted_client, unused_port


@pytest.fixture(scope="module")
def organism():
    return load_model(ORGANISM)


def client(url, max_tries=3, **kw):
    """The endpoint's chat client with small timeouts whose sleeps are recorded instead of slept."""
    return scripted_client(ChatClient, url, "served", max_tries=max_tries, **kw)


# --- generation through the shared client: the judge's rules ------------------------------------

def test_generate_sends_a_greedy_user_message_with_the_token_budget():
    """One user message (no system), temperature 0, max_tokens = max_new_tokens, the served name, the key."""
    with ChatServer(default=("ok", "the reply")) as srv:
        c, _ = client(srv.url)
        assert c.generate_fn()("the prompt", 7) == "the reply"
    body = srv.requests[0]["body"]
    assert body["messages"] == [{"role": "user", "content": "the prompt"}]
    assert (body["temperature"], body["max_tokens"], body["model"]) == (0, 7, "served")
    assert srv.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"


def test_generate_retries_429_5xx_timeouts_and_drops():
    """Transient failures are retried with the back-off, as for the judge; the fifth try answers."""
    script = [("status", 429), ("status", 503), ("slow", 1.5, "late"), ("drop",)]
    with ChatServer(script, default=("ok", "finally")) as srv:
        c, sleeps = client(srv.url, timeout=0.5, max_tries=5)
        assert c.generate_fn()("p", 4) == "finally"
    assert len(srv.requests) == 5 and len(sleeps) == 4


@pytest.mark.parametrize("status, error, match", [
    (400, GenerationFailed, "HTTP 400"),  # a rejected prompt (e.g. over the server's window): that prompt fails
    (401, LongctxError, "HTTP 401.*--endpoint, --served-model"),  # wrong key or model: the run stops, naming the flags
], ids=["rejected-prompt", "wrong-key-or-model"])
def test_a_rejected_prompt_or_a_wrong_key_fails_after_one_request(status, error, match):
    """Neither is retried: one request, then the error (GenerationFailed for the prompt, the run's error for the key)."""
    with ChatServer(default=("status", status)) as srv:
        c, _ = client(srv.url)
        with pytest.raises(error, match=match):
            c.generate_fn()("p", 4)
    assert len(srv.requests) == 1


def test_an_unreachable_endpoint_is_a_clear_error():
    port = unused_port()
    c, _ = client(f"http://127.0.0.1:{port}/v1", max_tries=2)
    with pytest.raises(EndpointUnreachable, match=f"endpoint at http://127.0.0.1:{port}.*unreachable"):
        c.generate_fn()("p", 4)


def test_a_reply_echoing_the_key_is_redacted():
    with ChatServer(default=("ok", f"key is {KEY}")) as srv:
        c, _ = client(srv.url)
        out = c.generate_fn()("p", 4)
    assert KEY not in out and "***" in out and KEY not in repr(c)


def test_cross_origin_redirect_names_the_endpoint_flag():
    with ChatServer() as other, ChatServer(default=("raw", 307, b"", {"Location": other.url + "/chat/completions"})) as srv:
        c, _ = client(srv.url)
        with pytest.raises(LongctxError, match="redirects to another origin.*--endpoint"):
            c.generate_fn()("p", 4)
    assert other.requests == []


# --- the model source flags ---------------------------------------------------------------------

@pytest.fixture()
def files(tmp_path):
    (tmp_path / "m").mkdir()
    return tmp_path


FLAG_ERRORS = [
    (needle_main, ["--endpoint", "http://127.0.0.1:9/v1"], "--served-model: needed with --endpoint"),
    (needle_main, ["{m}", "--endpoint", "http://127.0.0.1:9/v1", "--served-model", "x"], "--endpoint: give either"),
    (needle_main, [], "MODEL: give a checkpoint directory, or --endpoint"),
    (needle_main, ["--endpoint", "http://127.0.0.1:9/v1", "--served-model", "x"], "--tokenizer: needle builds prompts to exact lengths"),
    (needle_main, ["{m}", "--tokenizer", "{m}"], "--tokenizer: only with --endpoint"),
    (needle_main, ["--endpoint", "ftp://h/v1", "--served-model", "x", "--tokenizer", "{m}"], "--endpoint: 'ftp://h/v1' is not an http(s) URL"),
    (needle_main, ["--endpoint", "http://h/v1", "--served-model", "x", "--api-key-env", "LONGCTX_TEST_UNSET_VAR"],
     "--api-key-env: $LONGCTX_TEST_UNSET_VAR is not set"),
    (needle_main, ["--endpoint", "http://h/v1", "--served-model", "x", "--endpoint-timeout", "nan"], "--endpoint-timeout: must be a finite"),
    (ppl_main, ["--endpoint", "http://h/v1", "--served-model", "x"], "--endpoint: ppl needs the model's logits"),
    (longbench_v2_main, ["--endpoint", "http://h/v1", "--served-model", "x", "--data", "{m}/d.json", "--max-length", "9"],
     "--max-length: counted in the served model's tokens; pass --tokenizer"),
]


@pytest.mark.parametrize("main,argv,message", FLAG_ERRORS, ids=[m for _, _, m in FLAG_ERRORS])
def test_model_source_flag_errors_are_one_line_before_anything_loads(files, main, argv, message, monkeypatch):
    import eval_longbench.models as models

    monkeypatch.delenv("LONGCTX_TEST_UNSET_VAR", raising=False)
    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("loaded a model despite a bad flag"))
    (files / "m" / "d.json").write_text("[]")
    argv = [x.replace("{m}", str(files / "m")) for x in argv] + ["--out", str(files / "o")]
    with pytest.raises(LongctxError) as err:
        main(argv)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (files / "o").exists()


# --- whole evaluations over a loopback server serving the organism ------------------------------

NEEDLE = ["--lengths", "200,400", "--depths", "2", "--task", "passkey", "--max-new-tokens", "24"]


def cells(out):
    recs = json.loads((out / "results.json").read_text())["records"]
    return {k.split("|", 1)[1]: (v["score"], [s["prediction"] for s in v["samples"]]) for k, v in recs.items()}


@pytest.mark.slow  # two needle runs of the real organism (4 cells x 24 new tokens each): ~15-40 s on 2 busy cores
def test_needle_over_the_endpoint_scores_like_the_local_run(organism, tmp_path, monkeypatch, capsys):
    """`longctx needle --endpoint` with the organism's tokenizer gives the local --chat run's
    predictions and scores cell for cell; the key goes in the Authorization header and nowhere else."""
    model, tok = organism
    monkeypatch.setenv("LONGCTX_TEST_KEY", KEY)
    assert needle_main([str(ORGANISM), "--chat", "--out", str(tmp_path / "local"), *NEEDLE]) == 0
    with ChatServer(model=model, tokenizer=tok) as srv:
        assert needle_main(["--endpoint", srv.url, "--served-model", "organism", "--tokenizer", str(ORGANISM),
                            "--api-key-env", "LONGCTX_TEST_KEY", "--out", str(tmp_path / "served"), *NEEDLE]) == 0
    local, served = cells(tmp_path / "local"), cells(tmp_path / "served")
    assert served == local and len(local) == 4
    assert any(score > 0 for score, _ in local.values())  # the organism finds passkeys inside its window
    assert len(srv.requests) == 4 and all(r["headers"]["Authorization"] == f"Bearer {KEY}" for r in srv.requests)
    logs = capsys.readouterr()
    for text in [logs.out, logs.err, *(f.read_text(errors="replace") for f in (tmp_path / "served").iterdir())]:
        assert KEY not in text
    meta = json.loads((tmp_path / "served" / "results.json").read_text())
    assert meta["meta"]["chat"] is True and meta["models"]["organism"].startswith(f"endpoint {srv.url.rsplit('/', 1)[0]}/v1 model organism")


def test_another_served_model_under_the_same_name_is_not_given_old_results(organism, tmp_path):
    """Results are keyed by endpoint + served model + tokenizer: the same --names with another served
    model into the same --out is the meta error, not a reuse."""
    model, tok = organism
    out = tmp_path / "o"
    with ChatServer(model=model, tokenizer=tok, served_name="a") as srv:
        base = ["--endpoint", srv.url, "--tokenizer", str(ORGANISM), "--names", "m", "--out", str(out),
                "--lengths", "200", "--depths", "1", "--max-new-tokens", "2"]
        assert needle_main([*base, "--served-model", "a"]) == 0
        with pytest.raises(LongctxError, match="meta.models.m: .*model a .*model b"):
            needle_main([*base, "--served-model", "b"])
    assert len(srv.requests) == 1


def v2_records(n=3):
    return [{"_id": f"q{i}", "domain": "Single-Document QA", "sub_domain": "s", "difficulty": ["easy", "hard"][i % 2],
             "length": ["short", "medium", "long"][i % 3], "question": f"What is the pass key {i}?", "choice_A": "12345",
             "choice_B": "23456", "choice_C": "34567", "choice_D": "45678", "answer": "ABCD"[i % 4],
             "context": "The grass is green. " * (20 + 40 * i)} for i in range(n)]


def test_longbench_v2_over_the_endpoint_answers_like_the_local_run(organism, tmp_path):
    """Same prompts (middle-truncated in the organism's tokens to its window), same replies, same report."""
    model, tok = organism
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in v2_records()))
    common = ["--data", str(data), "--max-new-tokens", "8"]
    assert longbench_v2_main([str(ORGANISM), "--out", str(tmp_path / "local"), *common]) == 0
    with ChatServer(model=model, tokenizer=tok) as srv:
        assert longbench_v2_main(["--endpoint", srv.url, "--served-model", "organism", "--tokenizer", str(ORGANISM),
                                  "--out", str(tmp_path / "served"), *common]) == 0

    def answers(d):
        recs = json.loads((d / "results.json").read_text())["records"]
        return {k: (r["response"], r["prompt_tokens"], r["truncated"]) for k, r in recs.items()}

    local = answers(tmp_path / "local")
    assert answers(tmp_path / "served") == local and len(local) == 3
    assert any(t for _, _, t in local.values())  # the longest context was cut to the window
    rep_l = json.loads((tmp_path / "local" / "report.json").read_text())
    rep_s = json.loads((tmp_path / "served" / "report.json").read_text())
    assert {k: v for k, v in rep_l.items() if k != "model"} == {k: v for k, v in rep_s.items() if k != "model"}


def test_longbench_chat_over_an_endpoint_without_tokenizer_sends_prompts_whole(organism, tmp_path, capsys):
    """No --tokenizer: nothing is counted in tokens, prompts go whole, and the meta says so; the
    predictions equal the local run's when the local cut does not bite."""
    model, tok = organism
    cases = [{"idx": i, "prompt": f"The pass key is {i}2345. " * 3 + "What is the pass key?", "query": "q", "answer": "a"}
             for i in (1, 2)]
    (tmp_path / "c.json").write_text(json.dumps(cases))
    (tmp_path / "s.json").write_text(json.dumps([[{"answer": "x", "score": 5}]] * 2))
    common = ["--cases", str(tmp_path / "c.json"), "--few-shots", str(tmp_path / "s.json"), "--generate-only",
              "--max-new-tokens", "12"]
    assert longbench_chat_main([str(ORGANISM), "--out", str(tmp_path / "local"), *common]) == 0
    with ChatServer(model=model, tokenizer=tok) as srv:
        assert longbench_chat_main(["--endpoint", srv.url, "--served-model", "organism",
                                    "--out", str(tmp_path / "served"), *common]) == 0
    assert "prompts are sent whole" in capsys.readouterr().out
    assert [r["body"]["messages"][-1]["content"] for r in srv.requests] == [c["prompt"] for c in cases]
    local = json.loads((tmp_path / "local" / "results.json").read_text())
    served = json.loads((tmp_path / "served" / "results.json").read_text())
    assert served["records"] == local["records"] and len(local["records"]) == 2
    assert served["meta"]["truncation"].startswith("none") and local["meta"]["truncation"] == "tokens"


def test_results_key_an_endpoint_without_its_credentials_or_query():
    """A user:password or ?key= in --endpoint never reaches results.json or logs through the key."""
    from eval_longbench.model_source import ModelSource, endpoint_id

    assert endpoint_id("https://user:pw@Host.example:8443/v1/?api_key=abc") == "https://host.example:8443/v1"
    key = ModelSource("m", endpoint="http://user:pw@h/v1?k=s", served_model="x").fingerprint_key()
    assert key == "endpoint http://h:80/v1 model x tokenizer none"


@pytest.mark.slow  # a small RULER run of the real organism: ~10-30 s on 2 busy cores
def test_ruler_over_the_endpoint_sends_the_local_prompt_with_the_prefix_in_the_user_turn(organism, tmp_path):
    """`longctx ruler --endpoint` with the organism's tokenizer sends what a local run feeds the model, task
    text and answer prefix, but as one user message (a chat call cannot open the assistant's turn; RULER's
    API clients send it so too); the lengths count the chat template the server wraps it in."""
    from eval_longbench.models import chat_prompt
    from eval_longbench.ruler.base import GenContext
    from eval_longbench.ruler.registry import TASKS
    from eval_longbench.ruler.runner import sample_seed

    model, tok = organism
    with ChatServer(model=model, tokenizer=tok) as srv:
        assert ruler_main(["--endpoint", srv.url, "--served-model", "organism", "--tokenizer", str(ORGANISM),
                           "--out", str(tmp_path / "served"), "--lengths", "512", "--tasks", "niah_single_1,niah_multikey_2",
                           "--samples", "2", "--max-new-tokens", "32"]) == 0
    sent = sorted(r["body"]["messages"][-1]["content"] for r in srv.requests)
    local = [TASKS[t].generate(GenContext(tok, chat=True), 512, 480, sample_seed(0, t, 512, i)).prompt
             for t in ("niah_single_1", "niah_multikey_2") for i in range(2)]
    head, tail = chat_prompt(tok, "X").split("X")  # local: template(task) + prefix; sent: task + prefix
    assert sent == sorted(p[len(head):].replace(tail, "", 1) for p in local) and len(sent) == 4
    recs = json.loads((tmp_path / "served" / "results.json").read_text())["records"].values()
    assert [r["n_tokens"] for r in recs] == [480] * 4
    assert all(len(tok(chat_prompt(tok, m), add_special_tokens=False)["input_ids"]) == 480 for m in sent)


def test_ruler_over_an_endpoint_needs_its_tokenizer(tmp_path):
    """RULER builds prompts to exact token lengths: an endpoint without --tokenizer is refused up front."""
    with pytest.raises(LongctxError, match="--tokenizer: ruler builds prompts to exact lengths"):
        ruler_main(["--endpoint", "http://127.0.0.1:9/v1", "--served-model", "m", "--out", str(tmp_path / "o")])
