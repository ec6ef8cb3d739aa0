"""What one trial measured: :class:`TrialResult`, the statuses, and the one definition of a
trial's measured score at an epoch (the predictor's target, the calibration's ranking)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import List, Mapping, Optional, Sequence

STATUSES = ("done", "diverged", "oom", "failed")   # how a trial can end
# not an end: the objective raised jointnas.StopSearch; the executor reports it, nothing is recorded
STOPPED = "stopped"


@dataclass
class TrialResult:
    """``curve``: one mapping per finished epoch with at least ``epoch`` and ``score`` (an
    evaluator may add more, e.g. ``val_loss``). ``final_score`` is the last epoch's score when
    ``status == "done"``, else None. Higher scores are better."""

    status: str
    curve: List[dict] = field(default_factory=list)
    final_score: Optional[float] = None
    epochs_run: int = 0
    wall_time: Optional[float] = None
    device: Optional[str] = None
    error: Optional[str] = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The plain dict a run store records (``final_acc`` is the store's name for the final score)."""
        d = asdict(self)
        d["final_acc"] = d.pop("final_score")
        extra = d.pop("extra")
        return {**extra, **d}


def failed(error: str, device: Optional[str] = None, wall_time: Optional[float] = None,
           curve: Sequence[dict] = ()) -> TrialResult:
    return TrialResult("failed", list(curve), None, len(curve), wall_time, device, error)


def entry_score(entry: Mapping) -> float:
    """The score of one curve entry (curves recorded before scores had their own key hold ``val_acc``)."""
    return entry["score"] if "score" in entry else entry["val_acc"]


def score_at(curve: Sequence[Mapping], epoch: int) -> Optional[float]:
    """Score after ``epoch`` epochs; a curve shorter than that gives its last value."""
    if not curve:
        return None
    return entry_score(curve[min(epoch, len(curve)) - 1])


def measured_score(status: str, curve: Sequence[Mapping], epoch: int,
                   diverged_score: Optional[float] = None) -> Optional[float]:
    """The measured score of a trial at ``epoch``: its curve there when it finished, the
    ``diverged_score`` (chance level for a classifier) when it diverged, else None (not measured)."""
    if status == "diverged":
        return diverged_score
    if status != "done" or not curve:
        return None
    return score_at(curve, epoch)
