"""How good a surrogate fitted by the coarse loop is: k-fold cross-validation on its training
set (once per iteration), how well the previous iteration's surrogate ranked the batch it chose,
and a plain line while it is still near chance."""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from ..surrogates.evaluate import cross_validate
from .calibration import rank_correlation

MIN_HELD_OUT = 4   # trials it takes to cross-validate: every fold must keep >= 3 pairs to fit on
# From the measured curve (BENCHMARKS.md, "Predictor": held-out tau 0.17-0.24 at 25 real pairs,
# 0.29-0.37 at 50, 0.39-0.49 at 75 on digits): what a useful predictor needs.
USEFUL_TAU, PAIRS_FOR_USEFUL_TAU = 0.3, 50


def held_out(template, trials: Sequence, y: np.ndarray, iteration: int, seed: int,
             previous: Callable[[], object], fit_seconds: float) -> dict:
    """The ``predictor_eval`` record of iteration ``iteration``'s fit on ``trials`` (scores ``y``):
    the pooled out-of-fold metrics of ``template`` (the unfitted surrogate, refitted per fold) and,
    after the first iteration, the Kendall tau of ``previous()`` (the surrogate that chose this
    iteration's batch) on that batch, before it saw it measured. ``fit_seconds``: the fit's time."""
    record = {"iteration": iteration, "n_train": len(trials), "fit_seconds": fit_seconds, "kendall_tau": None,
              "spearman_rho": None, "mae": None, "k": None,
              "method": "k-fold cross-validation, pooled out-of-fold predictions"}
    if len(trials) >= MIN_HELD_OUT:
        metrics = cross_validate(template, [t.candidate for t in trials], y, k=5, seed=seed)
        record.update(kendall_tau=metrics["kendall_tau_pooled"], spearman_rho=metrics["spearman_rho_pooled"],
                      mae=metrics["mae_pooled"], k=metrics["k"],
                      # what calibrates the printed intervals (jointnas.surrogates.interval)
                      out_of_fold={"trial": [t.id for t in trials], "truth": [float(v) for v in y],
                                   "predicted": metrics["predictions"], "spread": metrics["spreads"]})
    if iteration > 1:
        batch = [(t, s) for t, s in zip(trials, y) if t.iteration == iteration]
        if len(batch) >= 2:
            mean, _ = previous().predict([t.candidate for t, _ in batch])
            record["next_batch_tau"] = rank_correlation(mean, [s for _, s in batch])
    return record


def out_of_fold(record: Optional[dict], trial_id: int) -> Optional[Tuple[float, float]]:
    """(prediction, spread) of trial ``trial_id`` by the fold that did not see it, from a
    ``predictor_eval`` record; None when the record has no out-of-fold part or not that trial."""
    oof = (record or {}).get("out_of_fold") or {}
    ids = oof.get("trial") or []
    if trial_id not in ids:
        return None
    i = ids.index(trial_id)
    return float(oof["predicted"][i]), float(oof["spread"][i])


def fit_lines(record: dict, note: str, n_prior: int, batch: int) -> List[str]:
    """The log lines of a fit: its held-out measure, and :func:`chance_line` when it applies."""
    n, it = record["n_train"], record["iteration"]
    measure = (f"held-out Kendall tau {record['kendall_tau']:.2f} ({record['k']}-fold)"
               if record["k"] else "too few trials for a held-out measure")
    if "next_batch_tau" in record:
        measure += f", tau on the batch it chose {record['next_batch_tau']:.2f}"
    lines = [f"iteration {it}: predictor fitted on {n} trials{note}; {measure}"]
    chance = chance_line(record.get("kendall_tau"), n + n_prior, batch, it)
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
