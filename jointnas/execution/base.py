"""Where a trial runs: the :class:`Executor` seam, the :class:`Job` it is handed and
:func:`run_job`, the one way a worker evaluates a job. The coarse loop only talks to
:class:`Executor`:

    label = ex.submit(job)          # while ex.free_slots > 0
    for done in ex.poll(timeout):   # JobDone of each job that finished
        ...
    ex.close()

``ex.epochs_done(trial_id)`` tells how far a running job has got, for progress bars. A job
carries the space and evaluator *objects* (pickled to workers), so a space built in Python
or a user's objective reaches them. The driver, not the workers, writes results to the
store: results reach it as plain dicts.
"""
from __future__ import annotations

import dataclasses
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, List, Optional

from ..errors import JointnasError, StopSearch
from ..evaluation.base import Evaluator, TrialRequest
from ..space import Candidate
from ..trial import STOPPED, failed


class ExecutorError(JointnasError):
    """The executor cannot run trials any more, or at all (a lost cluster, workers that cannot
    start): the trials it held are not done, and the run continues from its store."""


@dataclass
class Job:
    """Everything a worker needs to evaluate one trial (picklable)."""

    trial_id: int
    candidate: dict            # Candidate.to_dict()
    space: Any                 # the SearchSpace
    evaluator: Evaluator
    request: TrialRequest      # what the evaluation is asked to do (epochs, seed, fidelity, test, ...)


@dataclass
class JobDone:
    trial_id: int
    result: dict               # TrialResult.to_dict(): status, curve, final_acc, wall_time, device, error
    worker: str
    attempts: int = 1          # starts it took: more than 1 when its worker died and it ran again


@dataclass(frozen=True)
class ExecutorSettings:
    """What a user may ask of an executor; each takes the settings that apply to it."""

    workers: Optional[int] = None      # None: the executor's own choice
    device: str = "auto"
    threads: Optional[int] = None      # torch threads per trial
    max_retries: int = 2               # starts again of a job whose worker died
    address: Optional[str] = None      # a cluster to join (Ray)
    cpus_per_trial: float = 1.0        # Ray's resources per trial
    gpus_per_trial: float = 0.0


class Executor(ABC):
    @classmethod
    def from_settings(cls, settings: ExecutorSettings) -> "Executor":
        """An executor built from ``settings`` (the catalog's and the commands' way); by default
        ``cls(workers=..., device=...)``."""
        return cls(workers=settings.workers or 1, device=settings.device)

    @property
    @abstractmethod
    def capacity(self) -> int:
        """How many jobs run at once."""

    @property
    @abstractmethod
    def in_flight(self) -> int:
        """Jobs submitted whose JobDone has not been returned by :meth:`poll` yet."""

    @property
    def free_slots(self) -> int:
        return self.capacity - self.in_flight

    @abstractmethod
    def submit(self, job: Job) -> str:
        """Start ``job`` (only while ``free_slots > 0``); returns a label of where it runs."""

    @abstractmethod
    def poll(self, timeout: Optional[float] = None) -> List[JobDone]:
        """Jobs finished since the last call, waiting up to ``timeout`` seconds for the first one."""

    def epochs_done(self, trial_id: int) -> int:
        """Epochs a running job has finished so far (0 where an executor cannot tell)."""
        return 0

    @abstractmethod
    def close(self, kill: bool = False) -> None:
        """Stop the workers; ``kill`` abandons running jobs at once (Ctrl-C)."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *rest):
        self.close(kill=exc_type is not None)


def run_job(job: Job, device: Optional[str] = None, on_epoch=None) -> dict:
    """Evaluate one job here (on ``device`` when given) and return its result dict; any error
    becomes a 'failed' result, and :class:`~jointnas.errors.StopSearch` a ``stopped`` one (status
    :data:`jointnas.trial.STOPPED`, its message as ``error``), which the search does not record."""
    start = time.time()
    try:
        request = job.request if device is None else dataclasses.replace(job.request, device=device)
        result = job.evaluator.evaluate(Candidate.from_dict(job.candidate), job.space, request, on_epoch)
        return result.to_dict()
    except StopSearch as e:
        return {"status": STOPPED, "error": str(e) or None, "device": device}
    except Exception as e:  # noqa: BLE001 - a crash of one candidate must not stop the search
        return failed(f"{type(e).__name__}: {e}", device, time.time() - start).to_dict()
