"""Haystack generation: token-exact length, determinism, and needles at sentence boundaries at the asked depth."""

import re

import pytest

from eval_longbench.haystack import (
    NOISE_SENTENCES, PASSKEY_INTRO, PASSKEY_QUESTION, insert_at_depth, make_passkey_sample, passkey_sample,
    sentence_boundaries, split_sentences,
)
from longctx.core.errors import LongctxError
from longctx.core.tokenizer import byte_tokenizer
from support import ORGANISM
from support.bpe import bpe_tokenizer

TOK = byte_tokenizer()
NEEDLE_RE = re.compile(r"The pass key is (\d{5})\. Remember it\. \1 is the pass key\.")


def ntok(tok, text):
    return len(tok(text, add_special_tokens=False)["input_ids"])


@pytest.mark.parametrize("length", [200, 257, 1000, 3001])
def test_passkey_prompt_has_exactly_the_asked_token_count(length):
    """With the byte tokenizer every length is reachable, so the fit must be exact."""
    prompt, answer = make_passkey_sample(TOK, length, 0.5, seed=3)
    assert ntok(TOK, prompt) == length
    assert prompt.endswith("The pass key is")
    assert re.fullmatch(r"\d{5}", answer)


def test_passkey_sample_is_a_pure_function_of_its_seed():
    """Same arguments give the same prompt; another seed gives another key and haystack."""
    a = make_passkey_sample(TOK, 400, 0.3, seed=11)
    assert a == make_passkey_sample(TOK, 400, 0.3, seed=11)
    b = make_passkey_sample(TOK, 400, 0.3, seed=12)
    assert a[1] != b[1] and a[0] != b[0]


def test_needle_sits_between_whole_sentences():
    """Removing the needle leaves the haystack's sentences intact: the text before it ends a sentence
    (or is the intro) and the text after it starts a noise sentence."""
    for depth in (0.0, 0.1, 0.37, 0.5, 0.81, 1.0):
        prompt, answer = make_passkey_sample(TOK, 900, depth, seed=5)
        m = NEEDLE_RE.search(prompt)
        assert m and m.group(1) == answer
        before, after = prompt[:m.start()].rstrip(), prompt[m.end():].lstrip()
        assert before.endswith("."), before[-40:]
        assert after.startswith(PASSKEY_QUESTION) or any(after.startswith(s) for s in NOISE_SENTENCES), after[:40]


