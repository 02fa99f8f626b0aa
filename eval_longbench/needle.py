"""Needle-in-a-haystack and passkey retrieval over a grid of context lengths x needle depths.

Each cell (length, depth) holds ``samples`` prompts with different seeds; its score is the mean
sample score in [0, 1]. Cells are saved one by one in a :class:`ResultStore`, so an interrupted
run resumes at the first unfinished cell.
"""

from __future__ import annotations

import math
import random
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from tqdm import tqdm

from eval_longbench.haystack import Needle, check_filler, filler_stream, fit_prompt, passkey_sample
from eval_longbench.models import GenerateFn
from eval_longbench.results import ResultStore
from longctx.core.errors import LongctxError

NEEDLE_INTRO = (
    "Some special magic numbers are hidden inside the following text. Make sure to memorize them. "
    "I will quiz you about the numbers afterwards."
)
NEEDLE_TEMPLATE = "One of the special magic numbers for {key} is: {value}."
NEEDLE_QUESTION = (
    "What is the special magic number for {key} mentioned in the provided text? "
    "The special magic number for {key} mentioned in the provided text is"
)
KEYS = ("amber-falcon", "quiet-harbor", "silver-maple", "rapid-cobalt", "gentle-summit", "hollow-reed",
        "crimson-tide", "velvet-orbit", "brisk-lantern", "olive-meadow", "frozen-ember", "lucky-pebble")

Scorer = Callable[[str, str, str], float]  # (prediction, answer, question) -> score in [0, 1]


@dataclass
class NeedleConfig:
    """What one needle run measures; everything but the grid goes into the results file's meta."""

    task: str = "passkey"
    """``passkey`` (5-digit key, the YaRN/LongLoRA test) or ``needle`` (RULER-style magic numbers)."""
    lengths: list[int] = field(default_factory=lambda: [256, 512, 1024])
    """Context lengths in tokens of the prompt (without special tokens)."""
    depths: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    """Needle depths as fractions of the haystack (0 = start, 1 = end)."""
    samples: int = 1
    """Prompts per cell (different keys and haystacks); the cell score is their mean."""
    seed: int = 0
    num_needles: int = 1
    """``needle`` task: needles in the haystack; the question asks for the first, the rest are distractors."""
    needle: str | None = None
    """Custom needle sentence (with ``question`` and ``answer``), e.g. gkamradt's San Francisco needle."""
    question: str | None = None
    answer: str | None = None
    intro: str | None = None
    scoring: str = "auto"
    """``exact`` (first number / first line equals the answer), ``contains``, ``judge``, or ``auto``."""
    max_new_tokens: int = 16
    filler_name: str = "noise"
    """Label of the haystack source (``noise`` or the user's paths), recorded in meta."""

    def __post_init__(self):
        if self.task not in ("passkey", "needle"):
            raise LongctxError(f"--task: unknown {self.task!r}; choose passkey or needle")
        if self.scoring not in ("auto", "exact", "contains", "judge"):
            raise LongctxError(f"--scoring: unknown {self.scoring!r}; choose auto, exact, contains or judge")
        if not self.lengths or any(n < 1 for n in self.lengths):
            raise LongctxError(f"--lengths: need positive integers, got {self.lengths}")
        if not self.depths or any(not 0 <= d <= 1 for d in self.depths):
            raise LongctxError(f"--depths: need fractions within [0, 1], got {self.depths}")
        if self.samples < 1 or self.num_needles < 1:
            raise LongctxError("--samples and --num-needles must be at least 1")
        custom = (self.needle, self.question, self.answer)
        if any(custom) and not all(custom):
            raise LongctxError("--needle, --question and --answer go together: give all three or none")
        if self.task == "needle" and self.needle and self.num_needles > 1:
            raise LongctxError("--num-needles > 1 needs the built-in needle (drop --needle)")

    def meta(self) -> dict:
        m = asdict(self)
        for k in ("lengths", "depths"):
            m.pop(k)
        return m


def depth_grid(n: int, spacing: str = "linear") -> list[float]:
    """``n`` depths from 0 to 1; ``sigmoid`` spacing puts more of them near the ends (gkamradt's)."""
    if n < 1:
        raise LongctxError(f"--depths: need at least 1, got {n}")
    if n == 1:
        return [0.5]
    xs = [i / (n - 1) for i in range(n)]
    if spacing == "linear":
        return [round(x, 4) for x in xs]
    if spacing == "sigmoid":
        s = [1 / (1 + math.exp(-10 * (x - 0.5))) for x in xs]
        lo, hi = s[0], s[-1]
        return [round((v - lo) / (hi - lo), 4) for v in s]
    raise LongctxError(f"--depth-spacing: unknown {spacing!r}; choose linear or sigmoid")


def sample_seed(seed: int, length: int, depth: float, i: int) -> int:
    """A stable per-sample seed (independent of grid order, so adding cells changes nothing)."""
    return zlib.crc32(f"{seed}:{length}:{depth:.6f}:{i}".encode())


