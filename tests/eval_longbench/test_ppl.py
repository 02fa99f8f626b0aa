"""Sliding-window perplexity: the window plan, chunked NLL vs full logits, and the CLI outputs."""

import csv
import math

import pytest
import torch
import torch.nn.functional as F

from eval_longbench.ppl import run_ppl, sliding_window_ppl, window_nll, window_plan
from eval_longbench.results import ResultStore
from longctx.core.errors import LongctxError


@pytest.fixture(scope="module")
def model(tiny_llama):
    from eval_longbench.models import load_model

    return load_model(tiny_llama, dtype="float32")[0]


@pytest.mark.parametrize("n,window,stride", [(10, 4, 4), (10, 4, 1), (100, 32, 7), (31, 64, 16), (64, 64, 64), (65, 16, 5)])
def test_window_plan_scores_every_token_after_the_first_exactly_once(n, window, stride):
    """Targets of successive windows tile positions 1..n-1 with no gap or overlap; windows fit in `window`."""
    covered = []
    for begin, end, n_t in window_plan(n, window, stride):
        assert end - begin <= window and n_t <= end - begin - 1
        covered += range(end - n_t, end)
    assert covered == list(range(1, n))


def full_logits_nll(model, ids, n_targets):
    """Reference: NLL of the last n_targets tokens from the model's ordinary full logits."""
    with torch.no_grad():
        logits = model(input_ids=ids[None]).logits[0].float()
    n = ids.numel()
    return F.cross_entropy(logits[n - n_targets - 1:n - 1], ids[n - n_targets:], reduction="sum").item()


def test_chunked_window_nll_matches_full_logits(model):
    """Chunked head (3 rows at a time) gives the same NLL sum as the full-logits cross-entropy."""
    ids = torch.randint(0, 256, (50,), generator=torch.Generator().manual_seed(0))
    for n_t in (49, 20, 1):
        assert window_nll(model, ids, n_t, chunk_size=3) == pytest.approx(full_logits_nll(model, ids, n_t), rel=1e-5)


def test_sliding_ppl_equals_per_window_reference(model):
    """Perplexity with overlapping windows equals exp(mean NLL) computed window by window with full logits;
    every window holds 40 tokens ending at its last target (the tail window too)."""
    ids = torch.randint(0, 256, (90,), generator=torch.Generator().manual_seed(1))
    # window 40, stride 16, written out by hand: targets 1-39 | 40-55 | 56-71 | 72-87 | 88-89
    windows = [(0, 40, 39), (16, 56, 16), (32, 72, 16), (48, 88, 16), (50, 90, 2)]
    total = sum(full_logits_nll(model, ids[b:e], t) for b, e, t in windows)
    count = sum(t for _, _, t in windows)
    r = sliding_window_ppl(model, ids.tolist(), 40, 16, chunk_size=7)
    assert r["tokens"] == count == 89
    assert r["ppl"] == pytest.approx(math.exp(total / count), rel=1e-5)


def test_linear_head_goes_through_the_chunked_trainer_loss(model, monkeypatch):
    """Streaming: a linear head is applied only inside longctx.core.loss.chunked_lm_loss with our chunk size,
    on exactly the scored positions (never as full-window logits)."""
    import eval_longbench.ppl as ppl

    calls = []
    orig = ppl.chunked_lm_loss
    monkeypatch.setattr(ppl, "chunked_lm_loss", lambda h, w, t, **kw: (calls.append((h.shape[0], kw["chunk_size"])), orig(h, w, t, **kw))[1])
    head = model.get_output_embeddings()
    monkeypatch.setattr(head, "forward", lambda x: pytest.fail("full head called"))
    sliding_window_ppl(model, list(range(200)), 128, 64, chunk_size=32)
    assert calls == [(127, 32), (64, 32), (8, 32)]


def test_other_heads_never_see_more_rows_than_the_chunk(model):
    """Fallback path (e.g. soft-capped logits): the head runs on at most chunk_size rows at a time and
    gives the same NLL as the full computation."""
    from eval_longbench.ppl import chunked_nll

    seen = []

    class Spy(torch.nn.Module):
        def forward(self, x):
            seen.append(x.shape[0])
            return model.get_output_embeddings()(x)

    h = torch.randn(70, model.config.hidden_size, generator=torch.Generator().manual_seed(2))
    t = torch.randint(0, 256, (70,))
    with torch.no_grad():
        got = chunked_nll(h, Spy(), t, chunk_size=16, softcap=30.0).item()
        logits = model.get_output_embeddings()(h).float()
        ref = F.cross_entropy(torch.tanh(logits / 30.0) * 30.0, t, reduction="sum").item()
    assert max(seen) <= 16 and sum(seen) == 70
    assert got == pytest.approx(ref, rel=1e-5)


