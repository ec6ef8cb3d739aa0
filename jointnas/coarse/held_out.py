"""How good a surrogate fitted by the coarse loop is: how well the previous iteration's surrogate
ranked the batch it chose (every fit: one prediction of the batch), k-fold cross-validation on the
training set (k more fits, so on a schedule: :class:`HeldOutSchedule`), and a plain line while
the predictor is still near chance."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..surrogates.evaluate import cross_validate
from .calibration import rank_correlation

MIN_HELD_OUT = 4   # trials it takes to cross-validate: every fold must keep >= 3 pairs to fit on
# From the measured curve (BENCHMARKS.md, "Predictor": held-out tau 0.17-0.24 at 25 real pairs,
# 0.29-0.37 at 50, 0.39-0.49 at 75 on digits): what a useful predictor needs.
USEFUL_TAU, PAIRS_FOR_USEFUL_TAU = 0.3, 50
# A fit is cross-validated when its training set has grown by this factor since the last measured
# one (and always at the run's last iteration): at one trial per iteration, 300 trials take about
# 20 measures instead of 300, each of k extra fits (BENCHMARKS.md, "The search's own cost").
GROWTH = 1.25
HOW = "k-fold cross-validation, pooled out-of-fold predictions"
SKIPPED = "not measured at this fit (k-fold runs as the trials grow by 25 %, and at the last iteration)"


@dataclass
class HeldOutSchedule:
    """Which fits get a k-fold measure: the first one that can, each one whose training set is
    :data:`GROWTH` times the last measured one's, and the run's last iteration."""

    measured_n: Optional[int] = None    # training-set size at the last measure
    measured_tau: Optional[float] = None

    @classmethod
    def from_records(cls, records: Sequence[dict]) -> "HeldOutSchedule":
        done = sorted((r for r in records if r.get("k") is not None), key=lambda r: r["iteration"])
        return cls(done[-1]["n_train"], done[-1]["kendall_tau"]) if done else cls()

    def due(self, n: int, last: bool) -> bool:
        if n < MIN_HELD_OUT:
            return False
        return last or self.measured_n is None or n >= GROWTH * self.measured_n

    def record(self, record: dict) -> None:
        if record.get("k") is not None:
            self.measured_n, self.measured_tau = record["n_train"], record["kendall_tau"]


def held_out(trials: Sequence, y: np.ndarray, iteration: int, previous=None) -> dict:
    """The ``predictor_eval`` record of iteration ``iteration``'s fit on ``trials`` (scores ``y``)
    before any k-fold measure (:func:`measure_held_out`): after the first iteration, the Kendall
    tau of ``previous`` (the surrogate that chose this iteration's batch) on that batch, before
    it saw it measured."""
    record = {"iteration": iteration, "n_train": len(trials), "fit_seconds": None, "kendall_tau": None,
              "spearman_rho": None, "mae": None, "k": None, "method": SKIPPED}
    if previous is not None:
        batch = [(t, s) for t, s in zip(trials, y) if t.iteration == iteration]
        if len(batch) >= 2:
            mean, _ = previous.predict([t.candidate for t, _ in batch])
            record["next_batch_tau"] = rank_correlation(mean, [s for _, s in batch])
    return record


def measure_held_out(record: dict, template, trials: Sequence, y: np.ndarray, seed: int) -> dict:
    """``record`` with the pooled out-of-fold metrics of ``template`` (the unfitted surrogate,
    refitted per fold) on ``trials``; unchanged below :data:`MIN_HELD_OUT` trials."""
    if len(trials) < MIN_HELD_OUT:
        return record
    metrics = cross_validate(template, [t.candidate for t in trials], y, k=5, seed=seed)
    return dict(record, kendall_tau=metrics["kendall_tau_pooled"], spearman_rho=metrics["spearman_rho_pooled"],
                mae=metrics["mae_pooled"], k=metrics["k"], method=HOW,
                # what calibrates the printed intervals (jointnas.surrogates.interval)
                out_of_fold={"trial": [t.id for t in trials], "truth": [float(v) for v in y],
                             "predicted": metrics["predictions"], "spread": metrics["spreads"]})


def out_of_fold(record: Optional[dict], trial_id: int) -> Optional[Tuple[float, float]]:
    """(prediction, spread) of trial ``trial_id`` by the fold that did not see it, from a
    ``predictor_eval`` record; None when the record has no out-of-fold part or not that trial."""
    oof = (record or {}).get("out_of_fold") or {}
    ids = oof.get("trial") or []
    if trial_id not in ids:
        return None
    i = ids.index(trial_id)
    return float(oof["predicted"][i]), float(oof["spread"][i])


def fit_lines(record: dict, note: str, n_prior: int, batch: int, schedule: HeldOutSchedule) -> List[str]:
    """The log lines of a fit: its held-out measure (or the last one), and :func:`chance_line`
    when a measure says so."""
    n, it = record["n_train"], record["iteration"]
    if record["k"]:
        measure = f"held-out Kendall tau {record['kendall_tau']:.2f} ({record['k']}-fold)"
    elif schedule.measured_n is not None:
        measure = f"last held-out Kendall tau {schedule.measured_tau:.2f} (at {schedule.measured_n} trials)"
    else:
        measure = "too few trials for a held-out measure"
    if "next_batch_tau" in record:
        measure += f", tau on the batch it chose {record['next_batch_tau']:.2f}"
    lines = [f"iteration {it}: predictor fitted on {n} trials{note}; {measure}"]
    chance = chance_line(record.get("kendall_tau"), n + n_prior, batch, it) if record["k"] or it == 1 else None
    return lines + ([chance] if chance else [])


def chance_line(tau: Optional[float], n: int, batch: int, iteration: int) -> Optional[str]:
    """A plain line when the predictor is still near chance, with how many more trials it needs."""
    if tau is not None and tau >= USEFUL_TAU:
        return None
    more = max(PAIRS_FOR_USEFUL_TAU - n, batch)
    iterations = iteration + -(-more // batch)
    measured = "no held-out measure yet" if tau is None else f"held-out tau {tau:.2f}"
    return (f"predictor still near chance ({measured}, fitted on {n} pairs): about {more} more trials are "
            f"needed for a useful one (tau >= {USEFUL_TAU} took ~{PAIRS_FOR_USEFUL_TAU} trained pairs on digits, "
            f"BENCHMARKS.md); continue this run to {iterations} iterations")
