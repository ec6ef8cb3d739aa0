"""The one rule that ranks a coarse run's measured trials (its summary, its report, fine's
seeds, and the winner it retrains unless earlier whole curves let :mod:`jointnas.coarse.extrapolate`
say which trial will end its schedule best).

The first batch trains to the full (capped) schedule and later batches only to the calibrated
early-stop epoch, perhaps at a cheaper fidelity, so final accuracies of the two kinds do not
compare. Every trial is therefore ranked by its score at the calibrated epoch and fidelity: a
later trial by its own curve, a first-batch trial by its run at that fidelity (the calibration
trained the first batch at each cheaper setting). A recipe shorter than that epoch counts with
its last epoch; before calibration all trials belong to the first batch and rank by their final
score.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from ..trial import measured_score
from .calibration import Calibration, read_calibration


def rule(epoch: Optional[int], score: str = "validation accuracy", fidelity: Optional[str] = None) -> str:
    """The ranking rule in words, as the summary and the report state it."""
    if epoch is None:
        return f"ranked by final {score} (no early-stop epoch calibrated yet: every trial ran its schedule)"
    at = f"epoch {epoch}" + (f" at fidelity {fidelity}" if fidelity and fidelity != "full" else "")
    return (f"ranked by {score} at {at}, the run's calibrated early stop, which every trial reached: "
            "one fidelity for all")


def cheap_runs(calibration: Optional[Calibration], fidelity_trials: Sequence[Mapping]) -> Dict[int, Mapping]:
    """First-batch runs at the calibrated cheaper fidelity, by trial id ({} when it is full)."""
    fid = calibration.cheaper_fidelity if calibration is not None else None
    if fid is None:
        return {}
    return {r["trial"]: r for r in fidelity_trials if r["fidelity"] == fid}


def score_at(trial, epoch: Optional[int], cheap: Optional[Mapping[int, Mapping]] = None,
             diverged_score: Optional[float] = None) -> Optional[float]:
    """Score of a trial at ``epoch`` (its last epoch when None or beyond it), at the calibrated
    fidelity: a first-batch trial by its run in ``cheap`` when there is one (None if that run is
    missing: not comparable). A diverged trial scores ``diverged_score`` (None: left out)."""
    status, curve = trial.status, trial.curve
    if cheap and trial.iteration == 1:
        run = cheap.get(trial.id)
        if run is None:
            return None
        status, curve = run.get("status"), run.get("curve") or []
    return measured_score(status, curve, epoch or len(curve), diverged_score)


def best_trials(trials: Sequence, epoch: Optional[int], top: Optional[int] = None,
                cheap: Optional[Mapping[int, Mapping]] = None) -> List[Tuple[object, float]]:
    """(trial, score) of the measured ``trials``, best first by :func:`score_at`; ties by trial id."""
    scored = [(t, score_at(t, epoch, cheap)) for t in trials]
    scored = [(t, s) for t, s in scored if s is not None]
    scored.sort(key=lambda ts: (-ts[1], ts[0].id))
    return scored[:top] if top is not None else scored


def ranked_in(store, top: Optional[int] = None) -> List[Tuple[object, float]]:
    """:func:`best_trials` of a run store, at its calibrated epoch and fidelity."""
    cal = read_calibration(store)
    return best_trials(store.trials(), cal.chosen_epoch if cal else None, top,
                       cheap_runs(cal, store.results("fidelity_trial")))
