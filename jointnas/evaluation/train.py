"""The built-in trainer as an evaluator: train the candidate's model (built by the space's
family) with its recipe on a data set (``train:digits``) and score it by validation accuracy."""
from __future__ import annotations

import time
from typing import Dict, Optional

from ..errors import SpaceError
from ..space import Candidate
from ..trial import TrialResult, failed
from .base import Evaluator, TrialRequest
from .data import check_task_name, load_task
from .fidelity import Fidelity, narrower
from .recipe import MODEL_RECIPE_DIMS, check_recipe_dims
from .saved_model import save_trained

_TASKS: Dict[tuple, object] = {}  # loaded data sets of this process, shared by every evaluator in it


class TrainEvaluator(Evaluator):
    """Train the candidate's model (built by the space's family) with its recipe on ``data``
    and score it by validation accuracy after each epoch."""

    score_bounds = (0.0, 1.0)
    retrains_winner = True   # the result stage trains longer, on test data, and keeps the weights

    def __init__(self, data: str = "digits", data_root: Optional[str] = None, train_subset: Optional[int] = None,
                 device: str = "auto"):
        check_task_name(data)   # a typo is refused when the evaluator is made, before any work
        self.data, self.data_root, self.train_subset, self.device = data, data_root, train_subset, device
        if data_root is not None:
            self.data_root = str(data_root)

    @classmethod
    def from_spec(cls, data: str, **options) -> "TrainEvaluator":
        return cls(data, **options)

    def spec(self) -> str:
        return f"train:{self.data}"

    def options(self) -> dict:
        return {"data_root": self.data_root, "train_subset": self.train_subset}

    def __repr__(self):
        return f"TrainEvaluator({self.data!r}, data_root={self.data_root!r}, train_subset={self.train_subset!r})"

    def task(self, seed: int = 0):
        key = (self.data, self.data_root, seed, self.train_subset)
        if key not in _TASKS:
            _TASKS[key] = load_task(self.data, data_root=self.data_root, seed=seed).shrink(train=self.train_subset)
        return _TASKS[key]

    @property
    def diverged_score(self) -> float:
        """Chance level: what a diverged classifier scores."""
        return 1.0 / self.task().num_classes

    def check_space(self, space) -> None:
        if space.family is None:
            raise SpaceError(f"{space.source}: family: the trainer builds models through a model family "
                             "(e.g. family: mbconv or torchvision); a space without one needs its own objective")
        check_recipe_dims(space.recipe, space.source)
        taken = _family_recipe_dims(space)
        refused = [k for k in space.recipe if k in MODEL_RECIPE_DIMS and k not in taken]
        if refused:
            raise SpaceError(f"{space.source}: recipe.{refused[0]}: the {space.family.name} family's models do not "
                             "take it; remove it or use your own objective")

    def fidelities(self) -> list:
        """Cheaper training settings worth calibrating by default. Each costs one extra training of
        the first batch, so only one: half the images at half the width (about a fifth of the
        cost); a lower resolution barely pays on 56 px inputs (FBNetV3 archs need >= 49 px).
        See BENCHMARKS.md, "Fidelity"."""
        return [{"data": 0.5, "width": 0.5}]

    def evaluate(self, candidate, space, request: TrialRequest, on_epoch=None) -> TrialResult:
        from .trainer import train  # torch: not at import, for the CLI's start-up

        start = time.time()
        seed, save_to, device = request.seed, request.save_to, request.device
        fid = Fidelity.from_dict(request.fidelity)
        try:
            task = self.task(seed)
            if fid.data != 1.0:
                task = task.shrink(train=max(16, int(round(len(task.train) * fid.data))))
            if fid.width != 1.0:
                candidate = Candidate(narrower(candidate.arch, fid.width), dict(candidate.recipe),
                                      space=candidate.space)

            def report(entry):
                entry["score"] = entry["val_acc"]
                if on_epoch is not None:
                    on_epoch(dict(entry))

            r = train(candidate, task, epochs=request.epochs, device=device or self.device, seed=seed, space=space,
                      on_epoch=report, test=request.test, resolution_scale=fid.resolution, keep_model=bool(save_to),
                      validate_every_epoch=request.validate_every_epoch)
            if save_to and r.status == "done":
                save_trained(save_to, candidate, r, r.model, space, num_classes=task.num_classes,
                             in_channels=task.in_channels, training={"evaluator": self.spec(), "seed": seed,
                                                                     "train_subset": self.train_subset,
                                                                     "fidelity": fid.to_dict()})
        except Exception as e:  # noqa: BLE001 - a crash of one candidate must not stop the search
            return failed(f"{type(e).__name__}: {e}", device or self.device, time.time() - start)
        curve = [dict(c, score=c["val_acc"]) for c in r.curve]
        return TrialResult(r.status, curve, r.final_acc, r.epochs_run, r.wall_time, r.device, r.error,
                           extra={"resolution": r.resolution, "images_per_s": r.images_per_s,
                                  "test_score": r.test_acc, "fidelity": fid.to_dict(),
                                  "saved": bool(save_to) and r.status == "done"})


def _family_recipe_dims(space) -> tuple:
    """Recipe dims the family's ``build`` acts on (``ModelFamily.recipe_dims``; by default dropout and drop path)."""
    return tuple(space.family.recipe_dims(space))
