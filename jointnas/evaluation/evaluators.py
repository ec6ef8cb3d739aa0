"""What a trial *measures*. An :class:`Evaluator` checks a space's recipe when a run is set
up and evaluates one candidate into a :class:`~jointnas.trial.TrialResult` (a curve of
per-epoch scores and a status). Evaluators are plain picklable objects: workers receive them.

* :class:`TrainEvaluator`: the built-in trainer on a data set (``train:digits``).
* :class:`FunctionEvaluator`: a user's Python function ``objective(candidate, report) ->
  float`` (``module:function``), which calls ``report(epoch, score)`` after each epoch.
"""
from __future__ import annotations

import importlib
import math
import sys
import time
from typing import Callable, Dict, Optional, Protocol, Tuple, runtime_checkable

from ..errors import SpaceError, UsageError
from ..trial import TrialResult, failed

_TASKS: Dict[tuple, object] = {}  # loaded data sets of this process, shared by every evaluator in it


@runtime_checkable
class Evaluator(Protocol):
    score_bounds: Optional[Tuple[float, float]]   # (0, 1) for accuracies; None: any finite score
    diverged_score: Optional[float]               # the score of a diverged trial (None: not used)

    def check_space(self, space) -> None:
        """SpaceError naming file and key if ``space``'s recipe has dims this evaluator cannot act on."""

    def evaluate(self, candidate, space, *, epochs: Optional[int], seed: int, on_epoch=None,
                 device: Optional[str] = None) -> TrialResult:
        """Measure ``candidate`` for at most ``epochs`` epochs (None: its full schedule).
        Optional keywords an evaluator may accept (the executor passes them only then):
        ``fidelity`` (a :class:`~jointnas.evaluation.fidelity.Fidelity` dict: cheaper training),
        ``test`` (also score the final state on held-out test data: ``extra["test_score"]``),
        ``save_to`` (a directory to keep the trained model in) and ``validate_every_epoch=False``
        (only the last epoch's score is wanted: the curve may hold that one entry)."""

    def spec(self) -> Optional[str]:
        """How the catalog rebuilds this evaluator (``train:digits``), or None if it cannot."""

    def options(self) -> dict:
        """Settings that define the measurement, stored with the run (execution settings excluded)."""


# ---------------------------------------------------------------------- the built-in trainer
class TrainEvaluator:
    """Train the candidate's model (built by the space's family) with its recipe on ``data``
    and score it by validation accuracy after each epoch."""

    score_bounds = (0.0, 1.0)

    def __init__(self, data: str = "digits", data_root: Optional[str] = None, train_subset: Optional[int] = None,
                 device: str = "auto"):
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
        from .data import load_task

        key = (self.data, self.data_root, seed, self.train_subset)
        if key not in _TASKS:
            _TASKS[key] = load_task(self.data, data_root=self.data_root, seed=seed).shrink(train=self.train_subset)
        return _TASKS[key]

    @property
    def diverged_score(self) -> float:
        """Chance level: what a diverged classifier scores."""
        return 1.0 / self.task().num_classes

    def check_space(self, space) -> None:
        from .trainer import MODEL_RECIPE_DIMS, check_recipe_dims

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

    def evaluate(self, candidate, space, *, epochs: Optional[int], seed: int, on_epoch=None,
                 device: Optional[str] = None, fidelity: Optional[dict] = None, test: bool = False,
                 save_to: Optional[str] = None, validate_every_epoch: bool = True) -> TrialResult:
        from .fidelity import Fidelity, narrower
        from ..space import Candidate
        from .trainer import train

        start = time.time()
        fid = Fidelity.from_dict(fidelity)
        try:
            task = self.task(seed)
            if fid.data != 1.0:
                task = task.shrink(train=max(16, int(round(len(task.train) * fid.data))))
            if fid.width != 1.0:
                candidate = Candidate(narrower(candidate.arch, fid.width), dict(candidate.recipe),
                                      space=getattr(candidate, "space", None))

            def report(entry):
                entry["score"] = entry["val_acc"]
                if on_epoch is not None:
                    on_epoch(dict(entry))

            r = train(candidate, task, epochs=epochs, device=device or self.device, seed=seed, space=space,
                      on_epoch=report, test=test, resolution_scale=fid.resolution, keep_model=bool(save_to),
                      validate_every_epoch=validate_every_epoch)
            if save_to and r.status == "done":
                from .saved_model import save_trained

                save_trained(save_to, candidate, r, r.model, space, num_classes=task.num_classes,
                             in_channels=task.in_channels, training={"evaluator": self.spec(), "seed": seed,
                                                                     "train_subset": self.train_subset,
                                                                     "fidelity": fid.to_dict()})
        except Exception as e:  # noqa: BLE001 - a crash of one candidate must not stop the search
            return failed(f"{type(e).__name__}: {e}", device or self.device, time.time() - start)
        curve = [dict(c, score=c["val_acc"]) for c in r.curve]
        return TrialResult(r.status, curve, r.final_acc, r.epochs_run, r.wall_time, r.device, r.error,
                           extra={"resolution": r.resolution, "images_per_s": r.images_per_s,
                                  "test_score": getattr(r, "test_acc", None), "fidelity": fid.to_dict(),
                                  "saved": bool(save_to) and r.status == "done"})


def _family_recipe_dims(space) -> tuple:
    """Recipe dims the family's ``build`` acts on (a family that does not say: dropout and drop path)."""
    dims = getattr(space.family, "recipe_dims", None)
    return tuple(dims(space)) if dims is not None else ("dropout", "stochastic_depth")


