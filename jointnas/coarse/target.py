"""What a predicted score means: the data, split, epoch and fidelity the predictor was fitted on.

A coarse run fits its predictor to validation accuracy at the run's calibrated early-stop epoch
of schedules capped at ``epoch_cap`` epochs, on its ``train_subset`` of training images, with the
run's seed (which also draws the train/val split). A number measured any other way (test
accuracy, another epoch, the full schedule) answers another question, so ``jointnas train
--candidate`` compares the prediction only with a measurement made like this (:func:`compare`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from .calibration import Calibration, read_calibration
from .config import CoarseConfig


@dataclass(frozen=True)
class Target:
    data: str
    split: str = "val"
    epoch: Optional[int] = None          # None: the last epoch trained
    epoch_cap: Optional[int] = None      # None: each recipe's full schedule
    train_subset: Optional[int] = None   # None: every training image
    seed: int = 0                        # seed of the train/val split and of training

    def epochs(self, recipe_epochs: int) -> int:
        """Epochs of a ``recipe_epochs``-long schedule after which the predicted score is measured
        (the learning-rate schedule keeps the recipe's length either way)."""
        return min([int(recipe_epochs)] + [e for e in (self.epoch, self.epoch_cap) if e])

    def describe(self, recipe_epochs: int) -> str:
        n = self.epochs(recipe_epochs)
        images = f"first {self.train_subset} training images" if self.train_subset else "all training images"
        return (f"{self.split} accuracy after epoch {n} of the recipe's {recipe_epochs}-epoch schedule on "
                f"{self.data} ({images}, seed {self.seed})")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Target":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def run_target(config: dict, calibration: Optional[Calibration]) -> Optional[Target]:
    """The target of a coarse run's predictors (``config`` and last calibration record of its
    store); None for a run not scored by the built-in trainer (a user's objective)."""
    cfg = CoarseConfig.from_dict(config)
    if not (cfg.evaluator or "").startswith("train:"):
        return None
    return Target(data=cfg.evaluator.split(":", 1)[1], epoch=calibration.chosen_epoch if calibration else None,
                  epoch_cap=cfg.epoch_cap, train_subset=cfg.evaluator_options.get("train_subset"), seed=cfg.seed)


def source_target(source: dict) -> Optional[Target]:
    """The target of the predictor a fine search used: ``source`` names its ``run`` and/or its
    ``predictor`` file. A run's own checkpoint (``RUN/predictors/*.pt``) has the run's target; a
    shipped one (``predictors/<space>-<data>.pt``) was fitted to final validation accuracy of
    full schedules (predictors/README.md). None when it cannot be told."""
    from ..store import RunStore  # the store: `jointnas fine` and export read no run store unless asked

    run = source.get("run")
    predictor = Path(source["predictor"]) if source.get("predictor") else None
    if run is None and predictor is not None and RunStore.is_run(predictor.parent.parent):
        run = predictor.parent.parent
    if run is not None and RunStore.is_run(run):
        store = RunStore.open(run)
        try:
            return run_target(store.config, read_calibration(store))
        finally:
            store.close()
    if predictor is not None and predictor.parent.name == "predictors" and "-" in predictor.stem:
        return Target(data=predictor.stem.split("-", 1)[1])
    return None


def compare(meta: dict, curve: list, recipe_epochs: int, measured_as: Target) -> dict:
    """The honest check of a prediction in a candidate's ``meta`` against a learning ``curve``
    trained as ``measured_as`` describes (its ``epoch``/``epoch_cap`` are ignored: the curve says
    how far it got). ``compared`` is False, with a ``reason``, when the two are not like for like."""
    out = {"predicted": meta.get("predicted_acc"), "predicted_std": meta.get("predicted_std")}
    if out["predicted"] is None:
        return dict(out, compared=False, reason="the candidate carries no prediction")
    if not meta.get("target"):
        return dict(out, compared=False, reason="the candidate does not say what its prediction means (split, "
                    "epoch, fidelity); export it again with this version of jointnas fine")
    target = Target.from_dict(meta["target"])
    epoch = target.epochs(recipe_epochs)
    out.update(target=target.to_dict(), epoch=epoch, meaning=target.describe(recipe_epochs))
    differ = [f"{name} {getattr(measured_as, name)!r} (prediction: {getattr(target, name)!r})"
              for name in ("data", "train_subset", "seed") if getattr(measured_as, name) != getattr(target, name)]
    if differ:
        return dict(out, compared=False, reason="this run differs from the prediction's setting in "
                    + ", ".join(differ))
    if len(curve) < epoch:
        return dict(out, compared=False, reason=f"training stopped after {len(curve)} epoch(s), before epoch {epoch}")
    entry = curve[epoch - 1]
    measured = entry.get(f"{target.split}_acc", entry.get("score"))
    return dict(out, compared=True, measured=measured, difference=measured - out["predicted"])


def format_check(check: dict) -> str:
    std = check.get("predicted_std")
    pred = f"predicted {check['predicted']:.4f}" + (f" ± {std:.4f}" if std is not None else "")
    if not check["compared"]:
        return f"honest check: {pred}; not compared: {check['reason']}"
    return (f"honest check: {check['meaning']}: {pred}, measured {check['measured']:.4f} "
            f"({check['difference']:+.4f})")
