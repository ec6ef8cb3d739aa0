"""Coarse batch policies: which pool rows the next iteration trains.

A policy has ``first(x, k, seed)`` (the first batch, before any score exists) and
``choose(x, untried, k, surrogate, rng)`` (later batches, given the surrogate fitted so far);
both return row indices of the encoded pool ``x``. Register a new one in
``jointnas.catalog.POLICIES``; it is built as ``cls(explore=...)``.
"""
from __future__ import annotations

from typing import List, Protocol

import numpy as np


class BatchPolicy(Protocol):
    name: str

    def first(self, x: np.ndarray, k: int, seed: int) -> List[int]:
        ...

    def choose(self, x: np.ndarray, untried: np.ndarray, k: int, surrogate, rng: np.random.Generator) -> List[int]:
        ...

    def describe_first(self) -> str:
        ...

    def describe(self) -> str:
        ...


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
    order = np.argsort(-score, kind="stable")
    return [int(i) for i in order[: min(k, int(untried.sum()))]]


class DiverseThenUCB:
    """FBNetV3's choice: a diverse first batch (farthest-point over the encoding), then the
    untried rows with the highest predicted mean + ``explore`` x predicted spread."""

    name = "ucb"

    def __init__(self, explore: float = 1.0):
        self.explore = float(explore)

    def first(self, x: np.ndarray, k: int, seed: int) -> List[int]:
        return diverse_batch(x, k, seed)

    def choose(self, x: np.ndarray, untried: np.ndarray, k: int, surrogate, rng: np.random.Generator) -> List[int]:
        mean, std = surrogate.predict_encoded(x)
        return acquisition_batch(mean, std, untried, k, self.explore)

    def describe_first(self) -> str:
        return "diverse (farthest-point over the encoding)"

    def describe(self) -> str:
        return f"by predicted accuracy + {self.explore:g} x ensemble std"


# ---------------------------------------------------------------------- more acquisitions
def expected_improvement(mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
    """E[max(f - best, 0)] for f ~ N(mean, std^2), elementwise."""
    from scipy.stats import norm

    std = np.maximum(std, 1e-12)
    z = (mean - best) / std
    return (mean - best) * norm.cdf(z) + std * norm.pdf(z)


def thompson_batch(x: np.ndarray, untried: np.ndarray, k: int, surrogate, rng: np.random.Generator) -> List[int]:
    """Each of the ``k`` picks is the best untried row of one draw: a random member of the
    surrogate (a forest's tree, an ensemble's member) where it exposes ``predict_members``,
    otherwise a normal draw per row from its mean and spread."""
    members = getattr(surrogate, "predict_members", None)
    if members is not None:
        draws = members(x)
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
