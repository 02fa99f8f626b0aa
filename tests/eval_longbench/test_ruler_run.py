"""RULER runner: resumable content-keyed records, effective length, registry extension, QA files, and
``longctx ruler`` end to end on the shipped organism."""

import json
import re

import pytest

from eval_longbench.results import ResultStore
from eval_longbench.ruler.base import GenContext, RulerTask, Sample, fit_count
from eval_longbench.ruler.qa import load_qa
from eval_longbench.ruler.registry import TASKS, register, select_tasks, unregister
from eval_longbench.ruler.runner import (
    RulerConfig,
    base_threshold,
    comparison_table,
    effective_length,
    length_averages,
    run_ruler,
    score_table,
    summarize,
)
from longctx.core.errors import LongctxError
from longctx.core.tokenizer import byte_tokenizer

TOK = byte_tokenizer()
ORGANISM = "longctx/assets/organism"


def oracle(prompt: str, max_new_tokens: int) -> str:
    """Solves NIAH and VT from the prompt text alone (an independent reading of what the task asks); the
    reply continues the answer prefix that ends the prompt."""
    if "VAR " in prompt:
        value = re.findall(r"assigned the value (\d+) in the text above", prompt)[-1]
        env = {}
        for var, rhs in re.findall(r"^VAR ([A-Z]{5}) = (VAR [A-Z]{5} |\d+)$", prompt, flags=re.MULTILINE):
            env[var] = env[rhs[4:-1]] if rhs.startswith("VAR ") else rhs
        return ", ".join(v for v, val in env.items() if val == value)
    keys = re.findall(r"for (.+?) mentioned in the provided text\?", prompt)[-1].replace(", and ", ", ").split(", ")
    needles = re.findall(r"One of the special magic \w+ for ([^\n]+?) is: ([\w-]+)\.", prompt)
    return " ".join(v for k, v in needles if k in keys)


def niah_vt(samples=1, lengths=(2000,)):
    return RulerConfig([TASKS[n] for n in ("niah_single_1", "niah_multikey_2", "niah_multiquery", "vt")],
                       list(lengths), samples=samples)


def test_oracle_scores_100_and_a_wrong_model_0(tmp_path):
    cfg = niah_vt()
    recs = run_ruler(oracle, TOK, cfg, ResultStore(tmp_path / "a.json", cfg.meta()), model_name="oracle", chat=True, progress=False)
    assert [r["score"] for r in recs] == [1.0] * 4
    recs = run_ruler(lambda p, n: "I do not know 12345.", TOK, cfg, ResultStore(tmp_path / "b.json", cfg.meta()),
                     model_name="wrong", chat=True, progress=False)
    assert [r["score"] for r in recs] == [0.0] * 4


def test_rerun_generates_nothing_and_adding_a_length_generates_only_it(tmp_path):
    calls = []

    def gen(prompt, n):
        calls.append(prompt)
        return oracle(prompt, n)

    path = tmp_path / "r.json"
    run_ruler(gen, TOK, niah_vt(samples=2), ResultStore(path, {}), model_name="m", chat=True, progress=False)
    assert len(calls) == 8
    recs = run_ruler(gen, TOK, niah_vt(samples=2), ResultStore(path, {}), model_name="m", chat=True, progress=False)
    assert len(calls) == 8 and len(recs) == 8
    run_ruler(gen, TOK, niah_vt(samples=2, lengths=(2000, 2300)), ResultStore(path, {}), model_name="m", chat=True, progress=False)
    assert len(calls) == 16


def test_another_checkpoint_under_the_same_name_is_refused(tmp_path):
    cfg = niah_vt()
    run_ruler(oracle, TOK, cfg, ResultStore(tmp_path / "r.json", {}), model_name="m", chat=True, model_id="aaaa", progress=False)
    with pytest.raises(LongctxError, match="another checkpoint under the same name"):
        run_ruler(oracle, TOK, cfg, ResultStore(tmp_path / "r.json", {}), model_name="m", chat=True, model_id="bbbb", progress=False)


def test_results_of_the_layout_before_rulers_are_not_reused(tmp_path):
    """A results file from before RULER's layout (tasks at version 1) holds records under other keys: the
    rerun generates every sample anew and reads none of the old records."""
    import dataclasses

    from eval_longbench.ruler.runner import record_key

    cfg, path = niah_vt(), tmp_path / "r.json"
    old = ResultStore(path, {})
    for t in cfg.tasks:
        old.put(record_key("m", dataclasses.replace(t, version=1), cfg, 2000, 0), {"task": t.name, "length": 2000,
                                                                                     "score": 0.0})
    calls = []
    recs = run_ruler(lambda p, n: calls.append(p) or oracle(p, n), TOK, cfg, ResultStore(path, {}), model_name="m",
                     chat=True, progress=False)
    assert len(calls) == 4 and [r["score"] for r in recs] == [1.0] * 4


