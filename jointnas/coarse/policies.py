"""Coarse batch policies: which pool rows the next iteration trains.

A policy subclasses :class:`BatchPolicy`: ``first(x, k, seed)`` (the first batch, before any
score exists; by default diverse) and ``choose(x, untried, k, surrogate, rng)`` (later batches,
given the surrogate fitted so far) return row indices of the encoded pool ``x``. It is
registered by name in ``jointnas.catalog.POLICIES`` (or the ``jointnas.policies`` entry-point
group) and built as ``cls(explore=...)``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, List

import numpy as np


class BatchPolicy(ABC):
    """How the coarse loop picks each batch; ``explore`` weighs the surrogate's spread against its
    mean where a policy uses it."""

    name: ClassVar[str]

    def __init__(self, explore: float = 1.0):
        self.explore = float(explore)

    def first(self, x: np.ndarray, k: int, seed: int) -> List[int]:
        """``k`` distinct rows of ``x`` to train first. Default: farthest-point (:func:`diverse_batch`)."""
        return diverse_batch(x, k, seed)

    @abstractmethod
    def choose(self, x: np.ndarray, untried: np.ndarray, k: int, surrogate, rng: np.random.Generator) -> List[int]:
        """Up to ``k`` distinct rows of ``x`` where the mask ``untried`` holds, chosen with the fitted
        ``surrogate`` (a :class:`jointnas.surrogates.base.Scorer`)."""

    def describe_first(self) -> str:
        """How :meth:`first` chooses, for the run's log."""
        return "diverse (farthest-point over the encoding)"

    @abstractmethod
    def describe(self) -> str:
        """How :meth:`choose` chooses, for the run's log."""


def diverse_batch(x: np.ndarray, k: int, seed: int) -> List[int]:
    """Farthest-point sampling over encoded rows: a seeded random start, then each next row is
    the one farthest from all chosen so far."""
    rng = np.random.default_rng(seed)
    k = min(k, len(x))
    chosen = [int(rng.integers(len(x)))]
    dist = np.linalg.norm(x - x[chosen[0]], axis=1)
    while len(chosen) < k:
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(x - x[nxt], axis=1))
    return chosen


def acquisition_batch(mean: np.ndarray, std: np.ndarray, untried: np.ndarray, k: int, explore: float) -> List[int]:
    """Indices of the ``k`` untried rows with the highest upper confidence bound mean + explore * std."""
    score = np.where(untried, mean + explore * std, -np.inf)
    k = min(k, int(untried.sum()))
    if k == 0:
        return []
    if k < len(score):   # the k best only, not the whole pool sorted (ties: the lower row first)
        cut = (-score[np.argpartition(-score, k - 1)[:k]]).max()
        near = np.flatnonzero(-score <= cut)   # every row tied with the k-th too, so the order is stable
        order = near[np.argsort(-score[near], kind="stable")]
    else:
        order = np.argsort(-score, kind="stable")
    return [int(i) for i in order[:k]]


class DiverseThenUCB(BatchPolicy):
    """FBNetV3's choice: a diverse first batch (farthest-point over the encoding), then the
    untried rows with the highest predicted mean + ``explore`` x predicted spread."""

    name = "ucb"

    def choose(self, x: np.ndarray, untried: np.ndarray, k: int, surrogate, rng: np.random.Generator) -> List[int]:
        mean, std = surrogate.predict_encoded(x)
        return acquisition_batch(mean, std, untried, k, self.explore)

    def describe(self) -> str:
        return f"by predicted accuracy + {self.explore:g} x ensemble std"


# ---------------------------------------------------------------------- more acquisitions
def expected_improvement(mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
    """E[max(f - best, 0)] for f ~ N(mean, std^2), elementwise."""
    from scipy.stats import norm  # scipy: only for this acquisition, not at import

    std = np.maximum(std, 1e-12)
    z = (mean - best) / std
    return (mean - best) * norm.cdf(z) + std * norm.pdf(z)


def thompson_batch(x: np.ndarray, untried: np.ndarray, k: int, surrogate, rng: np.random.Generator) -> List[int]:
    """Each of the ``k`` picks is the best untried row of one draw: a random member of the
    surrogate (a forest's tree) where it ``has_members``, otherwise a normal draw per row from
    its mean and spread."""
    if surrogate.has_members:
        draws = surrogate.predict_members(x)
        draw = lambda: draws[rng.integers(len(draws))]  # noqa: E731
    else:
        mean, std = surrogate.predict_encoded(x)
        draw = lambda: mean + std * rng.standard_normal(len(mean))  # noqa: E731
    left, chosen = untried.copy(), []
    for _ in range(min(k, int(untried.sum()))):
        i = acquisition_batch(draw(), np.zeros(len(x)), left, 1, 0.0)[0]
        chosen.append(i)
        left[i] = False
    return chosen


class DiverseThenEI(DiverseThenUCB):
    """A diverse first batch, then the untried rows of highest expected improvement over the
    best predicted mean among the tried rows (normal with the surrogate's mean and spread)."""

    name = "ei"

    def choose(self, x, untried, k, surrogate, rng) -> List[int]:
        mean, std = surrogate.predict_encoded(x)
        best = float(mean[~untried].max()) if (~untried).any() else float(mean.max())
        return acquisition_batch(expected_improvement(mean, std, best), np.zeros(len(x)), untried, k, 0.0)

    def describe(self) -> str:
        return "by expected improvement over the best predicted trained candidate"


class DiverseThenThompson(DiverseThenUCB):
    """A diverse first batch, then Thompson draws (:func:`thompson_batch`); ``explore`` is unused."""

    name = "thompson"

    def choose(self, x, untried, k, surrogate, rng) -> List[int]:
        return thompson_batch(x, untried, k, surrogate, rng)

    def describe(self) -> str:
        return "by Thompson draws (one random surrogate member per pick)"
