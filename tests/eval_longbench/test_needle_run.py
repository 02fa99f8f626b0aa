"""The needle/passkey runner: scores, heatmap numbers, resume, and the CLI on a tiny model."""

import json
import re

import pytest

from eval_longbench.needle import NeedleConfig, build_sample, depth_grid, run_needle, score_contains, score_exact
from eval_longbench.plots import heatmap_matrix
from eval_longbench.results import ResultStore
from longctx.core.errors import LongctxError
from longctx.core.tokenizer import byte_tokenizer

TOK = byte_tokenizer()


def window_stub(window: int):
    """A fake model that sees only the last ``window`` tokens and echoes the pass key if it is there."""

    def generate(prompt, max_new_tokens):
        ids = TOK(prompt, add_special_tokens=False)["input_ids"][-window:]
        m = re.search(r"pass key is (\d+)", TOK.decode(ids))
        return f" {m.group(1)}. It is." if m else " I do not know."

    return generate


def test_heatmap_scores_follow_what_the_model_can_see(tmp_path):
    """A model with a 200-token window finds every needle at 256 tokens, and at 512/1024 only the
    needle at depth 100% (the others are more than 200 tokens from the end)."""
    cfg = NeedleConfig(task="passkey", lengths=[256, 512, 1024], depths=[0.0, 0.5, 1.0], samples=2)
    cells = run_needle(window_stub(200), TOK, cfg, ResultStore(tmp_path / "r.json", cfg.meta()), model_name="w200", progress=False)
    lengths, depths, m = heatmap_matrix(cells)
    assert lengths == [256, 512, 1024] and depths == [0.0, 0.5, 1.0]
    assert m == [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 1.0]]


def test_every_cell_prompt_has_the_cell_length_and_depth(tmp_path):
    """Each stored sample records a prompt of exactly the cell's length and a needle near the cell's depth."""
    cfg = NeedleConfig(lengths=[300, 700], depths=[0.0, 0.5, 1.0])
    cells = run_needle(window_stub(10_000), TOK, cfg, ResultStore(tmp_path / "r.json", cfg.meta()), model_name="m", progress=False)
    for c in cells:
        for s in c["samples"]:
            assert s["n_tokens"] == c["length"]
            assert abs(s["needle_depth"] - c["depth"]) < 0.15
            assert s["score"] == 1.0


def test_multi_needle_task_asks_for_one_key_among_distractors():
    """With 4 needles, answering with the first magic number in the text is usually wrong; reading the
    number after the asked key is always right."""
    cfg = NeedleConfig(task="needle", num_needles=4)
    right, first = [], []
    for seed in range(8):
        s = build_sample(TOK, cfg, 900, 0.5, seed)
        key = re.search(r"magic number for (\S+) mentioned", s["question"]).group(1)
        assert len(re.findall(r"One of the special magic numbers for", s["prompt"])) == 4
        right.append(score_exact(re.search(rf"for {key} is: (\d+)", s["prompt"]).group(1), s["answer"]))
        first.append(score_exact(re.search(r"is: (\d+)", s["prompt"]).group(1), s["answer"]))
    assert right == [1.0] * 8
    assert sum(first) <= 4


def test_exact_scoring_reads_the_first_number_only():
    """'12345' inside a longer number or after a different number is not a match; a plain echo is."""
    assert score_exact(" 12345. Remember it.", "12345") == 1.0
    assert score_exact("123456", "12345") == 0.0
    assert score_exact("It is 99999, not 12345", "12345") == 0.0
    assert score_exact("", "12345") == 0.0
    assert score_contains("Eat a Sandwich in  Dolores Park.", "eat a sandwich in dolores park") == 1.0
    assert score_contains("Golden Gate", "dolores park") == 0.0


def test_interrupted_run_resumes_without_redoing_finished_cells(tmp_path):
    """A run killed after 3 cells keeps them; the rerun generates only the other cells, and the final
    file equals an uninterrupted run's."""
    cfg = NeedleConfig(lengths=[256, 512], depths=[0.0, 0.5, 1.0])
    calls = []
    stub = window_stub(200)

    def dying(prompt, n):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(prompt)
        return stub(prompt, n)

    path = tmp_path / "r.json"
    with pytest.raises(KeyboardInterrupt):
        run_needle(dying, TOK, cfg, ResultStore(path, cfg.meta()), model_name="m", progress=False)
    assert len(json.loads(path.read_text())["records"]) == 3

    again = []
    run_needle(lambda p, n: again.append(p) or stub(p, n), TOK, cfg, ResultStore(path, cfg.meta()), model_name="m", progress=False)
    assert len(again) == 3 and not set(again) & set(calls)

    fresh = tmp_path / "fresh.json"
    run_needle(stub, TOK, cfg, ResultStore(fresh, cfg.meta()), model_name="m", progress=False)
    assert json.loads(path.read_text()) == json.loads(fresh.read_text())