def test_a_short_essay_haystack_warns_once_with_its_repeat_factor(tmp_path):
    """An essay shorter than the prompt repeats (RULER's rule too, but its essays are long): one warning
    with the factor and the way out (--haystack), not one per sample."""
    from eval_longbench.ruler.texts import Haystack

    logs = []
    cfg = RulerConfig([TASKS["niah_single_2"], TASKS["niah_single_1"]], [2000, 3000], samples=2)
    run_ruler(oracle, TOK, cfg, ResultStore(tmp_path / "r.json", {}), model_name="m", chat=True, progress=False,
              essay=Haystack("A short essay. It has few words. " * 10, "essay.txt"), log=logs.append)
    assert len(logs) == 1 and "essay.txt, 70 words" in logs[0] and "--haystack" in logs[0]
    assert re.search(r"repeats (\d+\.\d)x", logs[0]) and float(re.search(r"repeats (\d+\.\d)x", logs[0]).group(1)) > 4
    logs.clear()
    run_ruler(oracle, TOK, cfg, ResultStore(tmp_path / "s.json", {}), model_name="m", chat=True, progress=False,
              essay=Haystack("Long text. " * 2000, "long.txt"), log=logs.append)
    assert logs == []


def test_a_changed_task_definition_is_not_reused(tmp_path):
    """Records are keyed by the task's config hash: another answer reserve regenerates."""
    calls = []
    gen = lambda p, n: calls.append(n) or oracle(p, n)  # noqa: E731
    path = tmp_path / "r.json"
    run_ruler(gen, TOK, niah_vt(), ResultStore(path, {}), model_name="m", chat=True, progress=False)
    cfg = niah_vt()
    cfg.max_new_tokens = 40
    run_ruler(gen, TOK, cfg, ResultStore(path, {}), model_name="m", chat=True, progress=False)
    assert calls == [128, 128, 128, 30] + [40] * 4


def test_task_that_cannot_fit_is_recorded_without_generation(tmp_path):
    cfg = RulerConfig([TASKS["niah_multikey_1"], TASKS["vt"]], [400], samples=1)
    recs = run_ruler(lambda p, n: pytest.fail("generated"), TOK, cfg, ResultStore(tmp_path / "r.json", {}),
                     model_name="m", chat=True, progress=False)
    assert [r["score"] for r in recs] == [None, None] and "niah_multikey_1 @ 400" in recs[0]["skipped"]
    assert score_table(recs) == {"niah_multikey_1": {400: None}, "vt": {400: None}}


def test_effective_length_is_the_last_length_before_the_first_drop():
    avgs = {4096: 95.0, 8192: 85.6, 16384: 80.0, 32768: 90.0}
    assert effective_length(avgs, 85.6) == 8192  # 32K is above again, but 16K broke the run
    assert effective_length(avgs, 96.0) is None
    assert effective_length(avgs, 0.0) == 32768
    assert effective_length({1024: 90.0, 2048: None, 4096: 99.0}, 50) == 1024  # no score is not a pass


def test_length_average_is_over_the_tasks_that_fit():
    table = {"a": {512: 100.0, 1024: 50.0}, "b": {512: None, 1024: 0.0}}
    assert length_averages(table) == {512: 100.0, 1024: 25.0}


def test_base_threshold_is_the_models_own_average_at_its_window():
    recs = [{"task": "t", "length": L, "score": s} for L, s in ((512, 0.8), (512, 0.6), (1024, 0.7), (2048, 0.2))]
    s = summarize(recs, None, window=512)
    assert s["threshold"] == pytest.approx(70.0) and s["effective_length"] == 1024
    with pytest.raises(LongctxError, match="window 4096 must be one of --lengths"):
        base_threshold(length_averages(score_table(recs)), 4096)


def test_comparison_table_puts_models_side_by_side():
    s1 = summarize([{"task": "t", "length": 512, "score": 1.0}], 85.6)
    s2 = summarize([{"task": "t", "length": 512, "score": 0.5}], 85.6)
    rows = comparison_table({"base": s1, "yarn": s2}).splitlines()
    assert rows[2] == "| base | 100.0 | 512 | 85.6 |" and rows[3] == "| yarn | 50.0 | none | 85.6 |"


