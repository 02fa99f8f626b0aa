"""Property test of the packer: for random datasets, nothing is lost or duplicated without the ledger saying so.

Below the tokenizer, for speed: records are validated by the real ``normalize_record`` (roles, empty
turns, order), rendered by a toy template (2 header tokens per turn, content, EOS after an assistant
turn) into ids that are unique across the dataset, then go through the real path of ``longctx pack``:
``to_sequence`` -> ``record_sequences`` (bad records, overlong policy, ledger) -> ``assemble`` (bin packing
or sorted batching, rows, LongAlign weights, the checked counts).
"""

from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from longctx.core.errors import LongctxError
from longctx.core.labels import IGNORE_INDEX
from packing.pipeline import OUTCOMES, Ledger, PackConfig, assemble, record_sequences
from packing.tokenize import ROLES, RecordError, normalize_record, to_sequence

PAD = -1  # ids are >= 0, so padding is recognisable


def _render(record: dict, train_on: str, next_id: list[int]):
    """ids/labels of a validated record under the toy template; ids continue from next_id[0]."""
    kind, payload = normalize_record(record)
    spans = []  # (n tokens, labelled?)
    if kind == "text":
        spans.append((len(payload) + 1, True))  # + EOS
    else:
        last = max((i for i, m in enumerate(payload) if m["role"] == "assistant"), default=None)
        if train_on != "all" and last is None:
            raise RecordError("no assistant turn", "messages: no assistant turn to learn from")
        for i, m in enumerate(payload):
            learn = train_on == "all" or (m["role"] == "assistant" and (train_on == "assistant" or i == last))
            spans.append((2, train_on == "all"))  # role header
            spans.append((len(m["content"]) + (m["role"] == "assistant"), learn))
    n = sum(k for k, _ in spans)
    ids = list(range(next_id[0], next_id[0] + n))
    labels, pos = [], 0
    for k, learn in spans:
        labels += ids[pos:pos + k] if learn else [IGNORE_INDEX] * k
        pos += k
    out = to_sequence(ids, labels)  # a RecordError here (nothing to learn) leaves the ids unused
    next_id[0] += n
    return out


turn = st.fixed_dictionaries({"role": st.sampled_from(ROLES), "content": st.integers(0, 24).map(lambda n: "x" * n)})
chat = st.lists(turn, min_size=0, max_size=6).map(lambda ts: {"messages": ts})
# mostly well-ordered conversations, so that most records get packed
ordered = st.lists(st.tuples(st.integers(1, 20), st.integers(1, 30)), min_size=1, max_size=3).map(
    lambda qa: {"messages": [t for q, a in qa for t in ({"role": "user", "content": "q" * q},
                                                         {"role": "assistant", "content": "a" * a})]})
text = st.integers(0, 60).map(lambda n: {"text": "t" * n})
datasets = st.lists(st.one_of(ordered, ordered, chat, text), min_size=2, max_size=12)
configs = st.builds(
    lambda p, overlong, mode, strategy, train_on, skip_bad, batch, seed: PackConfig(
        pack_length=p, overlong=overlong, mode=mode, strategy=strategy, train_on=train_on, skip_bad=skip_bad,
        batch_size=batch, seed=seed, progress=False),
    st.sampled_from([8, 32, 64, 128, 256]),
    st.sampled_from(["drop", "truncate", "split"] * 3 + ["error"]),  # mostly runs that pack: stops are rarer
    st.sampled_from(["pack", "sorted"]), st.sampled_from(["bfd", "greedy"]),
    st.sampled_from(["assistant", "last", "all"]), st.sampled_from([True] * 9 + [False]), st.integers(1, 4),
    st.integers(0, 3))


@settings(max_examples=1400, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(records=datasets, cfg=configs)
def test_every_target_token_is_packed_exactly_once_or_accounted_for_in_the_ledger(records, cfg):
    """Every token and target token of every record lands in exactly one pack exactly once, or the ledger
    counts it dropped for a reason; sequences are unbroken runs of their record; weights sum to the
    number of sequences with targets; every record has exactly one outcome."""
    next_id, ledger, bad, seqs = [0], Ledger(), Counter(), []
    targets_in, n_bad = set(), 0
    for i, rec in enumerate(records):
        def tokenize(rec=rec):
            t = _render(rec, cfg.train_on, next_id)
            targets_in.update(t.input_ids[t.labels != IGNORE_INDEX].tolist())
            return t
        before = sum(bad.values())
        try:
            seqs += record_sequences(f"d.jsonl:{i + 1}", tokenize, cfg, ledger, bad)
        except LongctxError as err:  # only what the config asks for: stop at a bad or an overlong record
            msg = str(err)
            assert msg.startswith(f"d.jsonl:{i + 1}: ")
            assert ("--skip-bad" in msg and not cfg.skip_bad) or ("--pack-length" in msg and cfg.overlong == "error")
            event("stopped: bad or overlong record")
            return
        n_bad += sum(bad.values()) - before
    tokens_in = next_id[0]  # ids are handed out consecutively to the records that tokenized
    if not seqs:  # `longctx pack` refuses to write nothing; still, everything that went in is accounted for
        counts = ledger.to_counts()
        assert counts.get("tokens_in", 0) == tokens_in == counts["tokens_dropped"]
        assert counts.get("target_tokens_in", 0) == len(targets_in) == counts["target_tokens_dropped"]
        assert sum(bad.values()) + sum(ledger.counts[k] for k in OUTCOMES) == len(records)
        event("nothing left to pack")
        return
    a = assemble(seqs, ledger, bad, len(records), cfg, PAD)  # checks the ledger's equations itself
    c, rows = a.counts, list(a.rows)
    event(f"packed ({cfg.overlong}, {cfg.mode})")
    assert c["records_bad"] == n_bad and c["tokens_in"] == tokens_in and c["target_tokens_in"] == len(targets_in)

    packed_ids, packed_targets, weight_sum, n_seqs = [], [], 0.0, 0
    for row in rows:
        ids, labels, lens = row["input_ids"], row["labels"], row["seq_lens"]
        used = int(lens.sum())
        assert used <= cfg.pack_length and (ids[used:] == PAD).all() and (labels[used:] == IGNORE_INDEX).all()
        s = 0
        for n in lens.tolist():
            seq_ids, seq_labels = ids[s:s + n], labels[s:s + n]
            assert (np.diff(seq_ids) == 1).all()  # an unbroken run of one record's tokens
            assert seq_labels[0] == IGNORE_INDEX and (seq_labels != IGNORE_INDEX).any()
            lab = seq_labels != IGNORE_INDEX
            assert (seq_labels[lab] == seq_ids[lab]).all()  # aligned labels, not shifted
            packed_ids += seq_ids.tolist()
            packed_targets += seq_ids[lab].tolist()
            s += n
            n_seqs += 1
        weight_sum += float(row["loss_weights"].astype(np.float64).sum())
    assert len(packed_ids) == len(set(packed_ids)) == c["tokens_packed"] == tokens_in - c["tokens_dropped"]
    assert len(packed_targets) == len(set(packed_targets)) == c["target_tokens"]
    assert set(packed_targets) <= targets_in
    assert len(targets_in) - len(packed_targets) == c["target_tokens_dropped"]
    assert n_seqs == c["sequences"] and weight_sum == pytest.approx(n_seqs, rel=1e-5)