# ---------------------------------------------------------------------- a user's function
class TrialStopped(Exception):
    """Raised by ``report`` once a trial has reached the epochs it was given (an early stop);
    :class:`FunctionEvaluator` catches it, so the objective need not."""


class Report:
    """``report(epoch, score)``: records one point of the curve (epochs 1, 2, ... in order)."""

    def __init__(self, epochs: Optional[int], on_epoch=None, fidelity: Optional[dict] = None):
        self.epochs, self.on_epoch, self.curve = epochs, on_epoch, []
        self.fidelity = dict(fidelity or {})   # the cheaper setting asked for (empty: full), for objectives that have one

    def __call__(self, epoch: int, score: float) -> None:
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch != len(self.curve) + 1:
            raise UsageError(f"report(epoch, score): epochs must be 1, 2, 3, ... in order; got {epoch!r} after "
                             f"{len(self.curve)} reported")
        score = float(score)
        entry = {"epoch": epoch, "score": score}
        self.curve.append(entry)
        if self.on_epoch is not None:
            self.on_epoch(dict(entry))
        if not math.isfinite(score):
            raise TrialStopped("diverged")
        if self.epochs is not None and epoch >= self.epochs:
            raise TrialStopped("epochs")


class FunctionEvaluator:
    """Score candidates with ``fn(candidate, report) -> float`` (higher is better).

    ``fn`` may call ``report(epoch, score)`` after each epoch of its own training; the curve
    then drives the early-stop calibration like the trainer's does, and once a trial has had
    the epochs the search gives it, ``report`` stops it (raising :class:`TrialStopped`, which
    this evaluator catches). Without reports the returned value is a one-epoch curve. A
    non-finite score is ``diverged``; an exception is ``failed`` with its message.
    ``fn`` must be importable (a module-level function) to run in worker processes.
    """

    def __init__(self, fn: Callable, *, score_bounds: Optional[Tuple[float, float]] = None,
                 diverged_score: Optional[float] = None, fidelities: Optional[list] = None):
        if not callable(fn):
            raise UsageError(f"the objective must be callable, got {type(fn).__name__}")
        self.fn, self.score_bounds, self.diverged_score = fn, score_bounds, diverged_score
        self._fidelities = list(fidelities or [])

    def fidelities(self) -> list:
        """Cheaper settings the objective understands (it reads ``report.fidelity``); none by default."""
        return list(self._fidelities)

    @classmethod
    def from_spec(cls, spec: str, **options) -> "FunctionEvaluator":
        return cls(import_objective(spec), **options)

    def spec(self) -> Optional[str]:
        """``module:function`` when that name finds this very function again, else None."""
        module, name = getattr(self.fn, "__module__", None), getattr(self.fn, "__qualname__", "")
        if not module or module == "__main__" or "<" in name:
            return None
        found = sys.modules.get(module)
        for part in name.split("."):
            found = getattr(found, part, None)
        return f"{module}:{name}" if found is self.fn else None

    def options(self) -> dict:
        out = {"score_bounds": list(self.score_bounds) if self.score_bounds else None,
               "diverged_score": self.diverged_score}
        if self._fidelities:
            out["fidelities"] = list(self._fidelities)
        return out

    def __repr__(self):
        return f"FunctionEvaluator({self.spec() or self.fn!r})"

    def check_space(self, space) -> None:
        return None  # the function decides what the recipe means

    def evaluate(self, candidate, space, *, epochs: Optional[int], seed: int, on_epoch=None,
                 device: Optional[str] = None, fidelity: Optional[dict] = None) -> TrialResult:
        start = time.time()
        report = Report(epochs, on_epoch, fidelity)
        value = None
        try:
            value = self.fn(candidate, report)
        except TrialStopped:
            pass
        except Exception as e:  # noqa: BLE001 - failure is data
            return failed(f"{type(e).__name__}: {e}", "python", time.time() - start, report.curve)
        curve = report.curve
        try:
            if value is not None:
                value = float(value)
        except (TypeError, ValueError):
            return failed(f"the objective returned {type(value).__name__}, not a number", "python",
                          time.time() - start, curve)
        if value is not None and (not curve or curve[-1]["score"] != value):
            curve.append({"epoch": len(curve) + 1, "score": value})
        if not curve:
            return failed("the objective returned None and reported no score", "python", time.time() - start)
        final = curve[-1]["score"]
        status = "done" if all(math.isfinite(c["score"]) for c in curve) else "diverged"
        return TrialResult(status, curve, final if status == "done" else None, len(curve), time.time() - start,
                           "python", None if status == "done" else "the objective gave a non-finite score")


def import_objective(spec: str) -> Callable:
    """``module:function`` -> the function (the current directory is importable, as with ``python -m``)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UsageError(f"objective {spec!r}: expected MODULE:FUNCTION, e.g. my_objective:objective")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as e:
        raise UsageError(f"objective {spec!r}: cannot import module {module_name!r} ({e}); run from the "
                         "directory that holds it or put it on PYTHONPATH") from None
    except Exception as e:  # noqa: BLE001 - the user's module failed while importing
        raise UsageError(f"objective {spec!r}: importing module {module_name!r} failed: "
                         f"{type(e).__name__}: {e}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"objective {spec!r}: module {module_name!r} has no {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UsageError(f"objective {spec!r}: {attr!r} is not callable")
    return obj