def _count_digits(ctx, length, budget, seed):
    """A toy aggregation task: how many 7s in a seeded digit string (exact count answer)."""
    import random

    def build(n):
        digits = "".join(random.Random(f"{seed}:{i}").choice("0123456789") for i in range(n))
        return f"Digits: {digits}\nHow many 7s? Answer:", str(digits.count("7"))

    prompt, answer, _, n = fit_count(ctx, budget, build, low=1, guess=budget)
    return Sample(prompt, [answer], n)


def test_a_task_registered_at_run_time_runs_like_a_built_in():
    task = RulerTask("count_sevens", "toy", _count_digits, metric="all", max_new_tokens=4)
    register(task)
    try:
        assert task in select_tasks("all") and select_tasks("count_sevens") == [task]
        with pytest.raises(LongctxError, match="already registered"):
            register(task)
        cfg = RulerConfig([task], [300], samples=2)
        counter = lambda p, n: str(p.split("\n")[0].count("7"))  # noqa: E731
        recs = run_ruler(counter, TOK, cfg, _mem_store(), model_name="m", chat=False, progress=False)
        assert [r["score"] for r in recs] == [1.0, 1.0] and all(r["n_tokens"] <= 296 for r in recs)
    finally:
        unregister("count_sevens")
    assert "count_sevens" not in TASKS


TOY_TASK = '''"""A toy aggregation task: how many 7s are in a seeded digit string (an exact count)."""

from __future__ import annotations

import functools
import random

from eval_longbench.ruler.base import GenContext, RulerTask, Sample, fit_count


def make_count(digit: str, ctx: GenContext, length: int, budget: int, seed: int) -> Sample:
    def build(n):
        digits = "".join(random.Random(f"{seed}:{i}").choice("0123456789") for i in range(n))
        return f"Digits: {digits}\\nHow many {digit}s? Answer:", str(digits.count(digit))

    prompt, answer, _, n = fit_count(ctx, budget, build, low=1, guess=budget)
    return Sample(prompt, [answer], n)


TASKS = [RulerTask("count_sevens", "count", functools.partial(make_count, "7"), max_new_tokens=4, params={"digit": "7"})]
'''


def test_a_toy_ruler_task_registers_with_two_files(tmp_path, monkeypatch):
    """A new RULER task is TWO files: its module in eval_longbench/ruler/ (generator + ``TASKS``, here a toy
    dropped into the package) and one row of ``registry.FAMILIES``. Selection (by name and ``all``), the
    runner, scoring, the tables and ``longctx ruler`` take it from there."""
    from support.toy_module import module_in_package

    import eval_longbench.ruler as package
    from eval_longbench.ruler import registry
    from longctx.cli import main

    with module_in_package(package, "count", TOY_TASK, tmp_path / "ruler") as toy:  # file 1: the module
        monkeypatch.setattr(registry, "FAMILIES", (*registry.FAMILIES, toy.TASKS))  # file 2: its row
        monkeypatch.setattr(registry, "TASKS", registry.tasks_of(registry.FAMILIES))  # as the registry builds TASKS
        (task,) = toy.TASKS
        assert select_tasks("count_sevens") == [task] and select_tasks("all")[-1] == task

        counter = lambda p, n: str(p.split("\n")[0].count("7"))  # noqa: E731  (the oracle: counts the 7s)
        recs = run_ruler(counter, TOK, RulerConfig([task], [300], samples=2), _mem_store(), model_name="m",
                         chat=False, progress=False)
        assert [r["score"] for r in recs] == [1.0, 1.0] and all(r["n_tokens"] <= 296 for r in recs)

        out = tmp_path / "out"
        assert main(["ruler", ORGANISM, "--lengths", "512", "--tasks", "count_sevens,niah_single_1", "--samples", "1",
                     "--max-new-tokens", "8", "--out", str(out)]) == 0
        recs = json.loads((out / "results.json").read_text())["records"].values()
        assert sorted((r["task"], r["n_tokens"]) for r in recs) == [("count_sevens", 504), ("niah_single_1", 504)]
        assert "count_sevens" in json.loads((out / "summary.json").read_text())["models"]["organism"]["table"]
        assert "| count_sevens |" in (out / "table.md").read_text()


def _mem_store():
    class Mem(ResultStore):
        def save(self):
            pass

    return Mem("unused.json", {}, overwrite=True)


