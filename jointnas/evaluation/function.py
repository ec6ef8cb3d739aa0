"""A user's Python function as an evaluator: ``objective(candidate, report) -> float``
(``module:function``), which may call ``report(epoch, score)`` after each epoch."""
from __future__ import annotations

import importlib
import math
import sys
import time
from typing import Callable, Optional, Tuple

from ..errors import StopSearch, UsageError
from ..trial import TrialResult, failed
from .base import Evaluator, TrialRequest


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


class FunctionEvaluator(Evaluator):
    """Score candidates with ``fn(candidate, report) -> float`` (higher is better).

    ``fn`` may call ``report(epoch, score)`` after each epoch of its own training; the curve
    then drives the early-stop calibration like the trainer's does, and once a trial has had
    the epochs the search gives it, ``report`` stops it (raising :class:`TrialStopped`, which
    this evaluator catches). Without reports the returned value is a one-epoch curve. A
    non-finite score is ``diverged``; an exception is ``failed`` with its message, except
    :class:`jointnas.StopSearch`, which ends the search cleanly (the trial that raised it is
    not recorded; every finished one is kept, and the run can be continued).
    ``fn`` must be importable (a module-level function) to run in worker processes.
    """

    def __init__(self, fn: Callable, *, score_bounds: Optional[Tuple[float, float]] = None,
                 diverged_score: Optional[float] = None, fidelities: Optional[list] = None,
                 answers_at_once: bool = False):
        if not callable(fn):
            raise UsageError(f"the objective must be callable, got {type(fn).__name__}")
        self.fn, self.score_bounds, self.diverged_score = fn, score_bounds, diverged_score
        self.answers_at_once = bool(answers_at_once)   # a lookup or a formula, not a training
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

    def evaluate(self, candidate, space, request: TrialRequest, on_epoch=None) -> TrialResult:
        start = time.time()
        report = Report(request.epochs, on_epoch, request.fidelity)
        value = None
        try:
            value = self.fn(candidate, report)
        except TrialStopped:
            pass
        except StopSearch:
            raise  # the search's to handle: not this trial's failure
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
