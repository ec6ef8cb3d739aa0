"""The whole run's ETA from measured trial times: the seconds the finished trainings took per unit
of work (FLOPs x full-fidelity epochs; their median), times the work the run still has to do (:func:`remaining_work`),
stage by stage (a batch, the first batch again at a cheaper fidelity, each later iteration, the result
stage), each stage shared by the executor's slots but never shorter than its longest training.

Seconds per epoch alone mislead: in the README's main command before it had a budget, a
1,307-MFLOPs candidate took 3.2 times as long per epoch as a 697-MFLOPs one, so whichever trained
first set the whole estimate; per FLOP-epoch the twelve trials agreed within a factor of 1.7
(15-26 s per GFLOP-epoch on 2 shared cores)."""
from __future__ import annotations

import statistics
from typing import Dict, List, Optional, Sequence, Tuple

from ..evaluation.fidelity import Fidelity
from . import result as result_stage
from .calibration import Calibration
from .run import CoarseRun

# One training still to do: (full-fidelity epochs, FLOPs of the candidate; 1 when the space has no costs).
Work = Tuple[float, float]


class RunClock:
    def __init__(self):
        self.walls: List[float] = []   # seconds of each finished training
        self.works: List[float] = []   # its work: FLOPs x full-fidelity epochs

    def record(self, result: dict, flops: Optional[float], epoch_cost: float = 1.0) -> None:
        """A finished training's result; ``flops``: its candidate's, ``epoch_cost``: its fidelity's cost
        per epoch relative to full."""
        epochs, wall = result.get("epochs_run") or 0, result.get("wall_time")
        if result.get("status") == "done" and epochs and wall and epoch_cost > 0:
            self.walls.append(float(wall))
            self.works.append(epochs * epoch_cost * (flops or 1.0))

    def seconds_per_work(self) -> Optional[float]:
        """Measured seconds per unit of work, the median over finished trainings (a worker's first one
        also pays its start: 55 s against 17-29 s for the same work in the README's main command);
        None before the first."""
        if not self.works:
            return None
        return statistics.median(w / x for w, x in zip(self.walls, self.works))

    def seconds_left(self, stages: Sequence[Sequence[Work]], slots: int) -> Optional[float]:
        rate = self.seconds_per_work()
        if rate is None:
            return None
        total = 0.0
        for stage in stages:
            works = [epochs * flops for epochs, flops in stage]
            if works:
                total += max(sum(works) / max(1, slots), max(works)) * rate
        return total

    def eta(self, stages: Sequence[Sequence[Work]], slots: int) -> str:
        """'; whole run: about N min left ...' for a log line ('' until a training has been timed)."""
        seconds = self.seconds_left(stages, slots)
        epochs = sum(e for stage in stages for e, _ in stage)
        if seconds is None or epochs <= 0:
            return ""
        return (f"; whole run: about {seconds / 60:.1f} min left ({epochs:.0f} full-fidelity epochs to train, "
                f"timed by the {len(self.works)} finished so far)")


def epoch_cost(calibration: Optional[Calibration], fidelity: Optional[dict]) -> float:
    """Cost of one epoch at ``fidelity`` relative to full: measured once calibrated, else estimated."""
    if not fidelity:
        return 1.0
    if calibration is not None and calibration.fidelity == fidelity and calibration.epoch_cost:
        return float(calibration.epoch_cost)
    f = Fidelity.from_dict(fidelity)
    return f.data * f.resolution ** 2 * f.width ** 2


def flops_of(run: CoarseRun, candidate) -> float:
    """The candidate's FLOPs, the unit of work (1 for a space without costs)."""
    return _unit(run, run.space.family.cost(candidate.arch).flops if run.space.family is not None else None)


def _unit(run: CoarseRun, flops: Optional[float]) -> float:
    return float(flops or 1.0) if run.space.family is not None else 1.0


def remaining_work(run: CoarseRun, replace: Optional[Dict[str, List[Work]]] = None) -> List[List[Work]]:
    """The trainings ``run`` still has to do, stage by stage: queued and running trials, the first batch
    at each cheaper fidelity, each later iteration (at the pool's mean FLOPs), the result stage (winner
    and baseline). ``replace``: stages by name ("cheaper", "result") whose remaining trainings the caller
    knows better (the ones it is training now, less those done)."""
    c, cal, replace = run.config, run.calibration(), replace or {}
    later = epoch_cost(cal, cal.cheaper_fidelity if cal else None)   # an epoch of a later batch
    trials = run.store.trials()
    first = [t for t in trials if t.iteration == 1]
    full = max([run.full_epochs(t.candidate) or 1 for t in first] or [c.epoch_cap or 3])
    epochs = cal.chosen_epoch if cal else full
    mean_flops = (float(run.costs[:, 0].mean()) if run.space.family is not None and len(run.costs) else 1.0) or 1.0
    stages: Dict[str, List[Work]] = {"queued": []}
    for t in trials:
        if t.status in ("queued", "running"):
            e = run.full_epochs(t.candidate) or full
            e = min(e, t.target_epochs) if t.target_epochs else e
            stages["queued"].append((e * (later if t.iteration > 1 else 1.0), _unit(run, t.flops)))
    if cal is None and "cheaper" not in replace:
        stages["cheaper"] = [(full * epoch_cost(cal, f), _unit(run, t.flops)) for f in (c.fidelities or [])
                             for t in first]
    queued_iterations = max([t.iteration for t in trials] or [0])
    for i in range(max(0, c.iterations - queued_iterations)):
        stages[f"iteration {queued_iterations + 1 + i}"] = [(epochs * later, mean_flops)] * c.batch
    if c.final and "result" not in replace and not run.store.results("final"):
        chosen = result_stage.choose(run)  # not while the result stage runs: its caller knows what is left
        stages["result"] = _result_work(run, chosen[0].candidate if chosen else None, full)
    stages.update(replace)
    return list(stages.values())


def _result_work(run: CoarseRun, winner, full: int) -> List[Work]:
    """The result stage's two trainings: the winner's whole schedule and the baseline's, as long."""
    epochs = (winner.recipe.get("epochs") if winner is not None else None) or full
    work = [(float(epochs), flops_of(run, winner) if winner is not None else 1.0)]
    base = result_stage.baseline_of(run.space, run.config.baseline)
    if base is not None:
        work.append((float(epochs), flops_of(run, base[1])))
    return work