def test_unknown_task_and_missing_qa_file_are_one_line_errors():
    with pytest.raises(LongctxError, match="--tasks: unknown 'niah_single_9'; choose all or some of niah_single_1"):
        select_tasks("niah_single_9")
    with pytest.raises(LongctxError, match="qa_1 needs --squad-file"):
        select_tasks("qa_1")
    assert "qa_1" not in [t.name for t in select_tasks("all")]
    assert "qa_1" in [t.name for t in select_tasks("all", available={"squad"})]


SQUAD = {"data": [{"title": "t", "paragraphs": [
    {"context": "Paris is the capital of France. It lies on the Seine.",
     "qas": [{"question": "What river is Paris on?", "answers": [{"text": "the Seine"}, {"text": "Seine"}]},
             {"question": "Unanswerable?", "answers": [], "is_impossible": True}]},
    {"context": "Mount Kenya is the second-highest mountain in Africa.",
     "qas": [{"question": "Which mountain is second-highest in Africa?", "answers": [{"text": "Mount Kenya"}]}]},
    {"context": "The violin has four strings tuned in fifths.",
     "qas": [{"question": "How many strings does a violin have?", "answers": [{"text": "four"}]}]},
]}]}


def test_squad_sample_holds_its_gold_document_and_the_question(tmp_path):
    f = tmp_path / "squad.json"
    f.write_text(json.dumps(SQUAD))
    qa = load_qa(f, "squad")
    assert len(qa.questions) == 3 and len(qa.docs) == 3  # the unanswerable one is skipped
    ctx = GenContext(TOK, chat=True, qa={"squad": qa})
    for seed in range(4):
        s = TASKS["qa_1"].generate(ctx, 1000, 968, seed)
        q = next(x for x in qa.questions if x["question"] in s.prompt)
        assert qa.docs[q["gold"][0]] in s.prompt and s.answers == q["answers"]
        assert s.prompt.count("Document ") == 3 and s.n_tokens <= 968  # every distractor fits at this length
    small = TASKS["qa_1"].generate(ctx, 450, 418, 0)
    assert small.prompt.count("Document ") < 3 and small.n_tokens <= 418
    assert TASKS["qa_1"].score("The answer is Seine.", ["the Seine", "Seine"]) == 1.0


def test_hotpotqa_sample_holds_every_supporting_paragraph(tmp_path):
    recs = [{"question": f"Q{i}?", "answer": f"A{i}", "context": [[f"T{i}a", [f"Fact {i} one. "]], [f"T{i}b", [f"Fact {i} two."]]]}
            for i in range(3)]
    f = tmp_path / "hotpot.json"
    f.write_text(json.dumps(recs))
    ctx = GenContext(TOK, chat=True, qa={"hotpotqa": load_qa(f, "hotpotqa")})
    s = TASKS["qa_2"].generate(ctx, 1000, 968, 1)
    i = int(re.search(r"Question: Q(\d)\?", s.prompt).group(1))
    assert f"T{i}a\nFact {i} one." in s.prompt and f"T{i}b\nFact {i} two." in s.prompt and s.answers == [f"A{i}"]


def test_hotpotqa_in_hugging_faces_column_layout_reads_as_the_original(tmp_path):
    recs = [{"question": f"Q{i}?", "answer": f"A{i}", "context": [[f"T{i}a", [f"Fact {i} one. "]], [f"T{i}b", [f"Fact {i} two."]]]}
            for i in range(3)]
    columns = [dict(r, context={"title": [t for t, _ in r["context"]], "sentences": [s for _, s in r["context"]]})
               for r in recs]
    (tmp_path / "orig.json").write_text(json.dumps(recs))
    (tmp_path / "hf.json").write_text(json.dumps(columns))
    assert load_qa(tmp_path / "hf.json", "hotpotqa") == load_qa(tmp_path / "orig.json", "hotpotqa")
    columns[1]["context"]["sentences"].pop()
    (tmp_path / "hf.json").write_text(json.dumps(columns))
    with pytest.raises(LongctxError, match=r"hf\.json: record 1: context: expected"):
        load_qa(tmp_path / "hf.json", "hotpotqa")


def test_bad_qa_file_names_the_record(tmp_path):
    f = tmp_path / "h.json"
    f.write_text(json.dumps([{"question": "q", "answer": "a", "context": "not a list"}]))
    with pytest.raises(LongctxError, match=r"h\.json: record 0: context: expected"):
        load_qa(f, "hotpotqa")
    f.write_text(json.dumps({"version": 2}))
    with pytest.raises(LongctxError, match="data: missing; not a SQuAD file"):
        load_qa(f, "squad")


