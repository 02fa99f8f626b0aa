"""packing.pipeline / longctx pack: records in, packs out; nothing lost, nothing silent."""

import json

import numpy as np
import pytest

from longctx.core.errors import LongctxError
from longctx.core.tokenizer import byte_tokenizer
from packing.pipeline import PackConfig, pack_files
from packing.tokenize import tokenize_record
from packing.writer import load_packs

P = 256


def _records(n=30, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        q, a = "q" * int(rng.integers(1, 150)), "a" * int(rng.integers(1, 60))
        out.append({"messages": [{"role": "user", "content": f"{i}:{q}"}, {"role": "assistant", "content": a}]})
    out.append({"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]})
    out.append({"text": "plain text for pre-training"})
    return out


def _jsonl(path, records, extra_lines=()):
    with open(path, "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
        for line in extra_lines:
            f.write(line + "\n")
    return path


def _pack(tok, sources, out, **kw):
    kw.setdefault("pack_length", P)
    return pack_files(sources, "byte-tokenizer", out, PackConfig(progress=False, **kw), tokenizer=tok)


def _sequences_from_packs(ds):
    out = []
    for row in ds:
        ids, labels = np.array(row["input_ids"]), np.array(row["labels"])
        s = 0
        for n in row["seq_lens"]:
            out.append((tuple(ids[s:s + n]), tuple(labels[s:s + n])))
            s += n
    return out


def test_every_record_appears_in_exactly_one_pack_and_tokens_are_conserved(tok, tmp_path):
    """The multiset of (input_ids, labels) sequences in the packs equals the tokenized records."""
    recs = _records()
    res = _pack(tok, [_jsonl(tmp_path / "d.jsonl", recs)], tmp_path / "out")
    packs = load_packs(tmp_path / "out")
    ds, manifest = packs.dataset, packs.manifest
    got = _sequences_from_packs(ds)
    want = [tokenize_record(tok, r) for r in recs]
    assert sorted(got) == sorted((tuple(t.input_ids), tuple(t.labels)) for t in want)
    c = manifest["counts"]
    assert c["tokens_in"] == c["tokens_packed"] == sum(len(t.input_ids) for t in want)
    assert manifest["num_rows"] == len(ds) == c["packs"] and res.manifest == manifest


def test_positions_restart_per_sequence_and_padding_is_an_unlabelled_pseudo_sequence(tok, tmp_path):
    """position_ids are 0..n-1 per sequence; padding: positions 0..p-1, label -100, weight 0, not in seq_lens."""
    _pack(tok, [_jsonl(tmp_path / "d.jsonl", _records())], tmp_path / "out")
    ds = load_packs(tmp_path / "out").dataset
    for row in ds:
        pos, used = np.array(row["position_ids"]), sum(row["seq_lens"])
        assert len(pos) == P
        assert pos.tolist() == [i for n in row["seq_lens"] + ([P - used] if used < P else []) for i in range(n)]
        assert (np.array(row["labels"][used:]) == -100).all() and not any(row["loss_weights"][used:])


def test_loss_weights_are_one_over_target_count_and_sum_to_one_per_sequence(tok, tmp_path):
    """On the N_i labelled tokens of sequence i the weight is 1/N_i; unlabelled tokens weigh 0."""
    _pack(tok, [_jsonl(tmp_path / "d.jsonl", _records())], tmp_path / "out")
    ds = load_packs(tmp_path / "out").dataset
    for row in ds:
        labels, w = np.array(row["labels"]), np.array(row["loss_weights"], dtype=np.float64)
        s = 0
        for n in row["seq_lens"]:
            lab, ws = labels[s:s + n], w[s:s + n]
            n_targets = int((lab != -100).sum())
            assert n_targets > 0 and np.allclose(ws[lab != -100], 1.0 / n_targets, rtol=1e-7)
            assert (ws[lab == -100] == 0).all() and abs(ws.sum() - 1) < 1e-6
            s += n


def test_output_is_deterministic_for_a_seed(tok, tmp_path):
    """Same data and seed: identical rows; another seed: same packs in another order."""
    src = _jsonl(tmp_path / "d.jsonl", _records())
    rows = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        _pack(tok, [src], tmp_path / name, seed=seed)
        rows[name] = [r["input_ids"] for r in load_packs(tmp_path / name).dataset]
    assert rows["a"] == rows["b"]
    assert rows["a"] != rows["c"] and sorted(rows["a"]) == sorted(rows["c"])


def test_bad_record_stops_with_file_and_line(tok, tmp_path):
    """Malformed JSON on line 33 stops the run with `file:33: malformed JSON`, and writes nothing."""
    src = _jsonl(tmp_path / "d.jsonl", _records(), extra_lines=["{oops"])
    with pytest.raises(LongctxError, match=r"d\.jsonl:33: malformed JSON"):
        _pack(tok, [src], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_skip_bad_skips_and_counts_bad_records_by_reason(tok, tmp_path):
    """--skip-bad: bad records are counted per reason; the good ones are packed."""
    bad = [json.dumps({"messages": [{"role": "user", "content": "no answer"}]}), "{oops", "[1, 2]"]
    src = _jsonl(tmp_path / "d.jsonl", _records(), extra_lines=bad)
    res = _pack(tok, [src], tmp_path / "out", skip_bad=True)
    c = res.manifest["counts"]
    assert c["bad_by_reason"] == {"malformed JSON": 1, "no assistant turn": 1, "not an object": 1}
    assert c["records"] == len(_records()) + 3 and c["sequences"] == len(_records())


def test_overlong_error_names_the_record_and_the_flag(tok, tmp_path):
    """Default --overlong error: a sequence longer than the pack stops the run, naming file:line."""
    long = {"messages": [{"role": "user", "content": "x" * 400}, {"role": "assistant", "content": "y"}]}
    with pytest.raises(LongctxError, match=r"d\.jsonl:1: .* > --pack-length 256"):
        _pack(tok, [_jsonl(tmp_path / "d.jsonl", [long])], tmp_path / "out")


@pytest.mark.parametrize("policy", ["drop", "truncate", "split"])
def test_overlong_policies_count_outcomes_and_keep_the_token_ledger(tok, tmp_path, policy):
    """drop/truncate/split: each outcome is counted and tokens_in == tokens_packed + tokens_dropped."""
    long = {"text": "z" * 700}  # 701 tokens with EOS: 2 full chunks + 189
    res = _pack(tok, [_jsonl(tmp_path / "d.jsonl", _records(5) + [long])], tmp_path / "out", overlong=policy)
    c = res.manifest["counts"]
    assert c["tokens_in"] == c["tokens_packed"] + c.get("tokens_dropped", 0)
    expect = {"drop": ("records_dropped_overlong", 701), "truncate": ("records_truncated", 701 - P),
              "split": ("records_split", 0)}[policy]
    assert c[expect[0]] == 1 and c.get("tokens_dropped", 0) == expect[1]
    if policy == "split":
        assert c["split_chunks"] == 3 and c["sequences"] == 7 + 3
    assert max(res.lengths) <= P


def test_json_parquet_and_datasets_inputs_give_the_same_packs(tok, tmp_path):
    """The same records as JSONL, JSON, Parquet and a saved datasets dir produce identical packs."""
    import datasets

    recs = _records(12)
    chat = [r for r in recs if "messages" in r]
    _jsonl(tmp_path / "d.jsonl", chat)
    (tmp_path / "d.json").write_text(json.dumps(chat))
    datasets.Dataset.from_list(chat).to_parquet(str(tmp_path / "d.parquet"))
    datasets.Dataset.from_list(chat).save_to_disk(str(tmp_path / "d_ds"))
    outs = []
    for name in ("d.jsonl", "d.json", "d.parquet", "d_ds"):
        _pack(tok, [tmp_path / name], tmp_path / f"out_{name}")
        outs.append([r["input_ids"] for r in load_packs(tmp_path / f"out_{name}").dataset])
    assert all(o == outs[0] for o in outs)


def test_sorted_mode_writes_one_row_per_sequence_grouped_by_batch(tok, tmp_path):
    """--mode sorted: rows carry batch_id, batches are contiguous, and the manifest says so."""
    from longctx.train.data import StepData, open_packs

    res = _pack(tok, [_jsonl(tmp_path / "d.jsonl", _records())], tmp_path / "out", mode="sorted", batch_size=4)
    packs = load_packs(tmp_path / "out")
    ds, manifest = packs.dataset, packs.manifest
    assert manifest["mode"] == "sorted" and len(ds) == res.manifest["counts"]["sequences"]
    ids = ds["batch_id"]
    runs = [b for i, b in enumerate(ids) if i == 0 or ids[i - 1] != b]
    assert len(runs) == len(set(runs)), "rows of one batch are not contiguous"
    data = StepData(open_packs(tmp_path / "out"), "sorted", 1, 1, 1, 0, shuffle=False)
    batches = [data.micro_batches(u)[0] for u in range(len(data))]
    assert sum(b["num_sequences"] for b in batches) == len(ds) and all(b["input_ids"].shape[0] <= 4 for b in batches)


def test_load_packs_rejects_a_manifest_that_disagrees_with_the_data(tok, tmp_path):
    """A manifest with the wrong row count is refused with the file and the field."""
    _pack(tok, [_jsonl(tmp_path / "d.jsonl", _records())], tmp_path / "out")
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    m["num_rows"] += 1
    (tmp_path / "out" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(LongctxError, match=r"manifest\.json: num_rows"):
        load_packs(tmp_path / "out")


def test_cli_writes_packs_manifest_report_and_histogram(tmp_path, capsys):
    """`longctx pack` end to end from a saved tokenizer: exit 0, report printed, PNG written."""
    from longctx.cli.pack import main

    byte_tokenizer().save_pretrained(tmp_path / "tok")
    src = _jsonl(tmp_path / "d.jsonl", _records())
    rc = main([str(src), "--tokenizer", str(tmp_path / "tok"), "--pack-length", str(P), "--out", str(tmp_path / "out"),
               "--no-progress"])
    assert rc == 0
    assert "efficiency" in capsys.readouterr().out
    for name in ("manifest.json", "report.txt", "lengths.png", "dataset_info.json"):
        assert (tmp_path / "out" / name).exists(), name
    assert (tmp_path / "out" / "lengths.png").read_bytes()[:4] == b"\x89PNG"


def test_existing_output_is_refused_without_overwrite_and_replaced_with_it_only_if_ours(tok, tmp_path):
    """An existing --out is left untouched unless overwrite=True, which replaces only a pack dir we wrote."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    src = _jsonl(tmp_path / "d.jsonl", _records(5))
    with pytest.raises(LongctxError, match="already exists"):
        _pack(tok, [src], out)
    with pytest.raises(LongctxError, match="not a folder written by longctx"):
        pack_files([src], "byte-tokenizer", out, PackConfig(pack_length=P, progress=False), overwrite=True, tokenizer=tok)
    assert (out / "keep.txt").read_text() == "mine"
    (out / "keep.txt").unlink()
    out.rmdir()
    _pack(tok, [src], out)
    (out / "extra.txt").write_text("left by the previous run")
    pack_files([src], "byte-tokenizer", out, PackConfig(pack_length=P, progress=False), overwrite=True, tokenizer=tok)
    assert not (out / "extra.txt").exists() and load_packs(out).manifest["counts"]["sequences"] == 7


@pytest.mark.parametrize("line, message", [
    (b'{"text": "bad \\ud800 here"}', r"d\.jsonl:33: text: a lone UTF-16 surrogate"),
    (b'{"text": "caf\xe9"}', r"d\.jsonl:33: not valid UTF-8 \(byte 0xe9"),
    (json.dumps({"messages": [{"role": "assistant", "content": "A"}, {"role": "user", "content": "U"}]}).encode(),
     r"d\.jsonl:33: messages\[0\]\.role: 'assistant' as the first turn"),
    (json.dumps({"messages": [{"role": "user", "content": "U"}, {"role": "user", "content": "V"},
                              {"role": "assistant", "content": "A"}]}).encode(),
     r"d\.jsonl:33: messages\[1\]\.role: 'user' after 'user'"),
])
def test_undecodable_text_and_roles_out_of_order_stop_with_file_line_and_field(tok, tmp_path, line, message):
    """A lone surrogate or a non-UTF-8 line used to be a traceback, and roles out of order were packed with
    the wrong tokens labelled; each now stops the run at file:line naming the field, writing nothing."""
    src = _jsonl(tmp_path / "d.jsonl", _records())
    with open(src, "ab") as f:
        f.write(line + b"\n")
    with pytest.raises(LongctxError, match=message + r".*--skip-bad"):
        _pack(tok, [src], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_skip_bad_skips_undecodable_text_and_roles_out_of_order_counting_each_reason(tok, tmp_path):
    """--skip-bad skips them too, counted in bad_by_reason; the good records are packed whole."""
    src = _jsonl(tmp_path / "d.jsonl", _records())
    with open(src, "ab") as f:
        f.write(b'{"text": "bad \\ud800 here"}\n{"text": "caf\xe9"}\n')
        f.write(json.dumps({"messages": [{"role": "assistant", "content": "A"}]}).encode() + b"\n")
    c = _pack(tok, [src], tmp_path / "out", skip_bad=True).manifest["counts"]
    assert c["bad_by_reason"] == {"lone surrogate": 1, "not UTF-8": 1, "roles out of order": 1}
    assert c["records"] == len(_records()) + 3 and c["records_packed_whole"] == c["sequences"] == len(_records())


def test_truncate_ledger_accounts_for_every_record_token_and_target(tok, tmp_path):
    """--overlong truncate: the manifest says which records were truncated, how many tokens and how many
    target tokens were cut per reason, and records / tokens / targets in == out + accounted losses."""
    prompt = {"messages": [{"role": "user", "content": "p" * 300}, {"role": "assistant", "content": "y"}]}
    answer = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a" * 400}]}
    text = {"text": "z" * 700}
    recs = _records(5) + [prompt, answer, text]
    src = _jsonl(tmp_path / "d.jsonl", recs)
    c = _pack(tok, [src], tmp_path / "out", overlong="truncate").manifest["counts"]
    full = [tokenize_record(tok, r) for r in recs]
    assert c["records_truncated"] == 2 and c["records_dropped_no_targets_after_truncate"] == 1  # prompt: answer cut
    assert c["records_packed_whole"] == 7 and c["records"] == 10 and c["chunks_dropped_no_targets"] == 1
    assert c["tokens_in"] == sum(len(t.input_ids) for t in full)
    assert c["target_tokens_in"] == sum(t.num_targets for t in full)
    tails = sum(len(t.input_ids) - P for t in full[-3:])
    assert c["tokens_dropped_by_reason"] == {"chunk without targets": P, "truncated tail": tails}
    assert c["target_tokens_dropped_by_reason"] == {
        "truncated tail": sum(int((t.labels[P:] != -100).sum()) for t in full[-3:])}
    assert c["tokens_in"] == c["tokens_packed"] + c["tokens_dropped"]
    assert c["target_tokens_in"] == c["target_tokens"] + c["target_tokens_dropped"]


def test_split_ledger_counts_the_unpredictable_first_token_of_each_chunk(tok, tmp_path):
    """--overlong split: a chunk's first token has nothing before it in its pack, so it loses its label;
    the ledger counts those (one per chunk after the first) instead of losing them silently."""
    text = {"text": "z" * 700}  # 701 tokens: chunks of 256, 256, 189
    c = _pack(tok, [_jsonl(tmp_path / "d.jsonl", _records(5) + [text])], tmp_path / "out", overlong="split").manifest["counts"]
    assert c["records_split"] == 1 and c["split_chunks"] == 3 and c["tokens_dropped"] == 0
    assert c["target_tokens_dropped_by_reason"] == {"chunk start": 2}
    assert c["target_tokens_in"] == c["target_tokens"] + 2


def test_check_ledger_refuses_counts_that_lose_a_record():
    """The ledger check fails loudly (before anything is written) when an outcome is missing."""
    from packing.pipeline import check_ledger

    counts = {"records": 3, "records_bad": 1, "records_packed_whole": 1, "tokens_in": 10, "tokens_packed": 10,
              "tokens_dropped_by_reason": {}, "target_tokens_in": 5, "target_tokens": 5,
              "target_tokens_dropped_by_reason": {}}
    with pytest.raises(AssertionError, match="record ledger"):
        check_ledger(counts)
    check_ledger({**counts, "records_truncated": 1})


@pytest.mark.parametrize("field, value, flag", [("pack_length", 1, "--pack-length"), ("batch_size", 0, "--batch-size"),
                                                ("seed", -1, "--seed")])
def test_out_of_range_pack_numbers_are_one_line_errors_naming_the_flag(field, value, flag):
    """--seed -1 used to end in numpy's traceback; every numeric pack flag is checked up front."""
    kwargs = {"pack_length": 64, field: value}
    with pytest.raises(LongctxError, match=rf"^{flag}: must be"):
        PackConfig(**kwargs)


def test_an_error_prints_on_its_own_line_after_the_progress_bar(tmp_path, capsys):
    """`longctx pack` with progress bars on: the bar is closed (its line ended) before the error prints."""
    from longctx.cli import main

    byte_tokenizer().save_pretrained(tmp_path / "tok")
    src = _jsonl(tmp_path / "d.jsonl", _records(), extra_lines=["{oops"])
    assert main(["pack", str(src), "--tokenizer", str(tmp_path / "tok"), "--pack-length", str(P),
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "tokenize" in err  # the bar was drawn
    assert any(line.startswith("longctx pack: error: ") for line in err.splitlines()), err


def test_the_report_separates_the_dropped_tokens_label_from_its_reasons(tok, tmp_path):
    from packing.report import format_report

    recs = _records(5) + [{"messages": [{"role": "user", "content": "p" * 300}, {"role": "assistant", "content": "y"}]}]
    manifest = _pack(tok, [_jsonl(tmp_path / "d.jsonl", recs)], tmp_path / "out", overlong="truncate").manifest
    assert f"\ndropped tokens chunk without targets={P:,}, " in format_report(manifest)
