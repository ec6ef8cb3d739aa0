"""Ask/tell: the coarse search's choices for a training loop the user drives.

    study = Study.create("runs/mine", space, CoarseConfig(pool=2000, batch=6))
    for _ in range(18):
        candidate = study.ask()                  # candidate.meta["epochs"]: how long to train it
        study.tell(candidate, my_training(candidate))   # or tell(candidate, curve=[per-epoch scores])
    study.best(3)

The study is a coarse run in its directory (same RunStore: ``jointnas report`` and ``jointnas
fine --run`` read it, ``Study.open`` continues it): the first batch is the diverse one, trained
to the full (capped) schedule; once it is told, the early-stop epoch is calibrated and the
surrogate fitted, and each later batch is the batch policy's choice, to be trained to the
calibrated epoch. Up to ``batch`` candidates can be out at once (parallel workers); the next
batch is chosen when all of the current one are told. Asked candidates never told (a crashed
loop) are handed out again by :meth:`Study.open`.
"""
from __future__ import annotations

import dataclasses
import math
from typing import List, Optional, Sequence, Tuple, Union

from ..errors import UsageError
from ..evaluation.base import Evaluator
from ..progress import Progress
from ..space import Candidate
from ..trial import STATUSES, TrialResult
from .config import CoarseConfig
from .loop import CoarseLoop
from .ranking import ranked_in


class _Told(Evaluator):
    """The evaluator of a study: the user trains; nothing runs here."""

    def __init__(self, score_bounds=None, diverged_score=None):
        self.score_bounds, self.diverged_score = score_bounds, diverged_score

    def evaluate(self, candidate, space, request, on_epoch=None):
        raise UsageError("a study's candidates are trained by its user (study.ask / study.tell)")


def _quiet() -> Progress:
    return Progress(bars=False, log=lambda line: None)


class Study:
    """Ask/tell over a :class:`~jointnas.coarse.loop.CoarseLoop` (:attr:`loop`)."""

    def __init__(self, loop: CoarseLoop):
        self.loop, self.store = loop, loop.store

    @classmethod
    def create(cls, run_dir, space, config: Union[CoarseConfig, dict, None] = None, *,
               score_bounds: Optional[Tuple[float, float]] = None, diverged_score: Optional[float] = None,
               progress: Optional[Progress] = None) -> "Study":
        """A new study in ``run_dir`` (absent or empty). ``score_bounds`` (e.g. (0, 1) for
        accuracies) bound the surrogate's predictions; ``diverged_score`` is what a told
        ``status="diverged"`` counts as."""
        if isinstance(config, dict):
            config = CoarseConfig.from_settings(config)
        # The user trains each candidate once, as asked: no first batch at cheaper fidelities to rank.
        config = dataclasses.replace(config or CoarseConfig(), fidelities=[])
        evaluator = _Told(score_bounds, diverged_score)
        return cls(CoarseLoop.create(run_dir, space, evaluator, config, progress=progress or _quiet()))

    @classmethod
    def open(cls, run_dir, *, progress: Optional[Progress] = None) -> "Study":
        """Continue the study in ``run_dir``; candidates asked for and never told go back to the queue."""
        loop = CoarseLoop.open(run_dir, _Told(), progress=progress or _quiet())
        loop.store.requeue_running()
        return cls(loop)

    def close(self) -> None:
        self.loop.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- ask
    def ask(self) -> Candidate:
        """The next candidate to train; ``meta`` holds its ``trial`` id and the ``epochs`` to
        train it for (None: its full schedule)."""
        loop = self.loop
        due = loop.due()
        if due.complete:  # the study goes on past its iterations: one more
            if loop.exhausted():
                raise UsageError("every candidate of the study's pool has been asked for; start a study with a "
                                 "larger pool")
            loop.extend(loop.config.iterations + 1)
            due = loop.due()
        if due.cheaper:
            raise UsageError("this run calibrates cheaper fidelities, which only a CoarseSearch trains; continue it "
                             "with CoarseSearch.open")
        if not due.trials:
            raise UsageError(f"all of batch {due.iteration} is out: tell the scores of its {due.out} untold "
                             "candidate(s) (study.tell) before asking for the next batch")
        task = due.trials[0]
        loop.started(task.id, "study")
        cand = task.candidate
        return Candidate(dict(cand.arch), dict(cand.recipe), loop.space.name,
                         meta={"trial": task.id, "epochs": task.request.epochs})

    # ---- tell
    def tell(self, candidate: Candidate, score: Optional[float] = None, *, curve: Optional[Sequence[float]] = None,
             status: str = "done", error: Optional[str] = None) -> None:
        """Record what training ``candidate`` (as :meth:`ask` returned it) gave: its final
        ``score`` (higher is better), or ``curve``, its score after each epoch. A non-finite
        score is ``diverged``; ``status`` may also say ``oom`` or ``failed``."""
        trial = self._running_trial(candidate)
        if status not in STATUSES:
            raise UsageError(f"status {status!r}: use one of {', '.join(STATUSES)}")
        scores = [float(s) for s in (curve if curve is not None else ([] if score is None else [score]))]
        if status == "done" and not scores:
            raise UsageError("tell needs the candidate's score (or its curve of per-epoch scores)")
        if status == "done" and not all(math.isfinite(s) for s in scores):
            status, error = "diverged", error or "non-finite score"
        entries = [{"epoch": i + 1, "score": s} for i, s in enumerate(scores) if math.isfinite(s)]
        final = entries[-1]["score"] if status == "done" else None
        result = TrialResult(status, entries, final, len(entries), device="user", error=error)
        self.loop.tell(trial.id, result.to_dict())

    def _running_trial(self, candidate: Candidate):
        running = self.store.trials("running")
        trial_id = candidate.meta.get("trial")
        found = [t for t in running if (t.id == trial_id if trial_id is not None else t.key == candidate.key())]
        if not found:
            raise UsageError("that candidate is not out for training in this study (ask for it first; each is "
                             "told once)")
        return found[0]

    # ---- results
    def best(self, k: int = 5) -> List[Tuple[Candidate, float]]:
        """The ``k`` best told candidates by :mod:`jointnas.coarse.ranking`'s rule (score at the
        calibrated epoch), with those scores."""
        return [(t.candidate, s) for t, s in ranked_in(self.store, k)]