def test_cli_end_to_end_on_the_organism_then_resumes_without_generating(tmp_path, monkeypatch, capsys):
    """Two tiny lengths, one sample: results, tables, summary and heatmap; the rerun loads no model."""
    from longctx.cli import ruler as ruler_cli
    from longctx.cli.ruler import main as ruler_main

    out = tmp_path / "ruler"
    argv = [ORGANISM, "--lengths", "512,600", "--tasks", "niah_single_1,niah_multikey_2", "--samples", "1", "--max-new-tokens", "8",
            "--threshold", "base", "--out", str(out)]
    assert ruler_main(argv) == 0
    data = json.loads((out / "results.json").read_text())
    recs = list(data["records"].values())
    assert len(recs) == 4 and data["models"]["organism"]
    assert all(r["n_tokens"] == r["length"] - 8 for r in recs)  # chat template and answer prefix included, exact
    summary = json.loads((out / "summary.json").read_text())["models"]["organism"]
    assert summary["window"] == 512 and summary["threshold"] == summary["average"]["512"]
    assert (out / "heatmap.png").stat().st_size > 1000 and "| niah_single_1 |" in (out / "table.md").read_text()

    monkeypatch.setattr(ruler_cli, "_open_ruler_model", lambda *a, **k: pytest.fail("the rerun loaded the model"))
    assert ruler_main(argv) == 0
    assert "nothing to generate" in capsys.readouterr().out
    assert json.loads((out / "results.json").read_text())["records"] == data["records"]


def test_haystack_reads_rulers_paul_graham_json_text_files_and_folders(tmp_path):
    """``--haystack`` takes RULER's own ``PaulGrahamEssays.json`` ({"text": ...}), text files and folders of
    them; a JSON file without its text is a one-line error naming the file."""
    from eval_longbench.ruler.texts import read_haystack

    (tmp_path / "PaulGrahamEssays.json").write_text(json.dumps({"text": "How to   Start.\nEssay one."}))
    (tmp_path / "essays").mkdir()
    (tmp_path / "essays" / "b.txt").write_text("Second essay.")
    hay = read_haystack([str(tmp_path / "PaulGrahamEssays.json"), str(tmp_path / "essays")])
    assert hay.joined == "How to Start. Essay one. Second essay."  # RULER's words, joined by single spaces
    (tmp_path / "bad.json").write_text(json.dumps({"essays": []}))
    with pytest.raises(LongctxError, match=r"bad\.json: text: missing or empty; expected RULER's essay file"):
        read_haystack([str(tmp_path / "bad.json")])


def test_default_haystack_is_the_world_english_bible_when_installed_else_the_built_in_essay(tmp_path, monkeypatch):
    """Offline and not repeating where Debian's sword-text-web is installed; the short built-in essay elsewhere."""
    from support.sword import write_module

    from eval_longbench.ruler import texts

    monkeypatch.setattr(texts, "WEB_MODULE", tmp_path / "absent")
    texts.default_haystack.cache_clear()
    assert texts.default_haystack().text == texts.ESSAY
    write_module(tmp_path, "ot", ["<verse>In the beginning, God created the heavens and the earth.</verse>"])
    monkeypatch.setattr(texts, "WEB_MODULE", tmp_path)
    texts.default_haystack.cache_clear()
    try:
        hay = texts.default_haystack()
        assert hay.joined == "In the beginning, God created the heavens and the earth." and "World English Bible" in hay.source
    finally:
        texts.default_haystack.cache_clear()


def test_templated_generation_reads_the_prompt_as_it_stands():
    """A local chat model in RULER's layout gets the templated conversation (the prefix in the assistant's
    turn) and adds nothing to it: no BOS in front of the template's own text, no second template."""
    import torch
    from tokenizers import processors

    from eval_longbench.models import chat_prompt, hf_generate_fn

    class Capture(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w, self.seen = torch.nn.Parameter(torch.zeros(1)), []

        def generate(self, ids, **kw):
            self.seen.append(ids[0].tolist())
            return torch.cat([ids, torch.tensor([[tok.eos_token_id]])], 1)

    tok = byte_tokenizer()
    tok._tokenizer.post_processor = processors.TemplateProcessing(single="<|bos|> $A", special_tokens=[("<|bos|>", 256)])
    model, prompt = Capture(), chat_prompt(tok, "Find the key.") + " The key is"
    hf_generate_fn(model, tok, templated=True)(prompt, 4)
    hf_generate_fn(model, tok)(prompt, 4)  # a prompt without a chat template gets the tokenizer's BOS
    assert model.seen == [tok(prompt, add_special_tokens=False)["input_ids"], [256] + tok(prompt, add_special_tokens=False)["input_ids"]]
