"""The whole run's ETA: seconds per epoch measured on the trials so far, times the epochs the
run still has to train (in full-fidelity epochs, :func:`remaining_work`), shared by the
executor's slots."""
from __future__ import annotations

import statistics
from typing import List, Optional

from ..evaluation.fidelity import Fidelity
from . import result as result_stage
from .calibration import Calibration
from .run import CoarseRun


class RunClock:
    def __init__(self):
        self.seconds_per_epoch: List[float] = []   # per full-fidelity epoch, one per finished job

    def record(self, result: dict, epoch_cost: float = 1.0) -> None:
        """A finished job's result; ``epoch_cost``: its fidelity's cost per epoch relative to full."""
        epochs, wall = result.get("epochs_run") or 0, result.get("wall_time")
        if result.get("status") == "done" and epochs and wall and epoch_cost > 0:
            self.seconds_per_epoch.append(wall / epochs / epoch_cost)

    def eta(self, epochs_left: float, slots: int) -> str:
        """'; run ETA ...' for a log line ('' until a job has been timed)."""
        if not self.seconds_per_epoch or epochs_left <= 0:
            return ""
        seconds = epochs_left * statistics.median(self.seconds_per_epoch) / max(1, slots)
        return f"; whole run: about {seconds / 60:.1f} min left ({epochs_left:.0f} full-fidelity epochs to train)"


def epoch_cost(calibration: Optional[Calibration], fidelity: Optional[dict]) -> float:
    """Cost of one epoch at ``fidelity`` relative to full: measured once calibrated, else estimated."""
    if not fidelity:
        return 1.0
    if calibration is not None and calibration.fidelity == fidelity and calibration.epoch_cost:
        return float(calibration.epoch_cost)
    f = Fidelity.from_dict(fidelity)
    return f.data * f.resolution ** 2 * f.width ** 2


def remaining_work(run: CoarseRun) -> float:
    """Full-fidelity epochs ``run`` still has to train (queued, later iterations, calibration,
    the result stage)."""
    c, cal = run.config, run.calibration()
    later = epoch_cost(cal, cal.cheaper_fidelity if cal else None)   # an epoch of a later batch
    trials = run.store.trials()
    first = [t for t in trials if t.iteration == 1]
    full = max([run.full_epochs(t.candidate) or 1 for t in first] or [c.epoch_cap or 3])
    epochs = cal.chosen_epoch if cal else full
    left = 0.0
    for t in trials:
        if t.status in ("queued", "running"):
            e = run.full_epochs(t.candidate) or full
            left += (min(e, t.target_epochs) if t.target_epochs else e) * (later if t.iteration > 1 else 1.0)
    if cal is None:
        left += sum(len(first) * full * epoch_cost(cal, f) for f in (c.fidelities or []))
    queued_iterations = max([t.iteration for t in trials] or [0])
    left += max(0, c.iterations - queued_iterations) * c.batch * epochs * later
    if c.final and not run.store.results("final"):
        chosen = result_stage.choose(run)
        left += 2 * ((chosen[0].candidate.recipe.get("epochs") if chosen else None) or full)
    return left
