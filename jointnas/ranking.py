"""The one rule that ranks a coarse run's measured trials (its summary, its report, fine's seeds).

The first batch trains to the full (capped) schedule and later batches only to the calibrated
early-stop epoch, so final accuracies of the two kinds are at different fidelities and do not
compare. Every trial is therefore ranked by its validation accuracy at the calibrated epoch,
which each of them reached (a recipe shorter than that epoch counts with its last epoch);
before calibration all trials belong to the first batch and rank by their final accuracy.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

from .trial import measured_score


def rule(epoch: Optional[int], score: str = "validation accuracy") -> str:
    """The ranking rule in words, as the summary and the report state it."""
    if epoch is None:
        return f"ranked by final {score} (no early-stop epoch calibrated yet: every trial ran its schedule)"
    return (f"ranked by {score} at epoch {epoch}, the run's calibrated early-stop epoch, which every "
            "trial reached: one fidelity for all")


def score_at(trial, epoch: Optional[int]) -> Optional[float]:
    """Score of a finished trial at ``epoch`` (its last epoch when None or beyond it)."""
    if trial.status != "done" or not trial.curve:
        return None
    return measured_score(trial.status, trial.curve, epoch or len(trial.curve))


def best_trials(trials: Sequence, epoch: Optional[int], top: Optional[int] = None) -> List[Tuple[object, float]]:
    """(trial, score) of the measured ``trials``, best first by :func:`score_at`; ties by trial id."""
    scored = [(t, score_at(t, epoch)) for t in trials]
    scored = [(t, s) for t, s in scored if s is not None]
    scored.sort(key=lambda ts: (-ts[1], ts[0].id))
    return scored[:top] if top is not None else scored
