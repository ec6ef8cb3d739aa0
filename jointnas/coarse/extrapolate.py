"""Learning-curve extrapolation: a trial's accuracy at the end of its recipe's whole schedule,
predicted from its score at the run's calibrated early-stop epoch and its recipe.

A coarse run measures every trial at one early epoch of its schedule (the learning rate is not
compressed), which is comparable across trials but favours short schedules: they have already
annealed there. What a user keeps is the winner trained to the end of its schedule. Earlier
pairs trained to the end (a warm start's table) show how early scores turn into final ones,
recipe by recipe; a forest fitted on them (score at the epoch + the recipe's encoding -> final
score) chooses the trial the result stage retrains. On the 134 shipped digits pairs it ranks
final accuracy better than the early score alone (BENCHMARKS.md, "Which trial to retrain").
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

from ..surrogates.evaluate import cross_validate
from ..surrogates.prior import read_prior_rows
from ..trial import measured_score
from .calibration import rank_correlation

MIN_CURVES = 20  # fewer whole curves than this teach nothing reliable


class ScheduleExtrapolator:
    """Final score of a candidate from its score at ``epoch`` and its recipe (a space's encoding)."""

    def __init__(self, space, epoch: int, seed: int = 0, n_trees: int = 200, min_leaf: int = 3):
        self.space, self.epoch, self.seed = space, int(epoch), seed
        self.n_trees, self.min_leaf = n_trees, min_leaf
        self.n_fit, self.held_out_tau, self.early_tau = 0, None, None
        self._forest = None

    def features(self, candidates: Sequence, early: Sequence[float]) -> np.ndarray:
        recipe = self.space.encode(list(candidates))[:, self.space.arch_width:]
        return np.column_stack([np.asarray(early, dtype=np.float64), recipe])

    def _new_forest(self) -> "_Forest":
        return _Forest(self.n_trees, self.min_leaf, self.seed)

    def fit(self, candidates: Sequence, early: Sequence[float], final: Sequence[float],
            folds: int = 5) -> "ScheduleExtrapolator":
        """Fit on whole curves; ``held_out_tau`` is the k-fold pooled Kendall tau of the predictions
        against the final scores, ``early_tau`` that of the early score alone (what it improves on)."""
        x, y = self.features(candidates, early), np.asarray(final, dtype=np.float64)
        self.n_fit = len(y)
        self._forest = self._new_forest().fit(x, y)
        if folds and len(y) >= 2 * folds:
            self.held_out_tau = cross_validate(self._new_forest(), x, y, k=folds, seed=self.seed)["kendall_tau_pooled"]
            self.early_tau = rank_correlation(x[:, 0], y)
        return self

    def predict(self, candidates: Sequence, early: Sequence[float]) -> np.ndarray:
        return self._forest.predict(self.features(candidates, early))[0]

    def describe(self) -> str:
        taus = ("" if self.held_out_tau is None else
                f"; held-out Kendall tau with the final score {self.held_out_tau:.2f}, "
                f"the epoch-{self.epoch} score alone {self.early_tau:.2f}")
        return (f"extrapolated from the score at epoch {self.epoch} and the recipe by a forest fitted on "
                f"{self.n_fit} earlier whole curves{taus}")


class _Forest:
    """Extra trees on feature rows, shaped as a surrogate for ``cross_validate``: predict -> (mean, None)."""

    def __init__(self, n_trees: int, min_leaf: int, seed: int):
        from sklearn.ensemble import ExtraTreesRegressor  # seconds to import: only for a run with earlier pairs

        self.model = ExtraTreesRegressor(n_estimators=n_trees, min_samples_leaf=min_leaf, random_state=seed)

    def fit(self, x, y) -> "_Forest":
        self.model.fit(x, y)
        return self

    def predict(self, x):
        return self.model.predict(x), None


def whole_curves(rows, epoch: int, diverged_score: Optional[float]):
    """(candidates, early scores, final scores) of the rows trained to the end of their schedule."""
    cands: List = []
    early: List[float] = []
    final: List[float] = []
    for cand, status, curve in rows:
        epochs = cand.recipe.get("epochs")
        if status == "done" and epochs is not None and len(curve) < int(epochs):
            continue  # stopped early: its last score is not the schedule's end
        first = measured_score(status, curve, epoch, diverged_score)
        last = measured_score(status, curve, len(curve), diverged_score)
        if first is not None and last is not None:
            cands.append(cand)
            early.append(first)
            final.append(last)
    return cands, early, final


def from_pairs(path, space, epoch: int, diverged_score: Optional[float] = None,
               seed: int = 0) -> Optional[ScheduleExtrapolator]:
    """An extrapolator fitted on a pair table's whole curves, or None with fewer than MIN_CURVES."""
    cands, early, final = whole_curves(read_prior_rows(path, space), epoch, diverged_score)
    if len(cands) < MIN_CURVES:
        return None
    return ScheduleExtrapolator(space, epoch, seed).fit(cands, early, final)