def test_run_ppl_resumes_and_rejects_short_text(model, tmp_path):
    """Finished lengths are reused on rerun (no forward pass); text shorter than the largest length is an error."""
    ids = list(range(10, 250)) * 2
    store = ResultStore(tmp_path / "r.json", {"k": 1})
    rows = run_ppl(model, ids, [64, 128], store, model_name="m", stride=32, progress=False)
    calls = []
    body = getattr(model, model.base_model_prefix)
    handle = body.register_forward_hook(lambda *a: calls.append(1))
    try:
        again = run_ppl(model, ids, [64, 128], ResultStore(tmp_path / "r.json", {"k": 1}), model_name="m", stride=32, progress=False)
    finally:
        handle.remove()
    assert again == rows and calls == []
    with pytest.raises(LongctxError, match="has 40 tokens"):
        run_ppl(model, ids[:40], [64], ResultStore(tmp_path / "s.json", {}), model_name="m", progress=False)


def test_ppl_cli_writes_csv_and_plot(tiny_llama, tmp_path):
    """`longctx ppl` on built-in text writes one CSV row per (model, length) and a PNG."""
    from longctx.cli.ppl import main as ppl_main

    out = tmp_path / "ppl"
    assert ppl_main([str(tiny_llama), "--lengths", "64,128", "--stride", "32", "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "ppl.csv").open()))
    assert [(r["model"], int(r["length"])) for r in rows] == [(tiny_llama.name, 64), (tiny_llama.name, 128)]
    assert all(1.0 < float(r["ppl"]) < 1e4 for r in rows)
    assert (out / "ppl.png").read_bytes()[:4] == b"\x89PNG"


def _ppl_rows(curves: dict[str, list[float]], lengths=(512, 1024, 2048, 4096)) -> list[dict]:
    return [{"model": m, "length": L, "ppl": p} for m, ys in curves.items() for L, p in zip(lengths, ys)]


def test_ppl_plot_identical_curves_get_different_markers_and_token_count_ticks():
    """Two identical curves stay distinguishable (marker and line style differ), and the x ticks read
    as token counts ("512", "1K", ...), not powers of two."""
    import matplotlib.pyplot as plt

    from eval_longbench.plots import ppl_figure

    fig = ppl_figure(_ppl_rows({"a": [3.0, 3.1, 3.2, 3.3], "b": [3.0, 3.1, 3.2, 3.3]}))
    try:
        fig.canvas.draw()
        (ax,) = fig.axes
        a, b = ax.get_lines()
        assert a.get_marker() != b.get_marker() and a.get_linestyle() != b.get_linestyle()
        assert [t.get_text() for t in ax.get_xticklabels()] == ["512", "1K", "2K", "4K"]
        ys = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
        assert ys and all(float(y) > 0 for y in ys)  # plain numbers ("3.1"), no mathtext 10^x
    finally:
        plt.close(fig)


def test_ppl_plot_zooms_on_close_curves_when_one_curve_explodes():
    """A failing model (ppl in the thousands) next to near-identical good ones: a second, linear panel
    shows only the close curves, in the same colours and markers as the main panel."""
    import matplotlib.pyplot as plt

    from eval_longbench.plots import ppl_figure

    fig = ppl_figure(_ppl_rows({"base": [3, 40, 600, 2500], "pi": [3.0, 3.0, 3.1, 3.1], "yarn": [3.0, 3.0, 3.1, 3.2]}))
    try:
        main, zoom = fig.axes[:2]
        assert main.get_yscale() == "log" and zoom.get_yscale() == "linear"
        style = {ln.get_label(): (ln.get_color(), ln.get_marker()) for ln in main.get_lines()}
        assert {ln.get_label(): (ln.get_color(), ln.get_marker()) for ln in zoom.get_lines()} == {
            k: style[k] for k in ("pi", "yarn")}
    finally:
        plt.close(fig)
    fig = ppl_figure(_ppl_rows({"pi": [3.0, 3.0, 3.1, 3.1], "abf": [3.0, 9.0, 30, 90]}))
    try:
        assert len(fig.axes) == 1  # one close curve alone needs no zoom
    finally:
        plt.close(fig)