def build_sample(tokenizer, cfg: NeedleConfig, length: int, depth: float, seed: int,
                 filler: Sequence[str] | None = None) -> dict:
    """One prompt of the task: ``{"prompt", "answer", "question", "n_tokens", "needle_depth"}``."""
    if cfg.task == "passkey":
        prompt, info, answer = passkey_sample(tokenizer, length, depth, seed, filler=filler)
        question = "What is the pass key?"
    else:
        rng = random.Random(f"needle:{seed}")
        sentences = filler_stream(filler, seed)
        if cfg.needle:
            needles = [Needle(cfg.needle, depth)]
            question, answer, intro = cfg.question, cfg.answer, cfg.intro or ""
        else:
            keys = rng.sample(KEYS, cfg.num_needles) if cfg.num_needles <= len(KEYS) else [f"key-{j}" for j in range(cfg.num_needles)]
            values = [str(rng.randrange(1_000_000, 10_000_000)) for _ in keys]
            # The asked needle sits at `depth`; distractors are spread evenly around the haystack.
            depths = [round((depth + j / cfg.num_needles) % 1.0, 6) if j else depth for j in range(cfg.num_needles)]
            needles = [Needle(NEEDLE_TEMPLATE.format(key=k, value=v), d) for k, v, d in zip(keys, values, depths)]
            question, answer, intro = NEEDLE_QUESTION.format(key=keys[0]), values[0], cfg.intro or NEEDLE_INTRO
        prompt, info = fit_prompt(tokenizer, length, needles, intro=intro, question=question, sentences=sentences)
    return {"prompt": prompt, "answer": answer, "question": question,
            "n_tokens": info["n_tokens"], "needle_depth": info["needle_depths"][0]}


def score_exact(prediction: str, answer: str) -> float:
    """1.0 when the first number in the prediction is the (numeric) answer, or its first line equals it."""
    if answer.isdigit():
        m = re.search(r"\d+", prediction)
        return float(bool(m) and m.group(0) == answer)
    first = prediction.strip().splitlines()[0] if prediction.strip() else ""
    return float(_norm(first) == _norm(answer))


def score_contains(prediction: str, answer: str) -> float:
    """1.0 when the answer appears in the prediction (case- and whitespace-insensitive)."""
    return float(_norm(answer) in _norm(prediction))


def _norm(s: str) -> str:
    return " ".join(s.lower().split()).strip(" .")


def default_scorer(cfg: NeedleConfig) -> Scorer:
    mode = cfg.scoring
    if mode == "auto":
        mode = "contains" if cfg.needle else "exact"
    if mode == "exact":
        return lambda pred, ans, q: score_exact(pred, ans)
    if mode == "contains":
        return lambda pred, ans, q: score_contains(pred, ans)
    raise LongctxError("--scoring judge: needs --judge-url or --judge-local")


def cell_key(model_name: str, length: int, depth: float) -> str:
    return f"{model_name}|{length}|{depth:.4f}"


def run_needle(
    generate: GenerateFn,
    tokenizer,
    cfg: NeedleConfig,
    store: ResultStore,
    *,
    model_name: str,
    scorer: Scorer | None = None,
    filler: Sequence[str] | None = None,
    progress: bool = True,
    model_id: str | None = None,
) -> list[dict]:
    """Fill every missing (length, depth) cell for ``model_name`` in ``store``; return all its cells.

    ``generate(prompt, max_new_tokens)`` returns the model's continuation; ``scorer`` maps
    (prediction, answer, question) to [0, 1] (default from ``cfg.scoring``). ``model_id``
    (:func:`eval_longbench.fingerprint.model_fingerprint`) makes a rerun with another checkpoint under
    the same ``model_name`` an error instead of a reuse.
    """
    if model_id is not None:
        store.bind_model(model_name, model_id)
    scorer = scorer or default_scorer(cfg)
    if filler is not None:
        check_filler(tokenizer, filler, cfg.filler_name)
    grid = [(L, d) for L in cfg.lengths for d in cfg.depths]
    todo = [(L, d) for L, d in grid if cell_key(model_name, L, d) not in store]
    for L, d in tqdm(todo, desc=f"needle {model_name}", disable=not progress or not todo):
        samples = []
        for i in range(cfg.samples):
            s = build_sample(tokenizer, cfg, L, d, sample_seed(cfg.seed, L, d, i), filler)
            pred = generate(s["prompt"], cfg.max_new_tokens)
            samples.append({"answer": s["answer"], "prediction": pred, "score": float(scorer(pred, s["answer"], s["question"])),
                            "n_tokens": s["n_tokens"], "needle_depth": s["needle_depth"]})
        store.put(cell_key(model_name, L, d), {
            "model": model_name, "length": L, "depth": d,
            "score": sum(x["score"] for x in samples) / len(samples), "samples": samples,
        })
    return [store.get(cell_key(model_name, L, d)) for L, d in grid]