@pytest.mark.parametrize("depth", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_needle_lands_near_the_asked_depth(depth):
    """The fraction of haystack characters before the needle is within one sentence (~35 chars) of the depth."""
    prompt, _ = make_passkey_sample(TOK, 2000, depth, seed=1)
    m = NEEDLE_RE.search(prompt)
    start = prompt.index("\n") + 1
    end = prompt.rindex("\n")
    hay_len = (end - start) - (m.end() - m.start()) - 1
    frac = (m.start() - start) / hay_len
    assert abs(frac - depth) < 35 / hay_len + 1e-9


@pytest.mark.parametrize("length", [333, 700])
def test_merging_bpe_tokenizer_fits_length_and_places_needle_at_a_boundary(length):
    """With a merging BPE tokenizer (word tokens, merges across sentence joins) the prompt still has the
    exact length, and the needle sits at a sentence boundary in the middle (not at 0, not at a token id)."""
    tok = bpe_tokenizer()
    prompt, info, answer = passkey_sample(tok, length, 0.5, seed=2)
    assert ntok(tok, prompt) == length == info["n_tokens"]
    m = NEEDLE_RE.search(prompt)
    assert m and m.group(1) == answer
    assert prompt[:m.start()].rstrip().endswith(".")
    assert 0.4 < info["needle_depths"][0] < 0.6


def test_user_text_haystack_uses_its_sentences():
    """A user filler supplies the haystack; the needle goes between two of its sentences."""
    text = "Alpha went home. Beta stayed out late! Gamma asked why? Delta knew the answer. " * 40
    sentences = split_sentences(text)
    assert sentences[:4] == ["Alpha went home.", "Beta stayed out late!", "Gamma asked why?", "Delta knew the answer."]
    prompt, answer = make_passkey_sample(TOK, 800, 0.5, seed=0, filler=sentences)
    assert "The grass is green." not in prompt
    m = NEEDLE_RE.search(prompt)
    assert prompt[:m.start()].rstrip()[-1] in ".!?"
    assert prompt[m.end():].lstrip().startswith(("Alpha", "Beta", "Gamma", "Delta"))


def test_insert_at_depth_uses_character_boundaries_not_token_ids():
    """Boundaries are found in text: depth 0.5 of four equal sentences is after the second one."""
    text = "One one one. Two two two. Six six six. Ten ten ten."
    assert sentence_boundaries(text) == [0, 13, 26, 39, len(text)]
    new, pos = insert_at_depth(text, "NEEDLE.", 0.5)
    assert new == "One one one. Two two two. NEEDLE. Six six six. Ten ten ten."
    assert pos == 26


def test_too_short_length_is_a_clear_error():
    """A context that cannot hold the intro, needle and question raises LongctxError naming the length."""
    with pytest.raises(LongctxError, match="context length 50"):
        make_passkey_sample(TOK, 50, 0.5, seed=0)


@pytest.mark.parametrize("depth", [0.25, 0.5, 0.8])
def test_haystack_without_sentence_breaks_still_puts_the_needle_at_its_depth(depth):
    """Text with no [.!?]: the needle used to go after the whole haystack while reported at depth 0;
    now it falls back to the nearest word break, where the reported depth says it is."""
    from eval_longbench.haystack import Needle, fit_prompt, text_stream

    words = split_sentences("alpha beta gamma delta epsilon zeta eta theta iota kappa " * 60)
    assert len(words) == 1
    needle = "The magic word is PINEAPPLE."
    prompt, info = fit_prompt(TOK, 400, [Needle(needle, depth)], intro="I", question="Q?", sentences=text_stream(words, 0))
    assert info["n_tokens"] == ntok(TOK, prompt) == 400
    hay = prompt[len("I\n"):-len("\nQ?")]
    at = hay.index(needle)
    actual = at / (len(hay) - len(needle) - 1)
    assert abs(actual - depth) < 0.05 and abs(info["needle_depths"][0] - depth) < 0.05
    assert hay[at - 1] == " " or at == 0  # at a word break, not inside a word


def test_haystack_of_special_tokens_is_refused_naming_the_file(tmp_path):
    """A haystack of the tokenizer's special tokens would decode to nothing (prompts far too short):
    a one-line error naming the haystack file instead."""
    from eval_longbench.needle import NeedleConfig, run_needle
    from eval_longbench.results import ResultStore

    cfg = NeedleConfig(lengths=[256], depths=[0.5], filler_name="specials.txt")
    for filler in (["<|eos|> <|bos|> <|eos|>"] * 50, ["Plain text. With a <|eos|> inside it."] * 20):
        with pytest.raises(LongctxError, match=r"^specials\.txt: the haystack holds .*special tokens") as err:
            run_needle(lambda p, n: "1", TOK, cfg, ResultStore(tmp_path / "r.json", {}), model_name="m", filler=filler,
                       progress=False)
        assert "\n" not in str(err.value)


def test_builtin_noise_placement_is_unchanged_by_the_fallback():
    """The fallback never triggers on the built-in noise (short sentences): needles sit right after a
    sentence's end, as the shipped tiny model was trained on."""
    for L in (200, 512):
        for d in (0.1, 0.33, 0.9):
            prompt, _ = make_passkey_sample(TOK, L, d, seed=3)
            m = NEEDLE_RE.search(prompt)
            before = prompt[:m.start()].rstrip()
            assert before.endswith(".") or before.endswith(PASSKEY_INTRO)


@pytest.mark.parametrize("data", [b"\x00" * 4000, "The grass is green. The sky is blue. ".encode("utf-16-le") * 40,
                                  b"Plain text. With a NUL\x00 inside it."])
def test_a_haystack_file_with_nul_bytes_is_refused_naming_the_file_and_offset(tmp_path, capsys, data):
    """NULs are not text (a UTF-16 or binary file): tokenizers drop them, and a needle asked at 50 %
    would land elsewhere without a word; the needle command says so in one line instead."""
    from longctx.cli import main

    organism = ORGANISM
    path = tmp_path / "hay.txt"
    path.write_bytes(data)
    assert main(["needle", "--endpoint", "http://127.0.0.1:9/v1", "--served-model", "m", "--tokenizer", str(organism),
                 "--haystack", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"longctx needle: error: {path}: holds NUL characters (the first at offset {data.index(0)}): "
                   "not plain text (a UTF-16 or binary file?); save it as UTF-8 text")
    assert not (tmp_path / "o").exists()