def test_resume_refuses_a_file_written_with_other_settings(tmp_path):
    """Reopening results.json with a different task is an error naming the field, not a silent mix."""
    a = NeedleConfig(task="passkey", lengths=[256], depths=[0.5])
    run_needle(window_stub(50), TOK, a, ResultStore(tmp_path / "r.json", a.meta()), model_name="m", progress=False)
    b = NeedleConfig(task="needle", lengths=[256], depths=[0.5])
    with pytest.raises(LongctxError, match="meta.task"):
        ResultStore(tmp_path / "r.json", b.meta())


def test_depth_grid_spacings():
    """Linear spacing is even; sigmoid spacing keeps the ends and packs points toward them."""
    assert depth_grid(5) == [0.0, 0.25, 0.5, 0.75, 1.0]
    s = depth_grid(7, "sigmoid")
    assert s[0] == 0.0 and s[-1] == 1.0 and s[3] == pytest.approx(0.5)
    assert s[1] - s[0] < s[3] - s[2]


def test_tiny_model_runs_through_the_grid(tiny_llama, tmp_path):
    """A real (random) HF model goes through generation; every cell has a prediction and a 0/1 score."""
    from eval_longbench.models import hf_generate_fn, load_model

    model, tok = load_model(tiny_llama)
    cfg = NeedleConfig(lengths=[200], depths=[0.0, 1.0], max_new_tokens=6)
    cells = run_needle(hf_generate_fn(model, tok), tok, cfg, ResultStore(tmp_path / "r.json", cfg.meta()), model_name="t", progress=False)
    assert [c["depth"] for c in cells] == [0.0, 1.0]
    for c in cells:
        assert isinstance(c["samples"][0]["prediction"], str) and c["score"] in (0.0, 1.0)


def test_needle_cli_compares_two_models_and_resumes(tiny_llama, tmp_path, capsys):
    """`longctx needle A B` writes every cell of both models and one side-by-side PNG; a rerun loads them."""
    from longctx.cli.needle import main as needle_main

    out = tmp_path / "niah"
    args = [str(tiny_llama), str(tiny_llama), "--names", "base,ext", "--lengths", "200,300", "--depths", "2",
            "--max-new-tokens", "4", "--out", str(out)]
    assert needle_main(args) == 0
    recs = json.loads((out / "results.json").read_text())["records"]
    assert sorted(recs) == sorted(f"{m}|{L}|{d:.4f}" for m in ("base", "ext") for L in (200, 300) for d in (0.0, 1.0))
    png = (out / "heatmap.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    before = (out / "results.json").read_text()
    assert needle_main(args) == 0
    assert (out / "results.json").read_text() == before


def test_judge_scoring_maps_ratings_to_unit_scores(tiny_llama, tmp_path):
    """--scoring judge: a rating of 10 is score 1.0 and a rating of 1 is 0.0 in every cell."""
    from longctx.cli.needle import main as needle_main
    from support.chat_server import ChatServer

    for rating, score in ((10, 1.0), (1, 0.0)):
        out = tmp_path / f"j{rating}"
        with ChatServer(default=("ok", f"[[{rating}]]")) as srv:
            assert needle_main([str(tiny_llama), "--lengths", "200", "--depths", "2", "--max-new-tokens", "2",
                                "--scoring", "judge", "--judge-url", srv.url, "--out", str(out)]) == 0
            assert "pass key" in srv.requests[0]["body"]["messages"][1]["content"]
        recs = json.loads((out / "results.json").read_text())["records"].values()
        assert [r["score"] for r in recs] == [score, score]


def test_empty_depth_list_is_a_one_line_error():
    """--depths with separators but no numbers is a LongctxError naming the flag, not a ValueError traceback."""
    from longctx.cli.needle import parse_depths

    with pytest.raises(LongctxError, match="--depths"):
        parse_depths(",", "linear")
