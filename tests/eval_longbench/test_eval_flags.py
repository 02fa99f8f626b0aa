"""Numeric and device flags of `longctx needle`, `ppl` and `longbench-chat` are checked before any
model loads: a one-line error naming the flag, never a traceback or a silently different run."""

import json

import pytest

from eval_longbench.flags import check_device
from longctx.cli.longbench_chat import main as longbench_chat_main
from longctx.cli.needle import main as needle_main
from longctx.cli.ppl import main as ppl_main
from longctx.core.errors import LongctxError


@pytest.fixture()
def files(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "cases.json").write_text(json.dumps([{"idx": 1, "prompt": "p", "query": "q", "answer": "a"}]))
    (tmp_path / "shots.json").write_text(json.dumps([[{"answer": "x", "score": 5}]]))
    return tmp_path


def needle(t, *extra):
    return needle_main, [str(t / "m"), "--out", str(t / "o"), *extra]


def ppl(t, *extra):
    return ppl_main, [str(t / "m"), "--out", str(t / "o"), *extra]


def lbc(t, *extra):
    return longbench_chat_main, [str(t / "m"), "--cases", str(t / "cases.json"), "--few-shots", str(t / "shots.json"),
                                 "--out", str(t / "o"), "--judge-url", "http://127.0.0.1:9/v1", *extra]


BAD = [
    (needle, ["--max-new-tokens", "0"], "--max-new-tokens: must be at least 1"),
    (needle, ["--max-new-tokens", "-3"], "--max-new-tokens: must be at least 1"),
    (lbc, ["--max-new-tokens", "0"], "--max-new-tokens: must be at least 1"),
    (needle, ["--scoring", "judge", "--judge-url", "http://x/v1", "--judge-timeout", "nan"], "--judge-timeout: must be a finite"),
    (lbc, ["--judge-timeout", "-1"], "--judge-timeout: must be a finite"),
    (lbc, ["--judge-timeout", "0"], "--judge-timeout: must be a finite"),
    (lbc, ["--judge-timeout", "inf"], "--judge-timeout: must be a finite"),
    (lbc, ["--judge-tries", "0"], "--judge-tries: must be at least 1"),
    (lbc, ["--concurrency", "0"], "--concurrency: must be at least 1"),
    (ppl, ["--chunk-size", "0"], "--chunk-size: must be at least 1"),
    (ppl, ["--stride", "0"], "--stride: must be at least 1"),
    (ppl, ["--max-tokens", "-10"], "--max-tokens: must be at least 2"),
    (ppl, ["--lengths=-5,64"], "--lengths: '-5' must be a positive length"),
    (lbc, ["--max-length", "0"], "--max-length: must be at least 2"),
    (needle, ["--device", "tpu9"], "--device: 'tpu9' is not a torch device"),
    (ppl, ["--device", "tpu9"], "--device: 'tpu9' is not a torch device"),
    (lbc, ["--device", "cuda:99"], "--device: 'cuda:99'"),
    (needle, ["--samples", "0"], "--samples: must be at least 1"),
]


@pytest.mark.parametrize("make,extra,message", BAD, ids=[f"{m.__name__}{' '.join(e)}" for m, e, _ in BAD])
def test_bad_numeric_or_device_flag_is_a_one_line_error_before_loading(files, make, extra, message, monkeypatch):
    """Each bad value is refused up front (the empty model dir is never loaded) with one line naming the flag."""
    import eval_longbench.models as models

    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("loaded a model despite a bad flag"))
    main, argv = make(files, *extra)
    with pytest.raises(LongctxError) as err:
        main(argv)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (files / "o" / "results.json").exists()


def test_ppl_lengths_below_two_blame_lengths_not_flags_the_user_never_passed(files, monkeypatch):
    """`longctx ppl --lengths 1` names --lengths (the flag given), not --max-tokens / --chunk-size."""
    import eval_longbench.models as models

    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("loaded a model despite a bad flag"))
    main, argv = ppl(files, "--lengths", "1")
    with pytest.raises(LongctxError) as err:
        main(argv)
    assert str(err.value).startswith("--lengths: the largest length, 1, is below 2")
    assert "--max-tokens" not in str(err.value) and "--chunk-size" not in str(err.value)


def test_ppl_library_names_lengths_when_no_max_tokens_is_given(tmp_path):
    from eval_longbench.ppl import run_ppl
    from eval_longbench.results import ResultStore

    with pytest.raises(LongctxError, match="^--lengths: the largest length, 1, is below 2"):
        run_ppl(None, list(range(100)), [1], ResultStore(tmp_path / "r.json", {}), model_name="m")


def test_check_device_accepts_cpu():
    check_device("cpu")
    check_device("cpu:0")


def test_judge_object_refuses_a_nonsense_timeout_or_try_count():
    """The library object checks too, so callers other than the CLI get the same one-line errors."""
    from eval_longbench.judge import OpenAIJudge

    for kw, flag in [({"timeout": float("nan")}, "--judge-timeout"), ({"timeout": 0}, "--judge-timeout"),
                     ({"max_tries": 0}, "--judge-tries")]:
        with pytest.raises(LongctxError, match=flag):
            OpenAIJudge("http://127.0.0.1:9/v1", "m", **kw)
    with pytest.raises(LongctxError, match="--judge-url"):
        OpenAIJudge("ftp://host/v1", "m")


def test_ppl_library_refuses_max_tokens_below_two(tmp_path):
    """run_ppl(max_tokens=-10) used to score token_ids[:-10], another span than asked."""
    from eval_longbench.ppl import run_ppl
    from eval_longbench.results import ResultStore

    with pytest.raises(LongctxError, match="--max-tokens: -10"):
        run_ppl(None, list(range(100)), [64], ResultStore(tmp_path / "r.json", {}), model_name="m", max_tokens=-10)
