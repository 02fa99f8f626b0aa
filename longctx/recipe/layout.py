"""Where a recipe run's files go and what its models are called in the evaluation results.

The runner (:mod:`longctx.recipe.runner`) asks a :class:`Layout` for every path it writes, so an
application built on it (the quick start) keeps its own folder shape and model names while the
steps, the resume rule and the hashes stay the runner's. The state files of a stage
(``progress.json``, ``stage.json``) always sit in ``stages/NN-name/``.
"""

from __future__ import annotations

from pathlib import Path

from longctx.recipe.spec import StageSpec

EXTENDED, TRAINED = "extended", "trained"
"""The two models of a stage: its extended checkpoint (before training) and its trained one."""


class Layout:
    """The recipe's own layout: ``base/eval``, ``stages/NN-name/{model,data,packs,train.yaml,train,eval,
    eval-extended}``; the trained model is evaluated under the stage's name, the extended one under
    ``<name>-extended``."""

    kind = "recipe run"
    """What the folder is called in messages (``--out X: exists and is not a recipe run``)."""
    marker = "recipe.json"
    """The file that marks a folder as this kind's (the runner writes the resolved recipe there)."""

    def __init__(self, out: str | Path):
        self.out = Path(out)

    def redo_hint(self, s: StageSpec) -> str:
        """How to redo a finished stage whose config changed (the end of the refusal)."""
        return f"pass --from-stage {s.name} to redo it and the stages after it"

    def init(self) -> Path:
        """Where a base the run makes (``base: {tiny: ...}``) goes."""
        return self.out / "base" / "model"

    def state(self, s: StageSpec) -> Path:
        """The stage's folder: ``progress.json`` while it runs, ``stage.json`` once it is finished."""
        return self.out / "stages" / s.key()

    def model(self, s: StageSpec) -> Path:
        return self.state(s) / "model"

    def data(self, s: StageSpec) -> Path:
        return self.state(s) / "data" / "sft.jsonl"

    def packs(self, s: StageSpec) -> Path:
        return self.state(s) / "packs"

    def train_yaml(self, s: StageSpec) -> Path:
        return self.state(s) / "train.yaml"

    def train(self, s: StageSpec) -> Path:
        return self.state(s) / "train"

    def eval(self, s: StageSpec, which: str = TRAINED) -> Path:
        return self.state(s) / ("eval" if which == TRAINED else "eval-extended")

    def base_eval(self) -> Path:
        return self.out / "base" / "eval"

    def name(self, s: StageSpec, which: str = TRAINED) -> str:
        """The model's name in the evaluation results (and the report)."""
        return s.name if which == TRAINED else f"{s.name}-extended"
