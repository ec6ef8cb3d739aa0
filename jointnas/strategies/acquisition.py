"""Acquisition policies for the coarse loop's batches beyond today's mean + explore x std.

Each scores the untried pool rows with the surrogate and takes the best ``k``:

- ``ei``: expected improvement over the best predicted mean among the tried rows, under a
  normal with the surrogate's mean and spread;
- ``thompson``: each of the ``k`` picks is the argmax of one draw: a random member (tree)
  where the surrogate exposes its members, otherwise a normal draw per row.
"""
from __future__ import annotations

from typing import List

import numpy as np


def _top_untried(score: np.ndarray, untried: np.ndarray, k: int) -> List[int]:
    score = np.where(untried, score, -np.inf)
    order = np.argsort(-score, kind="stable")
    return [int(i) for i in order[: min(k, int(untried.sum()))]]


def expected_improvement(mean: np.ndarray, std: np.ndarray, best: float, xi: float = 0.0) -> np.ndarray:
    from scipy.stats import norm

    std = np.maximum(std, 1e-12)
    z = (mean - best - xi) / std
    return (mean - best - xi) * norm.cdf(z) + std * norm.pdf(z)


def ei_batch(x, untried, k, surrogate, xi: float = 0.0) -> List[int]:
    mean, std = surrogate.predict_encoded(x)
    best = float(mean[~untried].max()) if (~untried).any() else float(mean.max())
    return _top_untried(expected_improvement(mean, std, best, xi), untried, k)


def thompson_batch(x, untried, k, surrogate, rng: np.random.Generator) -> List[int]:
    members = getattr(surrogate, "predict_members", None)
    if members is not None:
        draws = members(x)
        pick = lambda: draws[rng.integers(len(draws))]  # noqa: E731
    else:
        mean, std = surrogate.predict_encoded(x)
        pick = lambda: mean + std * rng.standard_normal(len(mean))  # noqa: E731
    left, chosen = untried.copy(), []
    for _ in range(min(k, int(untried.sum()))):
        i = _top_untried(pick(), left, 1)[0]
        chosen.append(i)
        left[i] = False
    return chosen
