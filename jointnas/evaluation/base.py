"""What a trial *measures*: the :class:`Evaluator` seam and what one trial is asked to do
(:class:`TrialRequest`). An evaluator checks a space's recipe when a run is set up and
evaluates one candidate into a :class:`~jointnas.trial.TrialResult` (a curve of per-epoch
scores and a status). Evaluators are plain picklable objects: workers receive them.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

from ..trial import TrialResult


@dataclass(frozen=True)
class TrialRequest:
    """What one evaluation is asked to do. An evaluator acts on the fields it can and ignores
    the rest (a recorded table has no fidelity, no test split, no weights to keep)."""

    epochs: Optional[int]              # None: the candidate's full schedule
    seed: int
    fidelity: Optional[dict] = None    # a cheaper setting (jointnas.evaluation.fidelity.Fidelity); None: full
    test: bool = False                 # also score the final state on held-out test data (extra["test_score"])
    save_to: Optional[str] = None      # a directory to keep the trained model in (jointnas.evaluation.saved_model)
    validate_every_epoch: bool = True  # False: only the last epoch's score is wanted
    device: Optional[str] = None       # where to run (the executor's worker fills it in); None: the evaluator's own


class Evaluator(ABC):
    """The seam every way of measuring a candidate implements. Everything but :meth:`evaluate`
    has a default, so a new evaluator is one method."""

    score_bounds: Optional[Tuple[float, float]] = None   # (0, 1) for accuracies; None: any finite score
    diverged_score: Optional[float] = None               # what a diverged trial counts as (None: not used)
    # Whether the coarse result stage (the winner trained again at full fidelity for its whole
    # schedule, scored on test data, its weights kept) tells something the trials did not: a
    # trainer's does; a function or a recorded table would only answer the same question again.
    # A run's ``final`` setting left unset follows it.
    retrains_winner: bool = False
    # Whether an evaluation answers in milliseconds (a recorded table, a cheap function): the coarse
    # loop then refits after every trial and ranks by mean + 0.5 x spread (batch 1, explore 0.5) unless
    # the run's settings say otherwise. Trainings are batched to run side by side.
    answers_at_once: bool = False

    def check_space(self, space) -> None:
        """Raise SpaceError naming file and key if ``space``'s recipe has dims this evaluator cannot act on."""

    def spec(self) -> Optional[str]:
        """How the catalog rebuilds this evaluator (``train:digits``), or None if it cannot."""
        return None

    def options(self) -> dict:
        """Settings that define the measurement, stored with the run (execution settings excluded)."""
        return {}

    def fidelities(self) -> List[dict]:
        """Cheaper settings worth calibrating by default (:class:`~jointnas.evaluation.fidelity.Fidelity`
        dicts); none unless the evaluator understands them."""
        return []

    @abstractmethod
    def evaluate(self, candidate, space, request: TrialRequest,
                 on_epoch: Optional[Callable[[dict], None]] = None) -> TrialResult:
        """Measure ``candidate`` as ``request`` says; ``on_epoch(entry)`` after each epoch.
        A crash of the candidate is a ``failed`` result, not an exception."""
